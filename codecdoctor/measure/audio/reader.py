"""The one audio reader of the diagnostics: opening, blocks, seek-crops, spans and resampling.

* `open_sound_file(path)` opens a file, or raises `UnreadableAudio` saying why in words (not
  audio, a damaged header, no permission); `declared_wav_frames` and `truncation_error` notice a WAV
  whose header promises more than the file holds. The audit's rows and `FileSource` share them.
* `read_blocks(sound_file, block_frames)` yields float32 blocks from one open soundfile into one
  reused buffer, so peak memory is one block whatever the file length.
* `read_crops(folder, ...)` reads deterministic crops by seeking (never a whole long file).
* `read_span(sound_file, start, stop)` reads frames by seeking, as float64, and
  `resampled_span(read, start, stop, ...)` resamples any span of a signal read that way exactly as
  resampling it whole.
* `FileSource(path, rate)` is a file as the pair engine reads it: spans by seeking, resampled,
  downmixed, its readable end found when the file is truncated or corrupt.
* `resample(audio, from_rate, to_rate)` is the one resampler (polyphase).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from codecdoctor.measure.audio.formats import CONTAINER_BITS, NATIVE_READS, frame_length

TARGET_BLOCK_SAMPLES = 1 << 20  # ~1 M samples (4 MB float32): big enough to amortise numpy calls
PART_BLOCKS = 8  # a long file is measured as parts of 8 blocks (~8.4 M samples, ~9 min at 16 kHz) ...
SPLITTABLE_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "FLAC"}  # ... when it seeks exactly


def block_frames_for(sample_rate: int, channels: int) -> int:
    """Block length in frames: a whole number of 20 ms frames, about TARGET_BLOCK_SAMPLES samples."""
    fl = frame_length(sample_rate)
    return fl * max(1, TARGET_BLOCK_SAMPLES // (fl * max(1, channels)))


def part_ranges(sound_file: Any) -> list[tuple[int, int | None]]:
    """[start, stop) frame ranges that a file is measured in, always the same for the same file
    (whatever the number of workers), so a file measured in parallel parts gives exactly the
    numbers of the same parts measured one after another. One open range for formats whose frame
    count or seeking is not exact (lossy codecs)."""
    frames = int(sound_file.frames)
    part = PART_BLOCKS * block_frames_for(sound_file.samplerate, sound_file.channels)
    if sound_file.format not in SPLITTABLE_FORMATS or not sound_file.seekable() or frames <= part:
        return [(0, None)]
    return [(start, min(start + part, frames)) for start in range(0, frames, part)]


def read_blocks(sound_file: Any, block_frames: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield float32 blocks of shape (frames, channels) from an open soundfile.SoundFile.

    Every block is a view of one buffer that is refilled, so a consumer must not keep a block
    across iterations; memory is one block whatever the file length. PCM16 is read as int16 and
    scaled here (formats.NATIVE_READS): libsndfile's own short-to-float loop ran at 1.7 GB/s
    (float32-equivalent) on the dev machine, int16 read + one numpy multiply at 4 GB/s, and the
    values are identical (k/32768 is exact in float32).
    """
    left = max_frames
    buffer = np.empty((block_frames, sound_file.channels), dtype=np.float32)
    dtype, scale = NATIVE_READS.get(sound_file.subtype, ("float32", 1.0))
    native = np.empty((block_frames, sound_file.channels), dtype=np.int16) if dtype == "int16" else None
    while left is None or left > 0:
        want = block_frames if left is None else min(block_frames, left)
        if native is not None:
            raw = sound_file.read(want, dtype="int16", always_2d=True, out=native[:want])
            block = buffer[: raw.shape[0]]
            np.multiply(raw, np.float32(scale), out=block)
        else:
            block = sound_file.read(want, dtype="float32", always_2d=True, out=buffer[:want])
        if block.shape[0] == 0:
            return
        yield block
        if left is not None:
            left -= block.shape[0]
        if block.shape[0] < want:
            return


