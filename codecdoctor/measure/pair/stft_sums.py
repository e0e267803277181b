"""The unaligned pair's STFT, block by block: log-mel spectrograms (mel distance, correlations) and
long-term power spectra (band transfer)."""
from __future__ import annotations

import math

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.pair.sums import scale_exponent
from codecdoctor.measure.spectral import mel_fft_size, mel_filterbank, window_array

# A pair longer than this (seconds) has its log-mel spectrograms and long-term spectra taken from
# at most MEL_FRAMES_LONG evenly strided STFT frames, so their cost stops growing with length. The
# mel distance is a mean of per-frame distances: over 40 000 frames spread across the file its
# sampling error is about the third decimal.
LONG_PAIR_SECONDS = 600.0
MEL_FRAMES_LONG = 40_000
# Frames of the STFT transformed per call: bounds the float32 temporaries of a block's STFT.
STFT_BATCH_FRAMES = 128
_DECADES_PER_NEPER = 1.0 / math.log(10.0)
_LOG10_2 = math.log10(2.0)


class Stft:
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
        # each bin feeds at most two (triangular) mels: the product with the bank is taken over
        # octave-wide bands of bins, each against only the mels it feeds (5% of a 10 s pair's time)
        bins, fed = self.bank.shape[0], self.bank != 0
        self.bank_spans = []
        for lo, hi in zip((0, bins // 8, bins // 4, bins // 2), (bins // 8, bins // 4, bins // 2, bins)):
            mels = np.flatnonzero(fed[lo:hi].any(axis=0))
            if hi > lo and mels.size:
                first, last = int(mels[0]), int(mels[-1]) + 1
                self.bank_spans.append((lo, hi, first, last, np.ascontiguousarray(self.bank[lo:hi, first:last])))

    def frames_for(self, n: int) -> int:
        return max(1, 1 + math.ceil(max(n - self.n_fft, 0) / self.hop))

    def block_frames(self, x: np.ndarray, start: int, size: int, total: int) -> tuple[np.ndarray, int, int]:
        """The frames (of `total`) that start in [start, start + size): x (from `start`, a multiple of
        the hop) cut or zero-padded to their samples, the first frame and their count."""
        first = start // self.hop
        count = max(0, min(-(-(start + size) // self.hop), total) - first)
        need = (count - 1) * self.hop + self.n_fft if count else 0
        x = x[:need]
        return (np.concatenate([x, np.zeros(need - x.size)]) if x.size < need else x), first, count

    def spectrum_magnitudes(self, frames: np.ndarray) -> np.ndarray:
        from scipy.fft import rfft

        return np.abs(rfft(frames * self.window, axis=-1))

    def log_mel(self, magnitude: np.ndarray, log_scale: float) -> np.ndarray:
        """log10 of the mel-filtered magnitudes plus `log_scale`, floored, in float32."""
        mel = np.zeros((magnitude.shape[0], self.n_mels), dtype=np.float32)
        for lo, hi, first, last, part in self.bank_spans:
            mel[:, first:last] += magnitude[:, lo:hi] @ part
        # natural log (numpy vectorises it in float32, not log10), as decades; a silent bin is
        # -inf, so it meets the floor whatever log_scale adds back
        with np.errstate(divide="ignore"):
            logs = np.log(mel, out=mel)
        # kept in float32 (MelSpectra stores them so): one buffer, no float64 copy per batch
        logs = np.multiply(logs, np.float32(_DECADES_PER_NEPER), out=logs)
        if log_scale:
            logs += np.float32(log_scale)
        return np.maximum(logs, np.float32(self.log_floor), out=logs)


def as_float32(x: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 copy for the STFT and the power of two it was divided by: 0 unless float32 would
    overflow or lose the signal (a peak beyond 2^+-64); a log-mel adds k log10(2) back, which is
    exact in the log domain (metrics divides by the peak)."""
    k = scale_exponent(x, limit=64)
    return (np.ldexp(x, -k) if k else x).astype(np.float32), k


class MelSpectra:
    """The unaligned pair's STFT accumulator: each side's log-mels of the frames on the stride grid,
    kept in float32 (at most MEL_FRAMES_LONG frames and a block's: 21 MB whatever the length), and
    each side's power spectrum per block with the power of two it is in. `result` floors the
    log-mels 3 decades below the reference's loudest bin, as the mel correlations do, once every
    frame is known."""

    def __init__(self, stft: Stft, compared: int, stride: int):
        self.stft, self.stride, self.total = stft, stride, stft.frames_for(compared)
        self.logs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.power: tuple[list[tuple[np.ndarray, int]], list[tuple[np.ndarray, int]]] = ([], [])

    def update(self, start: int, size: int, r_ext: np.ndarray, e_ext: np.ndarray) -> None:
        """The frames that start in [start, start + size) (Stft.block_frames: the sides from `start` on)."""
        stft = self.stft
        x_r, first, count = stft.block_frames(r_ext, start, size, self.total)
        skip = (-first) % self.stride
        frames = len(range(skip, count, self.stride))
        if frames == 0:
            return
        for x, logs, power in zip((x_r, stft.block_frames(e_ext, start, size, self.total)[0]), self.logs, self.power):
            x32, k = as_float32(x)
            starts = np.lib.stride_tricks.sliding_window_view(x32, stft.n_fft)[skip * stft.hop::stft.hop * self.stride]
            block_power = np.zeros(stft.n_fft // 2 + 1)
            for f0 in range(0, frames, STFT_BATCH_FRAMES):
                mag = stft.spectrum_magnitudes(starts[f0:min(f0 + STFT_BATCH_FRAMES, frames)])
                # float32 sums of at most STFT_BATCH_FRAMES squares, added up in float64
                block_power += np.einsum("ij,ij->j", mag, mag)
                logs.append(stft.log_mel(mag, k * _LOG10_2))
            power.append((block_power, k))

    def result(self, sample_rate: int) -> tuple[float, float, float, dict[str, float]]:
        """(mel distance, mel correlation, mel pattern correlation, band transfer): metrics.mel_distance;
        array_correlation of the floored log-mels, and of those less each band's time average, from
        per-band sums over the kept frames; band_transfer_from_spectra, which is ratio-based, so each
        side's spectrum stays in its own power of two."""
        floor = max(float(a.max()) for a in self.logs[0]) - 3.0
        frames, abs_sum = 0, 0.0
        sums = np.zeros((5, self.stft.n_mels))   # per band: sum a, sum b, sum a^2, sum b^2, sum ab
        ranges = np.array([[math.inf, -math.inf]] * 2)   # each side's floored range
        for a, b in zip(*self.logs):
            frames += a.shape[0]
            abs_sum += float(np.abs(a - b).sum(dtype=np.float64))
            a, b = np.maximum(a, floor).astype(np.float64), np.maximum(b, floor).astype(np.float64)
            sums += [a.sum(axis=0), b.sum(axis=0), np.einsum("ij,ij->j", a, a), np.einsum("ij,ij->j", b, b),
                     np.einsum("ij,ij->j", a, b)]
            ranges = np.array([[min(lo, x.min()), max(hi, x.max())] for (lo, hi), x in zip(ranges, (a, b))])
        spectra = []
        for blocks in self.power:
            top = max(k for _, k in blocks)
            spectra.append(sum(np.ldexp(p, 2 * (k - top)) for p, k in blocks))
        constant = bool(np.any(ranges[:, 0] == ranges[:, 1]))
        correlation = 0.0 if constant else _correlation(frames * self.stft.n_mels, *sums.sum(axis=1))
        return (abs_sum / (frames * self.stft.n_mels), correlation, _pattern_correlation(frames, sums),
                M.band_transfer_from_spectra(*spectra, sample_rate))


def _centred(n: int, sa, sb, saa, sbb, sab) -> tuple:
    """The centred sums of squares and products of n values from their raw sums (floats or per-band arrays)."""
    mean_a, mean_b = sa / n, sb / n
    return saa - n * mean_a * mean_a, sbb - n * mean_b * mean_b, sab - n * mean_a * mean_b


def _correlation(cells: int, sa: float, sb: float, saa: float, sbb: float, sab: float) -> float:
    """metrics.array_correlation of two arrays of `cells` values, from their sums."""
    if cells < 2:
        return 0.0
    var_a, var_b, cov = _centred(cells, sa, sb, saa, sbb, sab)
    return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0)) if var_a > 0.0 and var_b > 0.0 else 0.0


def _pattern_correlation(frames: int, sums: np.ndarray) -> float:
    """The correlation of the floored log-mels less each band's time average, from the per-band sums."""
    if frames < 1 or frames * sums.shape[1] < 2:
        return 0.0
    var_a, var_b, cov = (float(v.sum()) for v in _centred(frames, *sums))
    # a pattern that is constant over time leaves only rounding after the band means are removed
    if var_a <= 1e-12 * float(sums[2].sum()) or var_b <= 1e-12 * float(sums[3].sum()):
        return 0.0
    return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0))
