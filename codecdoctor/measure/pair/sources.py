"""What the passes read: sources and flat views of them. A source is an array (`ArraySource`) or a
file (`measure.audio.reader.FileSource`, the one audio reader)."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.pair.sums import finite_or_zero


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