def declared_wav_frames(path: Path, block_align: int) -> int | None:
    """Frames the RIFF/WAVE `data` chunk header declares, or None if not a parseable WAV.

    libsndfile silently shortens a WAV whose header promises more data than the file holds, so
    this is the only way to notice a truncated transfer.
    """
    try:
        with open(path, "rb") as handle:
            data_bytes = declared_wav_data_bytes(handle)
    except OSError:
        return None
    return data_bytes // block_align if data_bytes is not None and block_align > 0 else None


def declared_wav_data_bytes(handle: Any) -> int | None:
    """Size in bytes the `data` chunk header of a RIFF/WAVE stream declares (read from its start;
    the position is left wherever the scan stopped), or None if not a parseable WAV."""
    head = handle.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    order = "little" if head[:4] == b"RIFF" else "big"
    for _ in range(64):  # a WAV has a handful of chunks before `data`
        chunk = handle.read(8)
        if len(chunk) < 8:
            return None
        size = int.from_bytes(chunk[4:8], order)
        if chunk[:4] == b"data":
            # streaming writers leave 0 / -1 when the length is unknown
            return None if size in (0, 0xFFFFFFFF) else size
        handle.seek(size + (size & 1), os.SEEK_CUR)
    return None


def wav_frame_bytes(sound_file: Any) -> int | None:
    """Bytes per frame of an open WAV of fixed-width samples (what divides the `data` chunk's
    declared size into frames); None for other containers and for lossy subtypes."""
    sample_bytes = (CONTAINER_BITS.get(sound_file.subtype) or 0) // 8
    if sound_file.format not in ("WAV", "WAVEX") or not sample_bytes or sound_file.channels <= 0:
        return None
    return sample_bytes * int(sound_file.channels)


def truncation_error(declared_frames: int, held_frames: int, sample_rate: int) -> str:
    """The error a WAV gets whose header promises more frames than it holds (audit-data's D100
    reads the "truncated" prefix)."""
    return (f"truncated: the header declares {declared_frames} frames ({declared_frames / sample_rate:.3f} s) "
            f"but the file holds {held_frames} ({held_frames / sample_rate:.3f} s)")


class UnreadableAudio(Exception):
    """A file that libsndfile cannot open: `path`, and a message that says why in words
    (`open_error_text`) without the absolute path libsndfile puts in its own."""

    def __init__(self, path: Path, reason: str):
        super().__init__(reason)
        self.path = path


KNOWN_AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"ID3", b"caff")


def open_sound_file(path: str | os.PathLike) -> Any:
    """An open soundfile.SoundFile, or `UnreadableAudio` with `open_error_text`'s reason."""
    import soundfile as sf

    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError on garbage
        raise UnreadableAudio(Path(path), open_error_text(Path(path), exc)) from exc


