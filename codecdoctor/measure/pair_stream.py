"""Streaming `measure_pair`: the same `PairMeasurements`, in two passes over blocks, memory flat in length.

`measure_pair` (measure/pair.py) holds both signals whole in float64 and computes each number with
its own pass; on a 1.8 h pair that is about 10 GB. This module reads the pair in blocks from a
`SignalSource` (a file read with soundfile, or an array) and gives the same numbers:

* pass 1 (sequential): per-side statistics (non-finite count, min, max, DC, RMS, samples beyond
  the output bound), the unaligned sums <r,r>, <e,e>, <r,e>, sum r, sum e and the raw error
  energy and the loudest
  reference mel bin (mel correlation's floor; only the frames whose energy could hold it are
  transformed, see `_RefMelPeak`);
* the lag: the same normalised cross-correlation as `metrics.lag_and_peak` (means removed, +-max
  lag). Up to 32 blocks it is the whole signal, computed with one FFT; beyond, the same 32 evenly
  spaced blocks `metrics.cross_correlation` samples, read by seeking;
* pass 2 (sequential, aligned): the aligned sums, the per-0.25 s segment levels, the log-mel
  spectrograms (mel distance and correlation), the long-term spectra (bandwidth) and the
  segmental SNR (each 20 ms frame's energy and SNR kept, gated 40 dB below the loudest at the
  end). The STFT of a block runs in a second thread while the next block is read and
  summed; on a pair longer than LONG_PAIR_SECONDS it takes at most MEL_FRAMES_LONG strided frames
  (a note says so), otherwise every frame, exactly as `measure_pair`.

Every what-if SNR is a quadratic form in those sums: the error of `a*r - b*e - c` is expanded, so no
pass is needed per correction. Expanding cancels digits where the error is far below the signal:
an expanded error below `EXACT_FRACTION` of its terms is float rounding of an exact match and
counts as exact (+inf), as `metrics.energy_ratio_db` counts an error 250 dB down. SNRs up to about
110 dB are unaffected. Memory: a few blocks of 2^18 samples plus 56 bytes per 0.25 s segment
and 12 per 20 ms frame (3 MB per hour).
"""
from __future__ import annotations

import functools
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.audio.formats import CONTAINER_BITS, NATIVE_READS
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair import (
    LAG_BLOCKS,
    MAX_LAG_SECONDS,
    MEL_DISTANCE_CONFIG,
    SEGMENT_SECONDS,
    SILENT_REF_RMS_DB,
    WHAT_IF_KEYS,
    PairMeasurements,
    chance_in_frame,
    correlation_exponent,
    lag_search_is_one_fft,
    measure_lag_drift,
    set_segment_levels,
    unit_rms_exponent,
)
from codecdoctor.measure.spectral import mel_fft_size, mel_filterbank, window_array

# Samples per block in the sequential passes: a multiple of every STFT hop (a power of two up to
# 2^16), big enough to amortise numpy's per-call cost, small enough that a block's STFT (float32
# frames, complex spectra) stays in tens of MB.
BLOCK_SAMPLES = 1 << 18
# An expanded error energy below this fraction of its largest term is float64 rounding (about 1e-16
# per term, times the square root of the sample count, with room): an exact match after the fix.
EXACT_FRACTION = 1e-11
# Values whose magnitude is within 2^+-400 can be squared and summed in float64 without overflow or
# underflow; a block outside is summed divided by a power of two (exact), as metrics scales by peaks.
SAFE_EXPONENT = 400
# Files of at most this many samples (all channels; 65 s of 16 kHz mono, 8 MB as float64) are read
# whole on first use instead of once per block and pass: memory stays bounded by this cap.
WHOLE_FILE_SAMPLES = 1 << 20
# R317's frame-locking measurements fold the residual at candidate frame periods, so they need the
# residual itself: a pair longer than this is measured on the aligned window of this length in its
# middle (a codec's frame grid is the same all through a file; a minute holds 3000 frames at 50 Hz).
FRAME_LOCKING_SECONDS = 60.0
# A pair longer than this (seconds) has its log-mel spectrograms and long-term spectra taken from
# at most MEL_FRAMES_LONG evenly strided STFT frames, so their cost stops growing with length: an
# hour holds 225 000 frames per side at 16 kHz. The mel distance is a mean of per-frame distances;
# over 40 000 frames spread across the file its sampling error is far below the third decimal
# (measured on a 10-minute pair: 0.4529 from every 4th frame against 0.4539 from every frame).
LONG_PAIR_SECONDS = 600.0
MEL_FRAMES_LONG = 40_000
# The float32 lag search's values are within about 1e-6 of float64's (FFT rounding, relative to the
# norms: a normalised correlation of 1); every lag within this margin of its peak is recomputed in
# float64, up to EXACT_LAGS of them (a dot product each), else the whole search is redone in float64.
FLOAT32_LAG_MARGIN = 1e-4
EXACT_LAGS = 32
# Frames of the STFT transformed per call: the windowed frames, their spectra and magnitudes of 128
# frames at n_fft 1024 (0.5 + 0.5 + 0.25 MB) stay in a core's 2 MB L2 cache from one step to the
# next (a 10 s pair's STFT sums: 3.48 ms against 3.58 ms in batches of 2048, bench_pair_stages).
STFT_BATCH_FRAMES = 128


