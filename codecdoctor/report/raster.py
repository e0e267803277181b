"""A heat map as a PNG data URI, without matplotlib: the spectrograms of the compare report.

A PNG is a zlib-compressed stream of RGB rows with a few checksummed chunks (ISO/IEC 15948); with
the standard library's zlib that is a dozen lines, against matplotlib's ~1 s import. The colour map
is magma's (perceptually uniform, readable in grey scale), linearly interpolated between nine of
its stops: close to matplotlib's 256-entry table, and a spectrogram's 90 dB range needs no more.
"""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

# magma at 0, 1/8, ..., 1 (sRGB)
MAGMA_STOPS = np.array([
    (0x00, 0x00, 0x04), (0x1c, 0x10, 0x44), (0x4f, 0x12, 0x7b), (0x81, 0x25, 0x81), (0xb5, 0x36, 0x7a),
    (0xe5, 0x50, 0x64), (0xfb, 0x87, 0x61), (0xfe, 0xc2, 0x87), (0xfc, 0xfd, 0xbf)], dtype=np.float64)


def colour_map(unit: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped; NaN as 0) to uint8 RGB, shape (..., 3)."""
    u = np.clip(np.nan_to_num(np.asarray(unit, dtype=np.float64), nan=0.0), 0.0, 1.0)
    position = u * (len(MAGMA_STOPS) - 1)
    low = np.minimum(position.astype(int), len(MAGMA_STOPS) - 2)
    frac = (position - low)[..., None]
    rgb = MAGMA_STOPS[low] * (1.0 - frac) + MAGMA_STOPS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an (rows, cols, 3) uint8 array; row 0 is the top of the image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"png_bytes needs a non-empty (rows, cols, 3) array, got {rgb.shape}")
    rows, cols = rgb.shape[:2]
    # each scan line starts with its filter type: 0 (none); zlib does the compressing
    raw = np.concatenate([np.zeros((rows, 1), np.uint8), rgb.reshape(rows, cols * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def heatmap_data_uri(values: np.ndarray, vmin: float, vmax: float) -> str:
    """`values` (rows = the y axis from its low end, columns = x) mapped from [vmin, vmax] through
    the colour map, as a PNG data URI with the low y end at the bottom."""
    v = np.asarray(values, dtype=np.float64)
    span = float(vmax) - float(vmin)
    unit = (v - float(vmin)) / span if span > 0 else np.zeros_like(v)
    return "data:image/png;base64," + base64.b64encode(png_bytes(colour_map(unit[::-1]))).decode("ascii")