def libsndfile_text(exc: Exception) -> str:
    """libsndfile's reason without its "Error opening <name>: " prefix: the name is the absolute
    path or a Python object's repr, and the report names the file already."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error opening .*?: (?=\S)", "", text) if text.startswith("Error opening ") else text


def header_error_text(head: bytes, exc: Exception) -> str:
    """Why a file whose first bytes are `head` did not open: not audio at all, or a damaged header."""
    text = libsndfile_text(exc)
    if not any(head.startswith(magic) for magic in KNOWN_AUDIO_MAGIC) and head[:2] not in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return f"not audio: no known audio header (first bytes {head[:4].hex()}); libsndfile: {text}"
    return f"corrupt or truncated header; libsndfile: {text}"


def open_error_text(path: Path, exc: Exception) -> str:
    """Why the file at `path` did not open (`exc`, libsndfile's exception), in words."""
    text = libsndfile_text(exc)
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return "no read permission"
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as os_exc:
        return f"cannot open: {os_exc.strerror or os_exc}"
    return header_error_text(head, exc)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's Kaiser-windowed FIR); the one resampler of
    the diagnostics. Returns the input unchanged when the rates agree."""
    if int(from_rate) == int(to_rate):
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(audio, int(to_rate) // g, int(from_rate) // g, axis=-1)


def read_span(sound_file: Any, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of an open soundfile.SoundFile, by seeking, as float64 (frames,
    channels): the samples libsndfile gives as float64, integer PCM read as integers and scaled
    here (formats.NATIVE_READS, 3x faster). Fewer rows when the file ends first."""
    dtype, scale = NATIVE_READS.get(sound_file.subtype, ("float64", 1.0))
    sound_file.seek(start)
    data = sound_file.read(stop - start, dtype=dtype, always_2d=True)
    if data.dtype != np.float64:
        data = data.astype(np.float64)
        if scale != 1.0:
            data *= scale
    return data


def resampled_span(read: Callable[[int, int], np.ndarray], start: int, stop: int, from_rate: int, to_rate: int,
                   frames: int) -> np.ndarray:
    """Samples [start, stop) of a signal of `frames` samples at `to_rate`, resampled from one at
    `from_rate` that `read(first, last)` gives as (channels, n): the same samples as resampling
    the whole signal (`resample`), from a segment of it with margins. The segment starts on a
    multiple of the decimation factor, so its outputs fall on the whole signal's grid, and reaches
    past both ends by the polyphase filter's half-length (10 x max(up, down) upsampled samples)."""
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    margin = (10 * max(up, down)) // up + 2
    start, stop = max(start, 0), min(stop, frames)
    first = max(0, (start * down // up - margin) // down * down)
    last = -(-stop * down // up) + margin
    out = resample(read(first, last), from_rate, to_rate)
    offset = first * up // down
    return out[:, start - offset:stop - offset]


def read_crops(data_dir: str | Path, sample_rate: int, channels: int, *, n_crops: int = 8,
               crop_seconds: float = 2.0, max_files: int = 64) -> tuple[list[tuple[str, np.ndarray]], float, list[str]]:
    """Deterministic crops [C, T] at the codec's rate (evenly spaced over the first `max_files`
    files), the peak |x| over those whole files (streamed in blocks), and notes."""
    import soundfile as sf

    from codecdoctor.core.errors import InputError
    from codecdoctor.measure.audio.discover import discover

    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"--data: {root} is not a folder")
    files = [e for e in discover(root) if e.kind == "audio"][:max_files]
    notes: list[str] = []
    peak = 0.0
    readable: list[tuple[str, Path, int, int]] = []
    for entry in files:
        try:
            info = sf.info(str(entry.path))
            with sf.SoundFile(str(entry.path)) as handle:
                for block in handle.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    finite = block[np.isfinite(block)]
                    if finite.size:
                        peak = max(peak, float(np.abs(finite).max()))
            readable.append((entry.relpath, entry.path, info.samplerate, info.frames))
        except Exception as exc:  # noqa: BLE001 - unreadable files are audit-data's D100
            notes.append(f"{entry.relpath}: unreadable ({type(exc).__name__}); skipped")
    if not readable:
        raise InputError(f"--data: no readable audio under {root}")
    crops: list[tuple[str, np.ndarray]] = []
    per_file = max(1, math.ceil(n_crops / len(readable)))
    for relpath, path, rate, frames in readable:
        want = int(round(crop_seconds * rate))
        starts = np.linspace(0, max(frames - want, 0), per_file).astype(int) if frames > want else [0]
        for start in sorted(set(int(s) for s in starts)):
            if len(crops) >= n_crops:
                break
            data, _ = sf.read(str(path), start=start, frames=want, dtype="float32", always_2d=True)
            audio = data.T.astype(np.float64)
            audio = resample(audio, rate, sample_rate)
            if audio.shape[0] != channels:
                audio = np.repeat(audio.mean(0, keepdims=True), channels, axis=0)
            crops.append((f"{relpath}@{start / rate:.2f}s", np.nan_to_num(audio).astype(np.float32)))
    return crops, peak, notes


# Files of at most this many samples (65 s of 16 kHz mono, 8 MB as float64) are read whole on
# first use instead of once per block and pass.
WHOLE_FILE_SAMPLES = 1 << 20


class FileSource:
    """An audio file as the pair engine reads it (a `measure.pair.SignalSource`): spans by seeking
    (`read_span`), resampled to `sample_rate` (`resampled_span`) and optionally downmixed to mono,
    as (channels, n) float64. A file unreadable past some frame ends there: `error`, `error_frame`
    (native frames) say where and why, and `frames` is what was readable. `declared_frames` is what
    a WAV header promised, `header_frames` what libsndfile reported on opening. Opening a file that
    is not audio raises `UnreadableAudio`."""

    SALVAGE_FRAMES = 4096  # granularity at which the readable end of a corrupt file is located

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None, downmix: bool = False):
        self.path = Path(path)
        self._file = open_sound_file(self.path)
        self.native_rate, self.native_channels = int(self._file.samplerate), int(self._file.channels)
        self.sample_rate = int(sample_rate) if sample_rate else self.native_rate
        self.downmix = bool(downmix) and self.native_channels > 1
        self.channels = 1 if self.downmix else self.native_channels
        self.native_frames = self.header_frames = int(self._file.frames)
        self.error: str | None = None
        self.error_frame: int | None = None
        self._whole: np.ndarray | None = None
        frame_bytes = wav_frame_bytes(self._file)
        self.declared_frames = declared_wav_frames(self.path, frame_bytes) if frame_bytes else None
        if self.declared_frames is not None and self.declared_frames > self.native_frames:
            self.error = truncation_error(self.declared_frames, self.native_frames, self.native_rate)
            self.error_frame = self.native_frames
        g = math.gcd(self.native_rate, self.sample_rate)
        self._up, self._down = self.sample_rate // g, self.native_rate // g

    @property
    def frames(self) -> int:
        if self._up == self._down:
            return self.native_frames
        return -(-self.native_frames * self._up // self._down)

    def close(self) -> None:
        self._file.close()

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._up == self._down:
            return self._read_native(start, stop)
        start, stop = max(start, 0), min(stop, self.frames)
        if stop <= start:
            return np.zeros((self.channels, 0))
        return resampled_span(self._read_native, start, stop, self.native_rate, self.sample_rate, self.frames)

    def _shrink(self, frame: int, reason: str) -> None:
        """The file ends at native `frame`; the first reason found for the earliest end is kept."""
        if frame < self.native_frames:
            self.native_frames = frame
            if self.error_frame is None or frame < self.error_frame:
                self.error, self.error_frame = reason, frame

    def _read_native(self, start: int, stop: int) -> np.ndarray:
        if self._whole is None and 0 < self.native_frames * self.native_channels <= WHOLE_FILE_SAMPLES:
            self._whole = self._read_span(0, self.native_frames)  # shrinks native_frames if it ends early
        if self._whole is not None:
            start, stop = max(start, 0), min(stop, self._whole.shape[1])
            return self._whole[:, start:stop] if stop > start else np.zeros((self.channels, 0))
        return self._read_span(start, stop)

    def _read_span(self, start: int, stop: int) -> np.ndarray:
        import soundfile as sf

        start, stop = max(start, 0), min(stop, self.native_frames)
        if stop <= start:
            return np.zeros((self.channels, 0))
        try:
            data = read_span(self._file, start, stop)
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for corrupt data
            # a decoder that lost sync may refuse every later read on this handle: start afresh
            self._file.close()
            self._file = sf.SoundFile(str(self.path))
            data = self._salvage(start, stop, f"{type(exc).__name__}: {exc}".strip())
        if data.shape[0] < stop - start:
            self._shrink(start + data.shape[0], self.error or "the file ends early (short read)")
        x = data.T
        return x.mean(axis=0, keepdims=True) if self.downmix else x

    def _salvage(self, start: int, stop: int, reason: str) -> np.ndarray:
        """Read [start, stop) in small pieces, on a handle of its own, up to the first piece that
        fails: what precedes the damage is scored."""
        import soundfile as sf

        pieces = []
        with sf.SoundFile(str(self.path)) as handle:
            position = start
            while position < stop:
                want = min(self.SALVAGE_FRAMES, stop - position)
                try:
                    piece = read_span(handle, position, position + want)
                except Exception:  # noqa: BLE001
                    break
                pieces.append(piece)
                position += piece.shape[0]
                if piece.shape[0] < want:
                    break
        self._shrink(start + sum(p.shape[0] for p in pieces), f"unreadable from here on ({reason})")
        return np.concatenate(pieces) if pieces else np.zeros((0, self.native_channels))