class SignalSource(Protocol):
    """What the passes read: `channels`, `frames` (per channel, may shrink when a file turns out
    truncated), `sample_rate`, and `read(start, stop)` -> (channels, n) float64, n <= stop - start."""

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
    """An audio file read by seeking (soundfile), optionally resampled to `sample_rate` (the one
    polyphase resampler, applied per segment with margins so the result equals resampling the
    whole file) and downmixed to mono. A file that cannot be read past some frame (corrupt data,
    a truncated transfer) ends there: `error`, `error_frame` (native frames) say where and why, and
    `frames` is what was readable. `declared_frames` is what a WAV header promised."""

    SALVAGE_FRAMES = 4096  # granularity at which the readable end of a corrupt file is located

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None, downmix: bool = False):
        import soundfile as sf

        from codecdoctor.measure.audio.reader import declared_wav_frames

        self.path = Path(path)
        self._file = sf.SoundFile(str(self.path))
        self.native_rate = int(self._file.samplerate)
        self.native_channels = int(self._file.channels)
        self.sample_rate = int(sample_rate) if sample_rate else self.native_rate
        self.downmix = bool(downmix) and self.native_channels > 1
        self.channels = 1 if self.downmix else self.native_channels
        self.native_frames = int(self._file.frames)
        self.header_frames = self.native_frames  # what libsndfile reported on opening
        # integers scaled in numpy (formats.NATIVE_READS): tests/test_compare_stream.py holds every
        # subtype equal to libsndfile's float64
        self._read_dtype, self._read_scale = NATIVE_READS.get(self._file.subtype, ("float64", 1.0))
        self.error: str | None = None
        self.error_frame: int | None = None
        # a short file is read once, whole, and its reads are views of that copy (the passes, the
        # lag search and the excerpts read each block several times)
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
        # scipy.signal.resample_poly's filter half-length, in input samples, plus room
        self._margin = (10 * max(self._up, self._down)) // self._up + 2

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
            self._file.seek(start)
            data = self._file.read(stop - start, dtype=self._read_dtype, always_2d=True)
            if data.dtype != np.float64:
                data = data.astype(np.float64)
                if self._read_scale != 1.0:
                    data *= self._read_scale
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
                    handle.seek(position)
                    piece = handle.read(want, dtype="float64", always_2d=True)  # rare: plain and simple
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
        from codecdoctor.measure.audio.reader import resample

        start, stop = max(start, 0), min(stop, self.frames)
        if stop <= start:
            return np.zeros((self.channels, 0))
        # The input segment starts on a multiple of `down`, so its outputs fall on the whole file's grid.
        first = max(0, (start * self._down // self._up - self._margin) // self._down * self._down)
        last = -(-stop * self._down // self._up) + self._margin
        segment = self._read_native(first, last)
        out = resample(segment, self.native_rate, self.sample_rate)
        offset = first * self._up // self._down
        return out[:, start - offset:min(stop, self.frames) - offset]


def _finite_or_zero(x: np.ndarray) -> np.ndarray:
    """The block with non-finite samples read as 0 (a new array only when there are any); the
    sum is a cheap test: it is finite for finite samples unless they are huge."""
    if x.size and not math.isfinite(float(np.add.reduce(x))) and not np.isfinite(x).all():
        return np.where(np.isfinite(x), x, 0.0)
    return x


def _nonfinite_mask(r: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    """Where either block is non-finite (None when both are finite, the usual case)."""
    finite = [x.size == 0 or math.isfinite(float(np.add.reduce(x))) for x in (r, e)]
    if all(finite):
        return None
    n = min(r.size, e.size)
    mask = ~(np.isfinite(r[:n]) & np.isfinite(e[:n]))
    return mask if mask.any() else None


@dataclass
class ChunkEnergies:
    """Per-chunk (sum ref^2, sum (ref - est)^2) over the compared samples, chunks of `samples`;
    the error is inf for a chunk holding a non-finite sample (pair.chunk_energies)."""

    samples: int
    signal: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)


def _read_padded(view: "_FlatView", start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of the view, zeros where that range leaves the signal."""
    x = view.read(start, stop)
    before = max(0, -start)
    after = (stop - start) - before - x.size
    if before or after > 0:
        x = np.concatenate([np.zeros(before), x, np.zeros(max(after, 0))])
    return x


class _FlatView:
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
        return _finite_or_zero(x) if self.zero_nonfinite else x


def _scale_exponent(*blocks: np.ndarray, peak: float | None = None) -> int:
    """0 when every value can be squared safely; else the power of two to divide the blocks by.
    `peak`, when the caller already knows the blocks' largest magnitude, saves the scans."""
    if peak is None:
        peak = 0.0
        for b in blocks:
            if b.size:
                peak = max(peak, float(np.max(b)), -float(np.min(b)))
    if peak == 0.0:
        return 0
    exponent = math.frexp(peak)[1]
    return 0 if -SAFE_EXPONENT < exponent < SAFE_EXPONENT else exponent


class _Sums:
    """Running sums of degree 1 (linear) or 2 (products) in units of 2^(degree * exponent), so blocks
    of huge or tiny values add up without overflow (each block brings its own exponent)."""

    def __init__(self, degrees: dict[str, int]):
        self.degrees = degrees
        self.exponent: int | None = None
        self.values = dict.fromkeys(degrees, 0.0)

    def add(self, exponent: int, **sums: float) -> None:
        if self.exponent is None:
            self.exponent = exponent
        if exponent > self.exponent:
            for key, d in self.degrees.items():
                self.values[key] = math.ldexp(self.values[key], d * (self.exponent - exponent))
            self.exponent = exponent
        for key, value in sums.items():
            self.values[key] += math.ldexp(value, self.degrees[key] * (exponent - self.exponent))

    def __getitem__(self, key: str) -> float:
        return self.values[key]


_REDUCTIONS = {"sum": np.sum, "min": np.min, "max": np.max}


def _piece_reduce(op: str, value: Any, cuts: np.ndarray, size: int) -> np.ndarray:
    """The reduction `op` of each piece [cuts[k], cuts[k + 1]) of `value` (the last piece runs to
    its end), for cuts that start at 0 and are `size` apart after the first: the head and tail
    pieces alone, the whole frames between as the rows of one reshaped view (np.*.reduceat on the
    same pieces, with its squared or multiplied temporaries, was ~8x slower). `value` is an array,
    or for "dot" a pair of arrays whose products are summed."""
    a, b = value if op == "dot" else (value, value)
    products = op in ("sumsq", "dot")

    def reduce(lo: int, hi: int, rows: bool = False) -> Any:
        x, y = a[lo:hi], b[lo:hi]
        if rows:
            x, y = x.reshape(-1, size), y.reshape(-1, size)
            return np.einsum("ij,ij->i", x, y) if products else _REDUCTIONS[op](x, axis=1)
        return float(dot(x, y)) if products else float(_REDUCTIONS[op](x))

    first_end = int(cuts[1]) if cuts.size > 1 else a.size
    last = int(cuts[-1])
    out = np.empty(cuts.size)
    out[0] = reduce(0, first_end)
    if cuts.size > 1:
        out[-1] = reduce(last, a.size)
    if cuts.size > 2:
        out[1:-1] = reduce(first_end, last, rows=True)
    return out


class _FrameSums:
    """Per-frame reductions of per-sample quantities over consecutive blocks, frames of `size`
    samples covering [0, usable); a frame split across blocks is carried over. `ops` gives each
    quantity's reduction ("sum", "min", "max", "sumsq": the sum of the squares, or "dot": the sum
    of the products of a pair of arrays). `update` returns the reductions of the frames the block
    completes, one array per quantity; a quantity given as None is all zeros (a block without
    non-finite samples needs no flags)."""

    _UFUNCS = {"sum": np.add, "sumsq": np.add, "dot": np.add, "min": np.minimum, "max": np.maximum}
    _EMPTY = {"sum": 0.0, "sumsq": 0.0, "dot": 0.0, "min": math.inf, "max": -math.inf}

    def __init__(self, size: int, usable: int, ops: tuple[str, ...]):
        self.size, self.usable, self.ops = int(size), int(usable), ops
        self.carry = [self._EMPTY[op] for op in ops]

    def update(self, start: int, values: list[Any]) -> list[np.ndarray]:
        first = next(v for v in values if v is not None)
        stop = min(start + (first[0] if isinstance(first, tuple) else first).size, self.usable)
        if stop <= start:
            return [np.zeros(0) for _ in self.ops]
        n = stop - start
        cuts = np.arange(-(-start // self.size) * self.size, stop, self.size) - start
        cuts = np.concatenate([[0], cuts[cuts > 0]]).astype(np.int64)
        out = []
        for op, v, carry in zip(self.ops, values, self.carry):
            if v is None:
                reduced = np.zeros(cuts.size)
            else:
                v = (v[0][:n], v[1][:n]) if isinstance(v, tuple) else v[:n]
                reduced = _piece_reduce(op, v, cuts, self.size)
            # the first piece continues the carried frame when the block starts inside a frame
            reduced[0] = self._UFUNCS[op](reduced[0], carry)
            out.append(reduced)
        if (start + n) % self.size == 0 or start + n == self.usable:   # the last frame is complete
            self.carry = [self._EMPTY[op] for op in self.ops]
        else:
            self.carry = [float(r[-1]) for r in out]
            out = [r[:-1] for r in out]
        return out


_DECADES_PER_NEPER = 1.0 / math.log(10.0)


class _Stft:
    """The STFT of `metrics.spectral_summary` (Hann, hop n_fft/4, zero-padded to whole frames,
    64 mels of measure/spectral.py), frame by frame over blocks, in float32: a log-mel differs from
    the float64 one by about 1e-7 decades, far below anything a check reads."""

    def __init__(self, sample_rate: int, n_mels: int = 64):
        self.n_fft = mel_fft_size(sample_rate)
        self.hop = max(1, self.n_fft // 4)
        self.n_mels = int(max(1, min(n_mels, self.n_fft // 4)))
        self.window = window_array("hann", self.n_fft).astype(np.float32)
        self.bank = np.ascontiguousarray(mel_filterbank(sample_rate, self.n_fft, self.n_mels), dtype=np.float32)
        self.log_floor = math.log10(1e-5)
        # The filters are triangles over neighbouring bins (each bin feeds at most two mels): the
        # product with the bank is taken over octave-wide bands of bins, each against only the mels
        # it feeds, a quarter of the dense product's work
        bins = self.bank.shape[0]
        fed = self.bank != 0
        self.bank_spans = []
        for lo, hi in zip((0, bins // 8, bins // 4, bins // 2), (bins // 8, bins // 4, bins // 2, bins)):
            mels = np.flatnonzero(fed[lo:hi].any(axis=0))
            if hi > lo and mels.size:
                first, last = int(mels[0]), int(mels[-1]) + 1
                self.bank_spans.append((lo, hi, first, last, np.ascontiguousarray(self.bank[lo:hi, first:last])))

    def frames_for(self, n: int) -> int:
        return max(1, 1 + math.ceil(max(n - self.n_fft, 0) / self.hop))

    def magnitudes(self, x32: np.ndarray, n_frames: int) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x32, self.n_fft)[::self.hop][:n_frames]
        return self.spectrum_magnitudes(frames)

    def spectrum_magnitudes(self, frames: np.ndarray) -> np.ndarray:
        from scipy.fft import rfft

        return np.abs(rfft(frames * self.window, axis=-1))

    def log_mel(self, magnitude: np.ndarray, log_scale: float) -> np.ndarray:
        mel = np.zeros((magnitude.shape[0], self.n_mels), dtype=np.float32)
        for lo, hi, first, last, part in self.bank_spans:
            mel[:, first:last] += magnitude[:, lo:hi] @ part
        # numpy's float32 natural log is vectorised and its log10 is not (4x slower): the same
        # decades to float32 rounding. A silent bin is log 0 = -inf, so it meets the floor below
        # whatever log_scale adds back (a clamp at 1e-30 put the silence of a 1e150-scaled block
        # at 120 decades)
        with np.errstate(divide="ignore"):
            logs = np.log(mel, out=mel)
        out = np.multiply(logs, _DECADES_PER_NEPER, dtype=np.float64)
        if log_scale:
            out += log_scale
        return np.maximum(out, self.log_floor, out=out)


def _as_float32(x: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """float32 copy for the STFT and the log10 to add back; scaled only where float32 would
    overflow or lose the signal (metrics divides by the peak: equal in the log domain)."""
    if scale == 0.0 or 1e-20 < scale < 1e20:
        return x.astype(np.float32), 0.0
    return (x / scale).astype(np.float32), math.log10(scale)


class _RefMelPeak:
    """The loudest bin of the reference's log-mel spectrogram, without transforming every frame.

    A mel bin is sum_f |X_f| w_kf <= ||X||_2 ||w_k||_2 (Cauchy-Schwarz) and ||X||^2 <= n_fft * sum
    (window * x)^2 (Parseval over the half spectrum), so the frame's windowed energy bounds all of
    its bins. Frames are transformed loudest bound first and only while the bound can beat the
    loudest bin found so far: after the first block that is a handful of frames per block."""

    def __init__(self, stft: _Stft, total_frames: int):
        self.stft, self.total_frames = stft, total_frames
        hop, n_fft = stft.hop, stft.n_fft
        self.window_sq = (window_array("hann", n_fft) ** 2).reshape(n_fft // hop, hop) if n_fft % hop == 0 else None
        self.bank_norm = float(np.sqrt((stft.bank.astype(np.float64) ** 2).sum(axis=0)).max())
        self.peak = 0.0

    def update(self, x: np.ndarray, first_frame: int, n_frames: int) -> None:
        """`x` holds the samples of frames first_frame .. first_frame + n_frames - 1, from the first
        frame's start (zero-padded to the last frame's end)."""
        if n_frames <= 0:
            return
        stft = self.stft
        hop, n_fft = stft.hop, stft.n_fft
        parts = n_fft // hop
        if self.window_sq is not None:
            head = x[: (n_frames - 1 + parts) * hop]
            energy, k = self._frame_energies(head, n_frames, parts), 0
            if not np.isfinite(energy).all():   # squares of 1e200 overflow: again divided by 2^k
                k = _scale_exponent(head)
                energy = self._frame_energies(np.ldexp(head, -k), n_frames, parts)
        else:  # hop does not divide n_fft: every frame is a candidate
            energy, k = np.full(n_frames, np.inf), 0
        bound = np.ldexp(np.sqrt(n_fft * np.maximum(energy, 0.0)) * self.bank_norm * 1.01, k)
        order = np.argsort(-bound)
        order = order[bound[order] > self.peak]
        if not order.size:   # after the first blocks, the usual case: nothing here can beat the peak
            return
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        log_scale = _as_float32(x[:0], scale)[1]
        factor = 10.0 ** log_scale
        batch = 64
        while order.size:
            chosen = np.sort(order[:batch])
            # only the chosen frames are converted to float32 (scaled as _as_float32 scales the block)
            frames = _as_float32(np.stack([x[t * hop:t * hop + n_fft] for t in chosen]), scale)[0] * stft.window
            from scipy.fft import rfft

            mel = np.abs(rfft(frames, axis=-1)) @ stft.bank
            self.peak = max(self.peak, float(mel.max()) * factor)
            order = order[batch:]
            order = order[bound[order] > self.peak]
            batch *= 2

    def _frame_energies(self, head: np.ndarray, n_frames: int, parts: int) -> np.ndarray:
        """Each frame's windowed energy, from the squares of `head` summed hop by hop."""
        with np.errstate(over="ignore", invalid="ignore"):
            sub = (head * head).reshape(-1, self.stft.hop) @ self.window_sq.T     # (rows, parts)
        energy = np.zeros(n_frames)
        for q in range(parts):
            energy += sub[q:q + n_frames, q]
        return energy

    def log_peak(self) -> float:
        return max(math.log10(self.peak), self.stft.log_floor) if self.peak > 0 else self.stft.log_floor


@dataclass
class _SideStats:
    nonfinite: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    samples: int = 0
    beyond_bound: int = 0

    def __post_init__(self):
        self.sums = _Sums({"sum": 1, "square": 2, "clip_error": 2})

    def update(self, x: np.ndarray, bound: float | None) -> tuple[np.ndarray, float, tuple[float, float] | None]:
        """Add a block of raw samples (non-finite ones are counted, then read as 0). Returns the
        block as measured (the same array when every sample is finite), its peak magnitude and,
        when it needed no scaling, its (sum, sum of squares): the caller's pair sums need neither
        another finiteness test, nor another scan for the peak, nor these two sums again."""
        if x.size == 0:
            return x, 0.0, None
        total = float(np.add.reduce(x))
        if not math.isfinite(total):
            finite = np.isfinite(x)
            bad = int(x.size - np.count_nonzero(finite))
            if bad:  # else huge finite values overflowed the sum: summed scaled below
                self.nonfinite += bad
                x = np.where(finite, x, 0.0)
                total = float(np.add.reduce(x))
        lo, hi = float(np.min(x)), float(np.max(x))
        self.minimum, self.maximum = min(self.minimum, lo), max(self.maximum, hi)
        self.samples += x.size
        peak = max(hi, -lo)
        k = _scale_exponent(peak=peak)
        y = np.ldexp(x, -k) if k else x
        sums = {"sum": float(np.add.reduce(y)) if k else total, "square": float(dot(y, y))}
        if bound is not None and peak > bound:
            beyond = np.abs(x) > bound
            self.beyond_bound += int(np.count_nonzero(beyond))
            excess = (x - np.clip(x, -bound, bound))
            excess = np.ldexp(excess, -k) if k else excess
            sums["clip_error"] = float(dot(excess, excess))
        self.sums.add(k, **sums)
        return x, peak, (None if k else (sums["sum"], sums["square"]))

    @property
    def peak(self) -> float:
        return max(self.maximum, -self.minimum) if self.samples else 0.0

    def rms_db(self) -> float:
        square = self.sums["square"]
        if not self.samples or square <= 0.0 or self.peak == 0.0:
            return -math.inf
        return 10.0 * math.log10(square / self.samples) + 20.0 * (self.sums.exponent or 0) * math.log10(2.0)

    def mean(self) -> float:
        if not self.samples or self.peak == 0.0:
            return 0.0
        return math.ldexp(self.sums["sum"] / self.samples, self.sums.exponent or 0)


def _pair_sums() -> _Sums:
    return _Sums({"r": 1, "e": 1, "rr": 2, "ee": 2, "re": 2, "err": 2})


def _add_pair_sums(sums: _Sums, r: np.ndarray, e: np.ndarray, peak: float | None = None,
                   also: _Sums | None = None, known: tuple[Any, Any] | None = None) -> np.ndarray | None:
    """Add the block's pair sums to `sums` (and to `also`, when the same block counts there too).
    `peak`: the blocks' largest magnitude when known (saves four scans); `known`: each side's
    unscaled (sum, sum of squares) when the caller has them (None for a side it has not). Returns
    r - e when the block needed no scaling (the caller's per-frame errors reuse it), else None."""
    if r.size == 0:
        return None
    k = _scale_exponent(r, e, peak=peak)
    if k:
        r, e = np.ldexp(r, -k), np.ldexp(e, -k)
    known_r, known_e = known if known is not None and not k else (None, None)
    d = r - e
    sum_r, rr = known_r if known_r is not None else (float(np.add.reduce(r)), float(dot(r, r)))
    sum_e, ee = known_e if known_e is not None else (float(np.add.reduce(e)), float(dot(e, e)))
    values = dict(r=sum_r, e=sum_e, rr=rr, ee=ee, re=float(dot(r, e)), err=float(dot(d, d)))
    sums.add(k, **values)
    if also is not None:
        also.add(k, **values)
    return None if k else d


class _Quadratic:
    """Error energies of corrections `a*r - b*e - c` (c a constant) from the pair sums over n samples."""

    def __init__(self, sums: _Sums, n: int):
        v = sums.values
        self.n = n
        self.r, self.e, self.rr, self.ee, self.re, self.raw_error = v["r"], v["e"], v["rr"], v["ee"], v["re"], v["err"]
        self.mean_r = self.r / n if n else 0.0
        self.mean_e = self.e / n if n else 0.0
        self.centred_rr = max(self.rr - n * self.mean_r ** 2, 0.0)
        self.centred_ee = max(self.ee - n * self.mean_e ** 2, 0.0)
        self.centred_re = self.re - n * self.mean_r * self.mean_e

    def error(self, a: float, b: float, c: float = 0.0) -> float:
        """sum (a*r - b*e - c)^2, 0.0 when the expansion is within rounding of its terms."""
        terms = (a * a * self.rr, b * b * self.ee, 2 * a * b * self.re, 2 * a * c * self.r, 2 * b * c * self.e,
                 c * c * self.n)
        value = terms[0] + terms[1] - terms[2] - terms[3] + terms[4] + terms[5]
        largest = max(abs(t) for t in terms)
        return 0.0 if value <= EXACT_FRACTION * largest else value

    def snr(self, signal: float, a: float, b: float, c: float = 0.0) -> float:
        return M.energy_ratio_db(signal, self.error(a, b, c))


def _gain(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0.0 else 0.0


def _centred(view: Any, start: int, stop: int, mean: float, exponent: int) -> np.ndarray:
    """view's samples start .. stop, the mean removed, divided by 2^exponent."""
    x = view.read(start, stop) - mean
    return np.ldexp(x, -exponent, out=x) if exponent else x


def _unit_rms_spectrum(x: np.ndarray, energy: float, size: int) -> tuple[np.ndarray, int]:
    """`scipy.fft.rfft` of x zero-padded to `size`, in float32, with x divided by the power of two
    nearest its RMS first (so nothing overflows or turns subnormal, whatever the level), and that
    power's exponent."""
    exponent = int(unit_rms_exponent(energy, x.size))
    padded = np.zeros(size, np.float32)
    np.multiply(x[:size], math.ldexp(1.0, -exponent), out=padded[:min(x.size, size)], casting="same_kind")
    return _real_fft32(padded), exponent


def _real_fft32(x: np.ndarray) -> np.ndarray:
    """`scipy.fft.rfft(x)` of a float32 array. pocketfft's real transform is slow on lengths with a
    large odd part (5^5 in the 168,750 points of a 10 s pair's lag search: 1.5 ms against 0.54 ms
    for the complex transform of half the length), so those are computed as that half-length
    complex FFT of the even and odd samples, split into their two spectra and recombined with the
    twiddle factors (the textbook identity; float32 rounding alike, 3e-7 of the peak). Lengths
    whose odd part is at most 125 stay with rfft, which is as fast or faster there. x's buffer
    may be overwritten."""
    from scipy.fft import fft, rfft

    size = x.size
    if size % 2 or size // (size & -size) <= 125:
        return rfft(x)
    half = size // 2
    z = fft(x.view(np.complex64), overwrite_x=True)       # z[k] = E[k] + i O[k], k < half
    ze = np.empty(half + 1, np.complex64)
    ze[:half], ze[half] = z, z[0]
    zc = np.empty(half + 1, np.complex64)                 # conj(z[(half - k) mod half])
    zc[0], zc[1:half], zc[half] = z[0], z[:0:-1], z[0]
    np.conjugate(zc, out=zc)
    spectrum = ze + zc                                    # 2 E[k]
    ze -= zc                                              # 2i O[k]
    ze *= _half_twiddles(size)                            # W^k O[k]
    spectrum *= np.float32(0.5)
    spectrum += ze
    return spectrum


@functools.lru_cache(maxsize=4)
def _half_twiddles(size: int) -> np.ndarray:
    """exp(-2 pi i k / size) / (2i) for k = 0 .. size/2, as complex64 (see _real_fft32)."""
    k = np.arange(size // 2 + 1)
    twiddles = (np.exp(-2j * np.pi * k / size) * -0.5j).astype(np.complex64)
    twiddles.setflags(write=False)
    return twiddles


@dataclass
class _Lag:
    lag: int
    correlation: float
    fraction: float = 0.0


class _RolledView:
    """np.roll(view, shift) read by pieces: rolled[i] = x[(i - shift) mod n]."""

    def __init__(self, view: _FlatView, shift: int):
        self.view, self.length = view, view.length
        self.shift = int(shift) % self.length if self.length else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, 0), min(stop, self.length)
        parts = []
        if start < self.shift:
            parts.append(self.view.read(start - self.shift + self.length, min(stop, self.shift) - self.shift + self.length))
        if stop > self.shift:
            parts.append(self.view.read(max(start, self.shift) - self.shift, stop - self.shift))
        return np.concatenate(parts) if len(parts) > 1 else (parts[0] if parts else np.zeros(0))


class _Correlator:
    """`metrics.cross_correlation` (means removed, normalised, +-max_lag) between the reference and
    estimate views. Up to LAG_BLOCKS blocks the sum of the per-block correlations is the whole
    signals' correlation: one FFT, the reference's spectrum kept for the next estimate (the chance
    level correlates rolled copies of the same estimate). Beyond, the same evenly spaced blocks
    are read by seeking.

    The single FFT runs in float32 (half the time of float64 at the same length; both signals
    scaled by a power of two to unit RMS first, so nothing overflows or turns subnormal). Its
    values are within about 1e-6 of the float64 ones (FFT rounding is relative to the norms, so
    to a normalised correlation of 1); `exact_at` recomputes chosen lags as float64 dot products,
    which is how estimate_lag gets the same peak, ties and value as the float64 search."""

    def __init__(self, ref_view: _FlatView, mean_r: float, mean_e: float, peaks: tuple[float, float] = (1.0, 1.0)):
        self.ref_view, self.mean_r, self.mean_e = ref_view, mean_r, mean_e
        # powers of two each side is divided by, 0 unless its peak (pass 1's) is so far from 1 that
        # E_ref E_est would overflow or underflow (the normalised correlation is the same)
        self.ref_exponent, self.est_exponent = (correlation_exponent(peak) for peak in peaks)
        # (FFT size, conjugate float32 spectrum, E_ref, means-removed reference, its scale exponent)
        self._spectrum: tuple[int, np.ndarray, float, np.ndarray, int] | None = None
        # the last single-FFT correlation: (estimate view, circular frame, its norm), the frame
        # in the float32 units of the scaled signals and the norm in the same units
        self.frame: tuple[Any, np.ndarray, float] | None = None
        # (estimate view, means-removed reference, means-removed estimate, sqrt(E_ref E_est)) of it
        self._signals: tuple[Any, np.ndarray, np.ndarray, float] | None = None
        self._block_spectra: dict[tuple[int, int], tuple[int, int, np.ndarray, float]] = {}

    def correlate(self, est_view: Any, max_lag: int, precise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Lags and normalised correlation; `precise` makes a single FFT float64 (estimate_lag's
        fallback when too many lags are within float32's rounding of the peak)."""
        max_lag = max(0, int(max_lag))
        lags = np.arange(-max_lag, max_lag + 1)
        if self.ref_view.length == 0 or est_view.length == 0:
            return lags, np.zeros(lags.size)
        if lag_search_is_one_fft(self.ref_view.length, max_lag):
            raw, ref_energy, est_energy = self._full(est_view, max_lag, precise)
        else:
            raw, ref_energy, est_energy = self._blocks(est_view, max_lag, max(4 * max_lag, 1 << 14))
        denominator = math.sqrt(ref_energy * est_energy)
        if not denominator > 0.0 or not math.isfinite(denominator):
            return lags, np.zeros(lags.size)
        return lags, np.clip(raw / denominator, -1.0, 1.0)

    def searched_in_float32(self, est_view: Any) -> bool:
        """Whether the last `correlate` of this view was the single float32 FFT (a block-wise one is
        float64 already), so that `exact_at` can recheck its lags."""
        return self._signals is not None and self._signals[0] is est_view

    def exact_at(self, lags: np.ndarray) -> np.ndarray:
        """The normalised correlation at `lags` in float64 (one dot product each), for the view the
        last single-FFT `correlate` was given (see searched_in_float32)."""
        _, r, e, denominator = self._signals
        values = np.zeros(len(lags))
        for i, k in enumerate(int(v) for v in lags):
            lo, hi = max(0, -k), min(r.size, e.size - k)
            if hi > lo:
                values[i] = float(dot(r[lo:hi], e[lo + k:hi + k]))
        return np.clip(values / denominator, -1.0, 1.0)

    def _full(self, est_view: Any, max_lag: int, precise: bool) -> tuple[np.ndarray, float, float]:
        from scipy.fft import irfft, next_fast_len, rfft

        lr = self.ref_view.length
        le = min(est_view.length, lr + max_lag)
        size = next_fast_len(max(lr, le) + max_lag + 1, real=True)
        if self._spectrum is None or self._spectrum[0] != size:
            r = _centred(self.ref_view, 0, lr, self.mean_r, self.ref_exponent)
            ref_energy = float(dot(r, r))
            ref_spectrum, ref_exponent = _unit_rms_spectrum(r, ref_energy, size)
            self._spectrum = (size, np.conjugate(ref_spectrum, out=ref_spectrum), ref_energy, r, ref_exponent)
        _, ref_spectrum, ref_energy, r, ref_exponent = self._spectrum
        e = _centred(est_view, 0, le, self.mean_e, self.est_exponent)
        est_part = e[:min(lr, e.size)]
        est_energy = float(dot(est_part, est_part))
        norm = math.sqrt(ref_energy * est_energy)
        if precise:
            full = irfft(rfft(e, size) * np.conj(rfft(r, size)), size)
            unscale = 1.0
        else:
            est_spectrum, est_exponent = _unit_rms_spectrum(e, est_energy if e.size <= lr else float(dot(e, e)), size)
            est_spectrum *= ref_spectrum
            full = irfft(est_spectrum, size)
            unscale = math.ldexp(1.0, ref_exponent + est_exponent)
        out = np.concatenate([full[size - max_lag:], full[:max_lag + 1]]) if max_lag else full[:1]
        self.frame = (est_view, full, norm / unscale)
        self._signals = (est_view, r, e, norm)
        return out.astype(np.float64) * unscale, ref_energy, est_energy

    def _blocks(self, est_view: Any, max_lag: int, block: int) -> tuple[np.ndarray, float, float]:
        from scipy.fft import irfft, next_fast_len, rfft

        starts = np.arange(0, self.ref_view.length, block)
        if starts.size > LAG_BLOCKS:
            starts = starts[np.linspace(0, starts.size - 1, LAG_BLOCKS).round().astype(int)]
        out = np.zeros(2 * max_lag + 1)
        ref_energy = est_energy = 0.0
        for start in (int(v) for v in starts):
            key = (start, block)
            if key not in self._block_spectra:  # the chance level reuses the lag's reference blocks
                seg_r = _centred(self.ref_view, start, start + block, self.mean_r, self.ref_exponent)
                size = next_fast_len(seg_r.size + 2 * max_lag + seg_r.size)
                self._block_spectra[key] = (seg_r.size, size, np.conj(rfft(seg_r, size)), float(dot(seg_r, seg_r)))
            length, size, ref_spectrum, energy = self._block_spectra[key]
            lo, hi = start - max_lag, start + length + max_lag
            seg_e = np.zeros(hi - lo)
            src_lo, src_hi = max(lo, 0), min(hi, est_view.length)
            if src_hi > src_lo:
                values = _centred(est_view, src_lo, src_hi, self.mean_e, self.est_exponent)
                seg_e[src_lo - lo:src_lo - lo + values.size] = values
            ref_energy += energy
            part = seg_e[start - lo:start - lo + length][: max(0, min(length, est_view.length - start))]
            est_energy += float(dot(part, part))
            out += irfft(rfft(seg_e, size) * ref_spectrum, size)[: 2 * max_lag + 1]
        return out, ref_energy, est_energy


def estimate_lag(correlator: _Correlator, est_view: _FlatView, max_lag_samples: int) -> _Lag:
    """`pair._lag_peak_fraction` (metrics.lag_and_peak plus the fractional part): the lag with the
    largest |normalised correlation| (ties to the smallest |lag|), the signed correlation there and
    the fraction of a sample where the interpolated peak lies (0 below 0.02 samples)."""
    longest = max(correlator.ref_view.length, est_view.length)
    max_lag = max(min(int(max_lag_samples), longest - 1), 0) if longest else 0
    lags, c = correlator.correlate(est_view, max_lag)
    c = np.nan_to_num(c, nan=0.0)
    magnitude = np.abs(c)
    best = float(magnitude.max()) if magnitude.size else 0.0
    if best == 0.0:
        return _Lag(0, 0.0)
    if correlator.searched_in_float32(est_view):
        # every lag that could be the float64 peak, recomputed in float64; a flat peak: the float64 FFT
        near = np.flatnonzero(magnitude >= best - FLOAT32_LAG_MARGIN)
        if near.size <= EXACT_LAGS:
            c[near] = correlator.exact_at(lags[near])
        else:
            lags, c = correlator.correlate(est_view, max_lag, precise=True)
            c = np.nan_to_num(c, nan=0.0)
    magnitude = np.abs(c)
    best = float(magnitude.max())
    if best == 0.0:
        return _Lag(0, 0.0)
    candidates = np.flatnonzero(magnitude >= best * (1.0 - 1e-9))
    index = int(candidates[np.argmin(np.abs(lags[candidates]))])
    fraction = M.fractional_lag(lags, c, index)
    return _Lag(int(lags[index]), float(c[index]), fraction if abs(fraction) >= 0.02 else 0.0)


def correlation_chance(correlator: _Correlator, est_view: _FlatView, max_lag_samples: int) -> float:
    """`pair._correlation_chance`: the largest |correlation| with the estimate rotated by a third and
    two thirds of its length, over +-min(max_lag, length / 4); within the lag search's own frame
    when that was one FFT (no transform more), else rolled and correlated block by block. Call it
    after estimate_lag on the same view."""
    n = est_view.length
    window = min(int(max_lag_samples), n // 4)
    if n < 16 or window < 1:
        return 0.0
    if correlator.frame is not None and correlator.frame[0] is est_view:
        _, frame, norm = correlator.frame
        return chance_in_frame(frame, n, window, norm)
    chance = 0.0
    for shift in (n // 3, 2 * n // 3):
        _, c = correlator.correlate(_RolledView(est_view, shift), window)
        chance = max(chance, float(np.max(np.abs(c))) if c.size else 0.0)
    return chance


class _Inline:
    """An executor that runs each task at once in the caller's thread: a pair of one block has no
    next block to overlap with, and a thread hand-off per pass only costs (folders of short pairs
    are spread over worker processes instead)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by result(), as a thread's would be
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        pass


def _helper_for(samples: int, block: int) -> "ThreadPoolExecutor | _Inline":
    """One helper thread for a pass over several blocks, none for a single block."""
    return ThreadPoolExecutor(max_workers=1) if samples > block else _Inline()


def _read_ahead(items: Any, read: Callable[[Any], Any]):
    """(item, read(item)) for each item, the next item's read running in a reader thread while the
    caller works on this one: soundfile releases the GIL while it reads and converts, and the two
    reads of a block took a third of a pass's main thread. Only that thread touches the sources
    while the pass runs (the helper threads get arrays), so a file handle is never shared."""
    items = list(items)
    if len(items) <= 1:
        for item in items:
            yield item, read(item)
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, items[0])
        for index, item in enumerate(items):
            data = pending.result()
            if index + 1 < len(items):
                pending = reader.submit(read, items[index + 1])
            yield item, data


def _blocks(total: int, block: int):
    for start in range(0, total, block):
        yield start, min(start + block, total)


def measure_pair_stream(ref: SignalSource, est: SignalSource, sample_rate: int, *, subject: str | None = None,
                        output_bound: float | None = None, max_lag_samples: int | None = None,
                        hop_samples: int | None = None, block_samples: int = BLOCK_SAMPLES,
                        chunks: "ChunkEnergies | None" = None,
                        on_lag: "Callable[[PairMeasurements], None] | None" = None) -> PairMeasurements:
    """`measure_pair` on two sources, streamed (see the module doc). Sources with different channel
    counts must be reconciled by the caller (compare downmixes both). The frame-rate measurements
    (R317) are taken on at most FRAME_LOCKING_SECONDS of the aligned pair (all of a shorter one).
    `chunks`, when given, receives the (reference, error) energy of each chunk of the compared
    samples (pair.chunk_energies per chunk, for R313). `on_lag(m)`, when given, is called once the
    lag is known (pass 1's numbers and the lag filled in), before pass 2: work that needs only the
    alignment (compare's quality metrics) can start beside it."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    stft = _Stft(sample_rate)
    block = max(stft.hop, int(block_samples) // stft.hop * stft.hop)
    for _attempt in range(3):  # a file found truncated in pass 1 changes the lengths: measure again
        lengths = (ref.frames, est.frames)
        if chunks is not None:
            chunks.signal.clear()
            chunks.error.clear()
        m, state = _pass_one(ref, est, sample_rate, subject, output_bound, stft, block, chunks)
        if (ref.frames, est.frames) == lengths:
            break
    if state is None:
        return m
    return _pass_two(ref, est, m, state, sample_rate, output_bound, max_lag_samples, stft, block, hop_samples, on_lag)


def _pass_one(ref: SignalSource, est: SignalSource, sample_rate: int, subject: str | None,
              output_bound: float | None, stft: _Stft, block: int,
              chunks: "ChunkEnergies | None") -> tuple[PairMeasurements, dict | None]:
    channels = ref.channels
    n = min(ref.frames, est.frames)
    full_r, full_e = _FlatView(ref, ref.frames), _FlatView(est, est.frames)
    crop_r, crop_e = _FlatView(ref, n), _FlatView(est, n)
    compared = channels * n
    m = PairMeasurements(sample_rate=sample_rate, ref_samples=ref.frames, est_samples=est.frames,
                         compared_samples=compared, subject=subject, mel_distance_config=dict(MEL_DISTANCE_CONFIG))
    bound_for_ceiling = output_bound if output_bound is not None else 1.0
    side_r, side_e = _SideStats(), _SideStats()
    pair = _pair_sums()
    crop_peak = [0.0, 0.0]
    frame = max(1, round(0.02 * sample_rate))
    seg_frames = max(1, compared // frame)
    seg_usable = min(compared, seg_frames * frame) if compared >= frame else compared
    mel_frames = stft.frames_for(compared)
    # Pass 2 transforms every frame of a pair of one block at once: the loudest reference mel bin
    # (the floor of the mel correlations) is read there from the same log-mels, so pass 1 does not
    # search for it (0.8 ms of a 10 s pair's 16).
    mel_peak = _RefMelPeak(stft, mel_frames) if compared > block else None
    extension = stft.n_fft - stft.hop

    chunk_sums = _FrameSums(chunks.samples, compared, ("sumsq", "sumsq", "max")) if chunks is not None else None

    def crop_update(r: np.ndarray, e: np.ndarray, start: int, r_ext: np.ndarray, bad: np.ndarray | None,
                    peaks: tuple[float, float] | None = None, known: tuple[Any, Any] | None = None) -> None:
        """`peaks` and `known`: the blocks' peak magnitudes and sums when pass 1's side statistics
        measured exactly these samples."""
        if peaks is None:
            peaks = tuple(max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0 for x in (r, e))
        d = _add_pair_sums(pair, r, e, peak=max(peaks), known=known)
        crop_peak[0], crop_peak[1] = max(crop_peak[0], peaks[0]), max(crop_peak[1], peaks[1])
        pending.append(helper.submit(chunk_and_mel_update, r, e, d, start, r_ext, bad))
        while len(pending) > 1:   # one block in the helper thread while the next is read and summed
            pending.pop(0).result()

    def chunk_and_mel_update(r: np.ndarray, e: np.ndarray, d: np.ndarray | None, start: int, r_ext: np.ndarray,
                             bad: np.ndarray | None) -> None:
        """The per-chunk energies and the mel-peak search, in order, block after block (one thread)."""
        if chunk_sums is not None:
            if d is None:
                d = r - e
            flags = bad[: r.size].astype(np.float64) if bad is not None else None
            with np.errstate(over="ignore", invalid="ignore"):
                signal, error, nonfinite = chunk_sums.update(start, [r, d, flags])
            chunks.signal.extend(float(v) for v in signal)
            chunks.error.extend(float(v) if not f else math.inf for v, f in zip(error, nonfinite))
        if mel_peak is None:
            return
        first = start // stft.hop
        count = min(-(-(start + r.size) // stft.hop), mel_frames) - first if r.size else 0
        need = (count - 1) * stft.hop + stft.n_fft if count > 0 else 0
        padded = r_ext[:need]
        if padded.size < need:
            padded = np.concatenate([padded, np.zeros(need - padded.size)])
        mel_peak.update(padded, first, count)

    # numpy releases the GIL in its loops: the chunk energies and the mel-peak search of one block
    # run on the other core while this thread reads the next block and takes its sums
    longest = max(full_r.length, full_e.length)
    helper = _helper_for(longest, block)
    pending: list = []
    full_r.zero_nonfinite = full_e.zero_nonfinite = False  # counted here first

    def read_both(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        a, b = span
        return full_r.read(a, b + extension), full_e.read(a, b)

    for (a, b), (r_raw, e_raw) in _read_ahead(_blocks(longest, block), read_both):
        head = r_raw[: b - a]
        r_block, peak_r, sums_r = side_r.update(head, bound_for_ceiling)
        e_block, peak_e, sums_e = side_e.update(e_raw, None)
        if channels == 1 and a < compared:
            if r_block is head and np.isfinite(r_raw[b - a:]).all():
                r_ext = r_raw          # every sample finite: the raw block is the measured one
            else:
                r_ext = _finite_or_zero(r_raw)
            stop = min(b, compared) - a
            stop = min(stop, r_ext.size, e_block.size)  # a file that ended early: measured again
            clean = r_ext is r_raw and e_block is e_raw
            whole = stop == b - a == e_raw.size       # the side statistics saw exactly these samples
            crop_update(r_ext[:stop], e_block[:stop], a, r_ext[: max(0, min(compared - a, r_ext.size))],
                        None if clean else _nonfinite_mask(r_raw[:stop], e_raw[:stop]),
                        (peak_r, peak_e) if whole else None, (sums_r, sums_e) if whole else None)
    if channels > 1:
        crop_r.zero_nonfinite = crop_e.zero_nonfinite = False
        for a, b in _blocks(compared, block):
            r_raw = crop_r.read(a, b + extension)
            e_raw = crop_e.read(a, b)
            stop = min(b - a, r_raw.size, e_raw.size)
            r_ext = _finite_or_zero(r_raw)
            crop_update(r_ext[:stop], _finite_or_zero(e_raw)[:stop], a, r_ext, _nonfinite_mask(r_raw[:stop], e_raw[:stop]))

    for future in pending:
        future.result()
    helper.shutdown()
    m.nonfinite_ref, m.nonfinite_est = side_r.nonfinite, side_e.nonfinite
    for name, side in (("ref", side_r), ("est", side_e)):
        if side.samples:
            setattr(m, f"{name}_peak", side.peak)
            setattr(m, f"{name}_min", side.minimum)
            setattr(m, f"{name}_max", side.maximum)
        setattr(m, f"{name}_rms_db", side.rms_db())
        setattr(m, f"{name}_dc", side.mean())
    m.ref_silent = m.ref_rms_db < SILENT_REF_RMS_DB
    m.est_silent = m.est_rms_db < SILENT_REF_RMS_DB or (m.est_max - m.est_min) == 0.0
    if compared == 0:
        m.notes.append("nothing to compare: an input is empty")
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        return m, None
    q = _Quadratic(pair, compared)
    # the signal energy in SNR units (pair sums are in units of 2^(2*exponent); ratios cancel them)
    signal = q.rr
    m.snr_db = M.energy_ratio_db(signal, q.raw_error) if max(crop_peak) > 0.0 else math.inf
    state = {"q": q, "crop_peak": crop_peak, "frame": frame,
             "seg_usable": seg_usable, "seg_frames": seg_frames, "mel_frames": mel_frames,
             "mel_floor": mel_peak.log_peak() - 3.0 if mel_peak is not None else None, "side_r": side_r, "side_e": side_e,
             "bound_for_ceiling": bound_for_ceiling}
    return m, state


def _si_sdr(q: _Quadratic, zero_mean: bool, silent: bool) -> float:
    """metrics.si_sdr_db from the sums."""
    if silent:
        return math.inf
    if zero_mean:
        rr, re = q.centred_rr, q.centred_re
        if rr == 0.0 and q.centred_ee == 0.0:
            return math.inf
        # a constant reference leaves rounding after mean removal: no signal (metrics: 1e-26 of the
        # raw energy; expanded sums round at ~1e-16, so the gate sits just above that)
        if rr <= 1e-12 * q.rr or rr == 0.0:
            return -math.inf
        alpha = re / rr
        target = alpha * alpha * rr
        residual = q.error(-alpha, -1.0, q.mean_e - alpha * q.mean_r)
    else:
        if q.rr == 0.0:
            return -math.inf
        alpha = q.re / q.rr
        target = alpha * alpha * q.rr
        residual = q.error(-alpha, -1.0)
    if residual <= 0.0:
        return math.inf if target > 0.0 else -math.inf
    return M.energy_ratio_db(target, residual)


def _pass_two(ref: SignalSource, est: SignalSource, m: PairMeasurements, state: dict, sample_rate: int,
              output_bound: float | None, max_lag_samples: int | None, stft: _Stft, block: int,
              hop_samples: int | None, on_lag: Any = None) -> PairMeasurements:
    channels = ref.channels
    n = min(ref.frames, est.frames)
    full_r, full_e = _FlatView(ref, ref.frames), _FlatView(est, est.frames)
    crop_r, crop_e = _FlatView(ref, n), _FlatView(est, n)
    side_r, side_e = state["side_r"], state["side_e"]
    q: _Quadratic = state["q"]
    compared = m.compared_samples

    # ---- lag, on the full signals (metrics.lag_and_peak) ----
    max_lag = int(max_lag_samples if max_lag_samples is not None else round(MAX_LAG_SECONDS * sample_rate))
    correlator = _Correlator(full_r, side_r.mean(), side_e.mean(), (side_r.peak, side_e.peak))
    found = estimate_lag(correlator, full_e, max_lag)
    lag, peak = found.lag, found.correlation
    m.lag_samples, m.correlation, m.lag_fraction_samples = lag, peak, found.fraction
    m.correlation_chance = correlation_chance(correlator, full_e, max_lag)
    del correlator  # the reference spectrum: a few MB
    m.lag_ms = 1000.0 * lag / sample_rate
    m.polarity = 0 if abs(peak) < 0.1 else (1 if peak > 0 else -1)
    offset_r, offset_e = (0, lag) if lag > 0 else (-lag, 0)
    aligned = max(0, min(full_r.length - offset_r, full_e.length - offset_e))
    if on_lag is not None:
        on_lag(m)

    # ---- pass 2 ----
    aligned_sums = _pair_sums()
    segment = max(1, round(SEGMENT_SECONDS * sample_rate))
    segments = _FrameSums(segment, aligned // segment * segment, ("sumsq", "dot", "sum", "sum", "sumsq", "min", "max"))
    segment_parts: list[list[np.ndarray]] = []
    segment_usable = aligned // segment * segment
    tail = {"min": math.inf, "max": -math.inf}
    # the output bound is inferred from the peaks (pass 1); the small-signal level needs it here
    bound = output_bound
    if bound is None and m.ref_peak > 1.0 and 0.0 < m.est_peak <= 1.0:
        bound, m.output_bound_inferred = 1.0, True
    if bound is not None and bound > 0:
        m.output_bound = float(bound)
    small_limit = 0.5 * (m.output_bound or 1.0)
    all_small = m.ref_peak <= small_limit   # every aligned reference sample is a small-signal one
    small = _pair_sums()
    small_count = 0
    seg_snr = _FrameSums(state["frame"], state["seg_usable"], ("sumsq", "sumsq"))
    # Segmental SNR gates each 20 ms frame at 40 dB below the loudest one, known only at the end:
    # each frame's energy and clipped SNR are kept (12 bytes per 20 ms, 2 MB an hour) and gated then.
    # Frames are measured on the pair scaled by one power of two when its squares would overflow
    # or underflow (the ratios do not change).
    seg_energy: list[np.ndarray] = []
    seg_db: list[np.ndarray] = []
    # the files' peaks (pass 1) bound every block: one exponent for the whole pair
    files_peak = max(side_r.peak, side_e.peak)
    seg_exponent = _scale_exponent(peak=files_peak)
    mel_frames = state["mel_frames"]
    floor = state["mel_floor"]
    # per mel band: sums of the floored log-mels (a: reference, b: estimate), their squares and product
    mel = {key: np.zeros(stft.n_mels) for key in ("sa", "sb", "saa", "sbb", "sab")}
    mel.update({"abs": 0.0, "a_min": math.inf, "a_max": -math.inf, "b_min": math.inf, "b_max": -math.inf})
    power_r = np.zeros(stft.n_fft // 2 + 1)
    power_e = np.zeros(stft.n_fft // 2 + 1)
    mel["frames"] = 0
    # A long pair's log-mel and long-term spectra come from at most MEL_FRAMES_LONG strided frames
    # (the STFT is most of the work); a shorter pair uses every frame, as measure_pair does.
    frame_stride = 1
    if compared > LONG_PAIR_SECONDS * sample_rate:
        frame_stride = max(1, math.ceil(compared / stft.hop / MEL_FRAMES_LONG))
    if frame_stride > 1:
        m.notes.append(f"mel distance, mel correlations and bandwidth from every {frame_stride}th STFT frame "
                       f"(pair longer than {LONG_PAIR_SECONDS / 60:g} min)")
    # numpy releases the GIL in its loops: the segmental-SNR frames and the STFT of one block run in a
    # helper thread beside the aligned sums of the next
    pool = _helper_for(max(full_r.length, full_e.length), block)
    pending: list = []
    scale_r, scale_e = state["crop_peak"]
    extension = stft.n_fft - stft.hop
    # When the files' peaks can be squared safely, no block needs scaling and its sums skip the
    # peak scans.
    block_peak = None if seg_exponent else files_peak
    if side_r.nonfinite == 0 and side_e.nonfinite == 0:  # pass 1 found none: no need to look again
        for view in (full_r, full_e, crop_r, crop_e):
            view.zero_nonfinite = False

    def unaligned_update(start: int, r_ext: np.ndarray, e_ext: np.ndarray) -> None:
        pending.append(pool.submit(unaligned_work, start, r_ext, e_ext))
        while len(pending) > 1:  # at most one block in the helper thread while the next one is read
            part = pending.pop(0).result()
            if part is not None:
                _add_stft_sums(mel, power_r, power_e, part)

    def unaligned_work(start: int, r_ext: np.ndarray, e_ext: np.ndarray) -> dict[str, Any] | None:
        """The segmental-SNR frames and the STFT sums of one block (the helper thread, in order)."""
        size = max(0, min(start + block, compared) - start)
        r, e = r_ext[:size], e_ext[:size]
        if seg_exponent:
            r, e = np.ldexp(r, -seg_exponent), np.ldexp(e, -seg_exponent)
        d = r - e
        energy, error = seg_snr.update(start, [r, d])
        if energy.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_frame = 10.0 * np.log10(energy / error)
            seg_energy.append(energy)
            seg_db.append(np.clip(np.nan_to_num(per_frame, nan=35.0, posinf=35.0, neginf=-10.0), -10.0,
                                  35.0).astype(np.float32))
        first = start // stft.hop
        count = min(-(-(start + size) // stft.hop), mel_frames) - first
        if count <= 0:
            return None
        need = (count - 1) * stft.hop + stft.n_fft
        return _stft_block(stft, r_ext[:need], e_ext[:need], first, count, frame_stride, scale_r, scale_e, floor)

    def aligned_update(start: int, ra: np.ndarray, ea: np.ndarray) -> None:
        nonlocal small_count
        if all_small:
            inside, count = None, ra.size
        else:
            inside = np.abs(ra) <= small_limit
            count = int(np.count_nonzero(inside))
        small_count += count
        # a block entirely at small-signal level adds the same sums to both (the common case)
        _add_pair_sums(aligned_sums, ra, ea, peak=block_peak, also=small if count == ra.size else None)
        if 0 < count < ra.size:
            _add_pair_sums(small, ra[inside], ea[inside], peak=block_peak)
        if seg_exponent:   # summed divided by 2^seg_exponent, as the segmental-SNR frames
            ra, ea = np.ldexp(ra, -seg_exponent), np.ldexp(ea, -seg_exponent)
        parts = segments.update(start, [ra, (ra, ea), ra, ea, ea, ea, ea])
        if parts[0].size:
            segment_parts.append(parts)
        if start + ra.size > segment_usable:
            rest = ea[max(0, segment_usable - start):]
            tail["min"], tail["max"] = min(tail["min"], float(rest.min())), max(tail["max"], float(rest.max()))

    if channels == 1:
        # one read of each side serves both the unaligned and the aligned pairs (ref index i pairs
        # with est index i unaligned and i + lag aligned)
        span = max(compared, offset_r + aligned)
        low, high = min(lag, 0), max(lag, 0)

        def read_both(span_ab: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            a, b = span_ab
            return full_r.read(a, b + extension), _read_padded(full_e, a + low, b + high + extension)

        for (a, b), (r_ext, e_ext) in _read_ahead(_blocks(span, block), read_both):
            if a < compared:
                e_un = e_ext[a - (a + low):]
                unaligned_update(a, r_ext[: max(0, compared - a)], e_un[: max(0, compared - a)])
            lo, hi = max(a, offset_r), min(b, offset_r + aligned)
            if hi > lo:
                ra = r_ext[lo - a:hi - a]
                ea = e_ext[lo + lag - (a + low):hi + lag - (a + low)]
                aligned_update(lo - offset_r, ra, ea)
    else:
        for a, b in _blocks(compared, block):
            unaligned_update(a, crop_r.read(a, b + extension), crop_e.read(a, b + extension))
        for a, b in _blocks(aligned, block):
            aligned_update(a, full_r.read(offset_r + a, offset_r + b), full_e.read(offset_e + a, offset_e + b))

    for future in pending:
        part = future.result()
        if part is not None:
            _add_stft_sums(mel, power_r, power_e, part)
    pool.shutdown()
    mel_frames = mel["frames"]

    # ---- the numbers ----
    silent_pair = max(state["crop_peak"]) == 0.0
    m.si_snr_db = _si_sdr(q, True, silent_pair)
    m.si_sdr_db = _si_sdr(q, False, silent_pair)
    if silent_pair:
        m.seg_snr_db = math.inf
    else:
        frame_energy = np.concatenate(seg_energy) if seg_energy else np.zeros(0)
        loudest_frame = float(frame_energy.max()) if frame_energy.size else 0.0
        if loudest_frame <= 0.0:  # every frame silent: exact only if nothing differs
            m.seg_snr_db = math.inf if q.raw_error <= 0.0 else -math.inf
        else:
            active = frame_energy >= loudest_frame * 10.0 ** (-40.0 / 10.0)
            m.seg_snr_db = float(np.concatenate(seg_db)[active].astype(np.float64).sum()) / int(active.sum())
    cells = mel_frames * stft.n_mels
    m.mel_distance = mel["abs"] / cells
    m.mel_correlation = _pearson(mel, cells)

    signal = q.rr
    g0 = _gain(q.re, q.ee)
    sign0 = -1.0 if g0 < 0 else 1.0
    qa = _Quadratic(aligned_sums, aligned)
    g_aligned = _gain(qa.centred_re, qa.centred_ee)
    m.gain = abs(g_aligned)
    # "all": ra - (ra_dc + g * (ea - ea_dc)) = ra - g*ea - (ra_dc - g*ea_dc)
    m.what_if = {
        "raw": m.snr_db,
        "gain": q.snr(signal, 1.0, max(g0, 0.0)),
        "aligned": M.energy_ratio_db(qa.rr, qa.raw_error) if aligned else -math.inf,
        "polarity": q.snr(signal, 1.0, sign0),
        "all": qa.snr(qa.rr, 1.0, g_aligned, qa.mean_r - g_aligned * qa.mean_e) if aligned else -math.inf,
    }
    if silent_pair:
        m.what_if = dict.fromkeys(WHAT_IF_KEYS, math.inf)
    sign_aligned = -1.0 if g_aligned < 0 else 1.0
    g_centred = _gain(q.centred_re, q.centred_ee)
    m.snr_without_alignment_db = q.snr(signal, 1.0, g_centred, q.mean_r - g_centred * q.mean_e)
    g_positive = max(g_aligned, 0.0)
    m.snr_without_polarity_db = qa.snr(qa.rr, 1.0, g_positive, qa.mean_r - g_positive * qa.mean_e)
    m.snr_without_gain_db = qa.snr(qa.rr, 1.0, sign_aligned, qa.mean_r - sign_aligned * qa.mean_e)
    level = _gain(qa.centred_re, qa.centred_rr)
    m.output_level_db = 20.0 * math.log10(abs(level)) if level != 0.0 else -math.inf
    if level != 0.0:
        b = sign_aligned / abs(level)
        m.snr_with_level_fixed_db = qa.snr(qa.rr, 1.0, b, qa.mean_r - b * qa.mean_e)
    else:
        m.snr_with_level_fixed_db = m.snr_without_gain_db
    if silent_pair:
        for name in ("snr_without_alignment_db", "snr_without_polarity_db", "snr_without_gain_db",
                     "snr_with_level_fixed_db"):
            setattr(m, name, math.inf)

    per_segment = ([np.concatenate([p[i] for p in segment_parts]) for i in range(7)] if segment_parts
                   else [np.zeros(0)] * 7)
    # into the aligned sums' units (2^(degree * exponent)), which _segment_level_correction mixes in
    units = seg_exponent - (aligned_sums.exponent or 0)
    if units:
        per_segment = [np.ldexp(v, (2 if i in (0, 1, 4) else 1) * units) for i, v in enumerate(per_segment)]
        tail = {key: math.ldexp(value, units) for key, value in tail.items()}
    energy, dot = per_segment[0], per_segment[1]
    if energy.size and float(energy.max()) > 0.0:
        loudest = float(energy.max())
        active = energy >= loudest * 10.0 ** (-30.0 / 10.0)
        ratio = sign_aligned * dot[active] / energy[active]
        levels = 20.0 * np.log10(np.maximum(np.abs(ratio), 1e-6))
        input_levels = 10.0 * np.log10(energy[active] / loudest)
        set_segment_levels(m, levels, input_levels)
    if level != 0.0 and aligned:
        m.snr_with_segment_levels_db, scaled_peak = _segment_level_correction(
            qa, per_segment, tail, sign_aligned, abs(level), segment, aligned)
        m.est_peak_after_segment_levels = math.ldexp(scaled_peak, aligned_sums.exponent or 0)
    m.snr_without_dc_db = qa.snr(qa.rr, 1.0, _gain(qa.re, qa.ee)) if aligned else -math.inf
    if small_count >= 16:
        qs = _Quadratic(small, small_count)
        # <ra - ra_dc, ea - ea_dc> over the small-signal samples, with the global aligned means
        cross = qs.re - qa.mean_e * qs.r - qa.mean_r * qs.e + small_count * qa.mean_r * qa.mean_e
        power = qs.rr - 2.0 * qa.mean_r * qs.r + small_count * qa.mean_r ** 2
        small_level = sign_aligned * cross / power if power > 0.0 else 0.0
        m.output_level_small_signal_db = 20.0 * math.log10(small_level) if small_level > 0.0 else -math.inf
    m.mel_pattern_correlation = _pattern_correlation(mel, mel_frames)
    aligned_est = _AlignedView(full_e, offset_e, aligned)
    if found.fraction != 0.0 and aligned > 2 * M.SINC_HALF_TAPS:
        m.snr_after_fractional_alignment_db = _fractional_alignment_snr(
            _AlignedView(full_r, offset_r, aligned), aligned_est, qa, -found.fraction, block)
    else:
        m.snr_after_fractional_alignment_db = m.what_if["all"]
    measure_lag_drift(m, full_r.read, full_e.read, full_r.length, full_e.length)
    _frame_locking_excerpt(m, _AlignedView(full_r, offset_r, aligned), aligned_est, qa, g_aligned, hop_samples,
                           sample_rate)
    m.snr_after_dc_removal_db = (math.inf if silent_pair else
                                 q.snr(q.centred_rr, 1.0, 1.0, q.mean_r - q.mean_e))

    if bound is not None and bound > 0:
        if bound == state["bound_for_ceiling"]:
            m.ref_beyond_bound_samples = side_r.beyond_bound
            if m.ref_beyond_bound_samples:
                m.bound_ceiling_db = M.energy_ratio_db(side_r.sums["square"], side_r.sums["clip_error"])

    if m.ref_silent:
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        m.notes.append("reference is silent: SNR and the what-if table are undefined (-inf)")
    bands = M.band_transfer_from_spectra(power_r / (scale_r ** 2 if scale_r > 0 and 1e-20 < scale_r < 1e20 else 1.0)
                                         / mel_frames,
                                         power_e / (scale_e ** 2 if scale_e > 0 and 1e-20 < scale_e < 1e20 else 1.0)
                                         / mel_frames,
                                         sample_rate, scale_ref=scale_r, scale_est=scale_e)
    m.ref_bandwidth_hz = bands["ref_bandwidth_hz"]
    m.est_bandwidth_hz = bands["est_bandwidth_hz"]
    m.lost_band_energy_fraction = bands["lost_energy_fraction"]
    return m


def _pearson(mel: dict[str, Any], cells: int) -> float:
    """metrics.array_correlation of the floored log-mels, from their sums."""
    if cells < 2 or mel["a_max"] == mel["a_min"] or mel["b_max"] == mel["b_min"]:
        return 0.0
    mean_a, mean_b = float(mel["sa"].sum()) / cells, float(mel["sb"].sum()) / cells
    var_a = float(mel["saa"].sum()) - cells * mean_a * mean_a
    var_b = float(mel["sbb"].sum()) - cells * mean_b * mean_b
    cov = float(mel["sab"].sum()) - cells * mean_a * mean_b
    if not (var_a > 0.0 and var_b > 0.0):
        return 0.0
    return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0))


def _pattern_correlation(mel: dict[str, Any], frames: int) -> float:
    """Correlation of the floored log-mels after removing each band's time average
    (`mel_pattern_correlation`), from the per-band sums."""
    if frames < 1 or frames * mel["sa"].size < 2:
        return 0.0
    mean_a, mean_b = mel["sa"] / frames, mel["sb"] / frames
    var_a = float((mel["saa"] - frames * mean_a * mean_a).sum())
    var_b = float((mel["sbb"] - frames * mean_b * mean_b).sum())
    cov = float((mel["sab"] - frames * mean_a * mean_b).sum())
    # a pattern that is constant over time leaves only rounding after the band means are removed
    if var_a <= 1e-12 * float(mel["saa"].sum()) or var_b <= 1e-12 * float(mel["sbb"].sum()):
        return 0.0
    return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0))


def _segment_level_correction(qa: _Quadratic, per_segment: list[np.ndarray], tail: dict[str, float], sign: float,
                              level: float, segment: int, aligned: int, active_range_db: float = 30.0,
                              ) -> tuple[float, float]:
    """`pair._segment_level_correction` from per-segment sums: each 0.25 s segment of the centred,
    sign-corrected output divided by its own level ratio (the global level where the segment is
    quiet or the ratio is not clearly positive, and after the last whole segment)."""
    rr, re, r, e, ee, e_min, e_max = per_segment
    mu, nu = qa.mean_r, qa.mean_e
    n = float(segment)
    seg_rr = rr - 2.0 * mu * r + n * mu * mu
    seg_re = sign * (re - nu * r - mu * e + n * mu * nu)
    seg_ee = ee - 2.0 * nu * e + n * nu * nu
    ratios = np.full(rr.size, level)
    if rr.size and float(seg_rr.max()) > 0.0:
        own = seg_re / np.maximum(seg_rr, 1e-300)
        usable = (seg_rr >= float(seg_rr.max()) * 10.0 ** (-active_range_db / 10.0)) & (own > 0.05)
        ratios = np.where(usable, own, level)
    if not np.all(ratios > 0.0):
        return -math.inf, 0.0
    tail_n = aligned - rr.size * segment
    tail_rr = max(qa.centred_rr - float(seg_rr.sum()), 0.0)
    tail_re = sign * qa.centred_re - float(seg_re.sum())
    tail_ee = max(qa.centred_ee - float(seg_ee.sum()), 0.0)
    terms = np.concatenate([seg_rr, 2.0 * np.abs(seg_re) / ratios, seg_ee / ratios ** 2])
    error = float((seg_rr - 2.0 * seg_re / ratios + seg_ee / ratios ** 2).sum())
    if tail_n > 0:
        error += tail_rr - 2.0 * tail_re / level + tail_ee / level ** 2
        terms = np.append(terms, [tail_rr, tail_ee / level ** 2])
    if error <= EXACT_FRACTION * float(np.max(np.abs(terms))):
        error = 0.0
    peak = float(np.max(np.maximum(e_max - nu, nu - e_min) / ratios)) if rr.size else 0.0
    if tail_n > 0:
        peak = max(peak, max(tail["max"] - nu, nu - tail["min"]) / level)
    return M.energy_ratio_db(qa.rr, error), peak


class _AlignedView:
    """Samples [offset, offset + length) of a flat view, indexed from 0."""

    def __init__(self, view: _FlatView, offset: int, length: int):
        self.view, self.offset, self.length = view, int(offset), int(length)

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, 0), min(stop, self.length)
        if stop <= start:
            return np.zeros(0)
        return self.view.read(self.offset + start, self.offset + stop)


def _fractional_alignment_snr(ref: _AlignedView, est: _AlignedView, qa: _Quadratic, delay: float, block: int) -> float:
    """SNR(ra, ra_dc + g * fractional_shift(ea_c, delay)) with g the optimal gain on the centred
    reference (pair.measure_pair's snr_after_fractional_alignment_db), the FIR applied per block
    with margins (the same taps as metrics.fractional_shift)."""
    from codecdoctor.measure.spectral import fir_valid

    half = M.SINC_HALF_TAPS
    taps = M._windowed_sinc(np.arange(-half, half + 1) - float(delay), half + 1)
    taps /= taps.sum()
    cross = shifted_energy = 0.0
    for a, b in _blocks(ref.length, block):
        lo, hi = max(a - half, 0), min(b + half, est.length)
        segment = np.zeros(b - a + 2 * half)
        segment[lo - (a - half):hi - (a - half)] = est.read(lo, hi) - qa.mean_e
        shifted = fir_valid(segment, taps)
        rc = ref.read(a, b) - qa.mean_r
        cross += float(dot(shifted, rc))
        shifted_energy += float(dot(shifted, shifted))
    g = cross / shifted_energy if shifted_energy > 0.0 else 0.0
    terms = (qa.centred_rr, 2.0 * abs(g * cross), g * g * shifted_energy)
    error = qa.centred_rr - 2.0 * g * cross + g * g * shifted_energy
    if error <= EXACT_FRACTION * max(terms):
        error = 0.0
    return M.energy_ratio_db(qa.rr, error)


def _frame_locking_excerpt(m: PairMeasurements, ref: _AlignedView, est: _AlignedView, qa: _Quadratic, gain: float,
                           hop_samples: int | None, sample_rate: int) -> None:
    """R317's measurements (pair._frame_locking) on the residual after every correction, over the
    whole aligned pair when it is at most FRAME_LOCKING_SECONDS long, else over that much of its middle."""
    from codecdoctor.measure.pair import SNR_EXACT_DB, _frame_locking

    if not m.what_if.get("all", -math.inf) < SNR_EXACT_DB:  # an exact copy's residual is float rounding
        return
    window = int(FRAME_LOCKING_SECONDS * sample_rate)
    start = 0 if ref.length <= window else (ref.length - window) // 2
    ra = ref.read(start, start + window)
    ea = est.read(start, start + window)
    if ra.size == 0:
        return
    # ra - (mean_r + gain (ea - mean_e)), the same operations in one buffer
    residual = np.subtract(ea, qa.mean_e)
    residual *= gain
    residual += qa.mean_r
    np.subtract(ra, residual, out=residual)
    unit = m.ref_peak or 1.0   # energies of 1e300-sized samples are summed at unit scale
    ref_energy = float(dot(ra, ra)) if unit == 1.0 else float(dot(ra / unit, ra / unit)) * unit * unit
    _frame_locking(m, residual, ref_energy, hop_samples, ra)


def _stft_block(stft: _Stft, r_ext: np.ndarray, e_ext: np.ndarray, first: int, count: int, stride: int,
                scale_r: float, scale_e: float, floor: float | None) -> dict[str, Any]:
    """Frames first .. first + count - 1 (those on the stride's grid) of both sides: the sums the
    mel distance, the mel correlations and the long-term spectra are made of. `floor` None: these
    are all of the pair's frames, and the floor is 3 decades below the reference's loudest bin here
    (what pass 1's _RefMelPeak finds on a longer pair)."""
    need = (count - 1) * stft.hop + stft.n_fft
    skip = (-first) % stride
    chosen = len(range(skip, count, stride))
    out: dict[str, Any] = {"frames": chosen}
    if chosen == 0:
        return out
    logs = []
    for x, scale, key in ((r_ext, scale_r, "power_r"), (e_ext, scale_e, "power_e")):
        if x.size < need:
            x = np.concatenate([x, np.zeros(need - x.size)])
        x32, log_scale = _as_float32(x, scale)
        starts = np.lib.stride_tricks.sliding_window_view(x32, stft.n_fft)[skip * stft.hop::stft.hop * stride][:chosen]
        power = np.zeros(stft.n_fft // 2 + 1)
        parts = []
        for f0 in range(0, chosen, STFT_BATCH_FRAMES):
            mag = stft.spectrum_magnitudes(starts[f0:f0 + STFT_BATCH_FRAMES])
            # float32 sums of at most STFT_BATCH_FRAMES squares (about 1e-6 relative, 4e-6 dB in
            # the band transfer), added up in float64: 5x faster than summing in float64
            power += np.einsum("ij,ij->j", mag, mag)
            parts.append(stft.log_mel(mag, log_scale))
        out[key] = power
        logs.append(np.concatenate(parts))
    a, b = logs
    out["abs"] = float(np.abs(a - b).sum())
    if floor is None:
        floor = float(a.max()) - 3.0    # the log-mels are floored at stft.log_floor already
    a, b = np.maximum(a, floor), np.maximum(b, floor)
    out.update(sa=a.sum(axis=0), sb=b.sum(axis=0), saa=np.einsum("ij,ij->j", a, a),
               sbb=np.einsum("ij,ij->j", b, b), sab=np.einsum("ij,ij->j", a, b),
               a_min=float(a.min()), a_max=float(a.max()), b_min=float(b.min()), b_max=float(b.max()))
    return out


def _add_stft_sums(mel: dict[str, Any], power_r: np.ndarray, power_e: np.ndarray, part: dict[str, Any]) -> None:
    mel["frames"] += part["frames"]
    if not part["frames"]:
        return
    power_r += part["power_r"]
    power_e += part["power_e"]
    for key in ("abs", "sa", "sb", "saa", "sbb", "sab"):
        mel[key] = mel[key] + part[key]
    for key in ("a_min", "b_min"):
        mel[key] = min(mel[key], part[key])
    for key in ("a_max", "b_max"):
        mel[key] = max(mel[key], part[key])
