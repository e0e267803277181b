"""A bounded excerpt of one (reference, estimate) pair for the report's figures: the first seconds
decimated for an overview, a zoom at the reference's loudest point and coarse log spectrograms.

Bounded whatever the file length (at most a few tens of thousands of numbers), so the figures are
drawn at render time from `Report.measurements` alone and a re-loaded JSON draws the same page.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from codecdoctor.measure.spectral import mel_fft_size

EXCERPT_SECONDS = 10.0  # enough to see the fault, bounded cost
ZOOM_MS = 30.0
OVERVIEW_POINTS = 4000
SPECTROGRAM_BINS = 96
SPECTROGRAM_FRAMES = 160


def _pool(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean-pool a (freq, time) array down to at most (rows, cols)."""
    r_edges = np.linspace(0, values.shape[0], min(rows, values.shape[0]) + 1).astype(int)
    c_edges = np.linspace(0, values.shape[1], min(cols, values.shape[1]) + 1).astype(int)
    pooled = np.add.reduceat(np.add.reduceat(values, r_edges[:-1], axis=0), c_edges[:-1], axis=1)
    counts = np.outer(np.diff(r_edges), np.diff(c_edges))
    return pooled / np.maximum(counts, 1)


def _spectrogram_db(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power spectral density per frame (periodic Hann, 3/4 overlap, each frame's mean removed,
    one-sided), mean-pooled to the figure's grid, in dB. Written with scipy.fft rather than
    scipy.signal.spectrogram: scipy.signal's import alone costs more than a short pair's compare."""
    from scipy.fft import rfft, rfftfreq

    from codecdoctor.measure.spectral import window_array

    nfft = mel_fft_size(sample_rate) // 2
    if x.size < nfft:
        x = np.pad(x, (0, nfft - x.size))
    step = nfft - nfft * 3 // 4
    window = window_array("hann", nfft)
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[::step]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = rfft(frames * window, axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).T / (sample_rate * float(np.dot(window, window)))
    power[1:-1 if nfft % 2 == 0 else None] *= 2.0
    f = rfftfreq(nfft, 1.0 / sample_rate)
    t = (nfft / 2 + step * np.arange(frames.shape[0])) / sample_rate
    pooled = _pool(power, SPECTROGRAM_BINS, SPECTROGRAM_FRAMES)
    f_pooled = _pool(f[:, None], SPECTROGRAM_BINS, 1)[:, 0]
    t_pooled = _pool(t[None, :], 1, SPECTROGRAM_FRAMES)[0]
    return f_pooled, t_pooled, 10 * np.log10(np.maximum(pooled, 1e-14))


def pair_excerpt(ref: Any, est: Any, sample_rate: int, subject: str) -> dict[str, Any]:
    """The figure inputs for one pair (time on the last axis; channels joined)."""
    r = np.nan_to_num(np.asarray(ref, dtype=np.float64).reshape(-1))
    e = np.nan_to_num(np.asarray(est, dtype=np.float64).reshape(-1))
    n = min(r.size, e.size, int(EXCERPT_SECONDS * sample_rate))
    r, e = r[:n], e[:n]
    step = max(1, n // OVERVIEW_POINTS)
    centre = int(np.argmax(np.abs(r))) if n else 0
    half = int(ZOOM_MS / 2000 * sample_rate)
    zoom = slice(max(0, centre - half), min(n, centre + half))
    f_ref, t_ref, ref_db = _spectrogram_db(r, sample_rate)
    _, _, est_db = _spectrogram_db(e, sample_rate)

    def rounded(values: np.ndarray, digits: int = 5) -> list[float]:
        return [float(v) for v in np.round(values, digits)]

    return {
        "subject": subject, "sample_rate": int(sample_rate), "seconds": n / sample_rate if sample_rate else 0.0,
        "overview": {"t_s": rounded(np.arange(0, n, step) / sample_rate, 4), "ref": rounded(r[::step]),
                     "est": rounded(e[::step])},
        "zoom": {"t_ms": rounded(np.arange(zoom.start, zoom.stop) * 1000.0 / sample_rate, 3),
                 "ref": rounded(r[zoom]), "est": rounded(e[zoom]), "window_ms": ZOOM_MS},
        "spectrogram": {"f_hz": rounded(f_ref, 1), "t_s": rounded(t_ref, 3),
                        "ref_db": [rounded(row, 1) for row in ref_db], "est_db": [rounded(row, 1) for row in est_db]},
    }
