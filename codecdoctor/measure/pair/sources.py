"""What the passes read: sources (arrays, files) and flat views of them."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.audio.formats import CONTAINER_BITS
from codecdoctor.measure.audio.reader import declared_wav_frames, read_span, resampled_span
from codecdoctor.measure.pair.sums import finite_or_zero

# Files of at most this many samples (65 s of 16 kHz mono, 8 MB as float64) are read whole on
# first use instead of once per block and pass.
WHOLE_FILE_SAMPLES = 1 << 20


class SignalSource(Protocol):
    """`frames` per channel (shrinks when a file turns out truncated); `read(start, stop)` ->
    (channels, n) float64, n <= stop - start."""

    channels: int
    frames: int
    sample_rate: int

    def read(self, start: int, stop: int) -> np.ndarray: ...


class ArraySource:
    """An in-memory (channels, frames) array (views only: the caller's array is never modified)."""

    def __init__(self, audio: Any, sample_rate: int):
        arr = M.as_signal(audio)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        if arr.ndim == 1:
            arr = arr[None, :]
        self.audio = arr.reshape(int(np.prod(arr.shape[:-1])), arr.shape[-1])
        self.channels, self.frames = (int(v) for v in self.audio.shape)
        self.sample_rate = int(sample_rate)
        self.error: str | None = None
        self.error_frame: int | None = None
        self.declared_frames: int | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[:, max(start, 0):max(min(stop, self.frames), 0)]


class FileSource:
    """An audio file read by seeking through the one reader (`reader.read_span`), optionally
    resampled (`reader.resampled_span`) and downmixed to mono. A file unreadable past some frame
    ends there: `error`, `error_frame` (native frames) say where and why, and `frames` is what was
    readable. `declared_frames` is what a WAV header promised."""

    SALVAGE_FRAMES = 4096  # granularity at which the readable end of a corrupt file is located

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None, downmix: bool = False):
        import soundfile as sf

        self.path = Path(path)
        self._file = sf.SoundFile(str(self.path))
        self.native_rate = int(self._file.samplerate)
        self.native_channels = int(self._file.channels)
        self.sample_rate = int(sample_rate) if sample_rate else self.native_rate
        self.downmix = bool(downmix) and self.native_channels > 1
        self.channels = 1 if self.downmix else self.native_channels
        self.native_frames = int(self._file.frames)
        self.header_frames = self.native_frames  # what libsndfile reported on opening
        self.error: str | None = None
        self.error_frame: int | None = None
        self._whole: np.ndarray | None = None
        sample_bytes = (CONTAINER_BITS.get(self._file.subtype) or 0) // 8
        declared = (declared_wav_frames(self.path, self.native_channels * sample_bytes)
                    if self._file.format in ("WAV", "WAVEX") else None)
        self.declared_frames = declared
        if declared is not None and declared > self.native_frames:
            self.error = (f"truncated: the header declares {declared} frames, the file holds {self.native_frames}")
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

    def _shrink(self, frame: int, reason: str) -> None:
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
        start, stop = max(start, 0), min(stop, self.native_frames)
        if stop <= start:
            return np.zeros((self.channels, 0))
        try:
            data = read_span(self._file, start, stop)
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for corrupt data
            # a decoder that lost sync may refuse every later read on this handle: start afresh
            import soundfile as sf

            self._file.close()
            self._file = sf.SoundFile(str(self.path))
            data = self._salvage(start, stop, f"{type(exc).__name__}: {exc}".strip())
        if data.shape[0] < stop - start:
            self._shrink(start + data.shape[0], self.error or "the file ends early (short read)")
        x = data.T
        if self.downmix:
            x = x.mean(axis=0, keepdims=True)
        return x

    def _salvage(self, start: int, stop: int, reason: str) -> np.ndarray:
        """Read [start, stop) in small pieces up to the first piece that fails."""
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

    def read(self, start: int, stop: int) -> np.ndarray:
        if self._up == self._down:
            return self._read_native(start, stop)
        start, stop = max(start, 0), min(stop, self.frames)
        if stop <= start:
            return np.zeros((self.channels, 0))
        return resampled_span(self._read_native, start, stop, self.native_rate, self.sample_rate, self.frames)


def read_padded(view: "FlatView", start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of the view, zeros where that range leaves the signal."""
    x = view.read(start, stop)
    before = max(0, -start)
    after = (stop - start) - before - x.size
    if before or after > 0:
        x = np.concatenate([np.zeros(before), x, np.zeros(max(after, 0))])
    return x


class FlatView:
    """The channel-major concatenation of a source's channels, each cut to `per_channel` frames
    (measure_pair joins leading axes end to end). Non-finite samples read as 0 once counted."""

    def __init__(self, source: SignalSource, per_channel: int):
        self.source, self.per_channel = source, int(per_channel)
        self.length = source.channels * self.per_channel
        self.zero_nonfinite = True

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, 0), min(stop, self.length)
        if stop <= start:
            return np.zeros(0)
        if self.source.channels == 1:
            x = self.source.read(start, stop)[0]
        else:
            parts = []
            for c in range(start // self.per_channel, (stop - 1) // self.per_channel + 1):
                lo, hi = max(start - c * self.per_channel, 0), min(stop - c * self.per_channel, self.per_channel)
                parts.append(self.source.read(lo, hi)[c])
            x = np.concatenate(parts)
        return finite_or_zero(x) if self.zero_nonfinite else x


class WindowView:
    """Samples [offset, offset + length) of a flat view, indexed from 0 and read around its end:
    window[i] = x[(offset + i) mod n]. The aligned part of a side is (lag offset, aligned length);
    np.roll(x, shift) is (-shift, n)."""

    def __init__(self, view: FlatView, offset: int, length: int):
        self.view, self.length = view, int(length)
        self.offset = int(offset) % view.length if view.length else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = self.offset + max(start, 0), self.offset + min(stop, self.length)
        n = self.view.length
        if stop <= start:
            return np.zeros(0)
        if start >= n or stop <= n:
            return self.view.read(start % n, stop - (start - start % n))
        return np.concatenate([self.view.read(start, n), self.view.read(0, stop - n)])
