"""STFT sums: log-mel spectrograms (mel distance, correlations) and long-term spectra, block by block."""
from __future__ import annotations

import math
from dataclasses import dataclass

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
        # octave-wide bands of bins, each against only the mels it feeds (4% of a 10 s pair's CPU)
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
        mel = np.zeros((magnitude.shape[0], self.n_mels), dtype=np.float32)
        for lo, hi, first, last, part in self.bank_spans:
            mel[:, first:last] += magnitude[:, lo:hi] @ part
        # natural log (numpy vectorises it in float32, not log10), as decades; a silent bin is
        # -inf, so it meets the floor whatever log_scale adds back
        with np.errstate(divide="ignore"):
            logs = np.log(mel, out=mel)
        out = np.multiply(logs, _DECADES_PER_NEPER, dtype=np.float64)
        if log_scale:
            out += log_scale
        return np.maximum(out, self.log_floor, out=out)


def as_float32(x: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """float32 copy for the STFT and the log10 to add back; scaled only where float32 would
    overflow or lose the signal (metrics divides by the peak: equal in the log domain)."""
    if scale == 0.0 or 1e-20 < scale < 1e20:
        return x.astype(np.float32), 0.0
    return (x / scale).astype(np.float32), math.log10(scale)


class RefMelPeak:
    """The loudest bin of the reference's log-mel spectrogram, without transforming every frame.

    A mel bin is sum_f |X_f| w_kf <= ||X||_2 ||w_k||_2 (Cauchy-Schwarz) and ||X||^2 <= n_fft * sum
    (window * x)^2 (Parseval over the half spectrum), so the frame's windowed energy bounds all of
    its bins. Frames are transformed loudest bound first and only while the bound can beat the
    loudest bin found so far: after the first block that is a handful of frames per block."""

    def __init__(self, stft: Stft, total_frames: int):
        self.stft, self.total_frames = stft, total_frames
        hop, n_fft = stft.hop, stft.n_fft
        self.window_sq = (window_array("hann", n_fft) ** 2).reshape(n_fft // hop, hop) if n_fft % hop == 0 else None
        self.bank_norm = float(np.sqrt((stft.bank.astype(np.float64) ** 2).sum(axis=0)).max())
        self.peak = 0.0

    def update(self, x: np.ndarray, first_frame: int, n_frames: int) -> None:
        """`x` holds the samples of frames first_frame .. first_frame + n_frames - 1 (block_frames)."""
        if n_frames <= 0:
            return
        stft = self.stft
        hop, n_fft = stft.hop, stft.n_fft
        parts = n_fft // hop
        if self.window_sq is not None:
            head = x[: (n_frames - 1 + parts) * hop]
            energy, k = self._frame_energies(head, n_frames, parts), 0
            if not np.isfinite(energy).all():   # squares of 1e200 overflow: again divided by 2^k
                k = scale_exponent(head)
                energy = self._frame_energies(np.ldexp(head, -k), n_frames, parts)
        else:  # hop does not divide n_fft: every frame is a candidate
            energy, k = np.full(n_frames, np.inf), 0
        bound = np.ldexp(np.sqrt(n_fft * np.maximum(energy, 0.0)) * self.bank_norm * 1.01, k)
        order = np.argsort(-bound)
        order = order[bound[order] > self.peak]
        if not order.size:   # after the first blocks, the usual case: nothing here can beat the peak
            return
        scale = float(np.max(np.abs(x))) if x.size else 0.0
        log_scale = as_float32(x[:0], scale)[1]
        factor = 10.0 ** log_scale
        batch = 64
        while order.size:
            chosen = np.sort(order[:batch])
            # only the chosen frames are converted to float32 (scaled as as_float32 scales the block)
            mel = stft.spectrum_magnitudes(as_float32(np.stack([x[t * hop:t * hop + n_fft] for t in chosen]),
                                                      scale)[0]) @ stft.bank
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
class MelSums:
    """The sums the mel distance, the mel correlations and the long-term spectra are made of, over
    STFT frames: per mel band, the sums of the floored log-mels (a: reference, b: estimate), their
    squares and product; |a - b| before the floor; each side's range and power spectrum. A block's
    sums come from `stft_block_sums`, `combine` adds them up in order, the properties read them."""

    n_mels: int
    n_bins: int
    frames: int = 0
    abs_sum: float = 0.0
    a_min: float = math.inf
    a_max: float = -math.inf
    b_min: float = math.inf
    b_max: float = -math.inf

    def __post_init__(self) -> None:
        self.sa, self.sb, self.saa, self.sbb, self.sab = (np.zeros(self.n_mels) for _ in range(5))
        self.power_r, self.power_e = np.zeros(self.n_bins), np.zeros(self.n_bins)

    def combine(self, other: "MelSums") -> None:
        self.frames += other.frames
        if not other.frames:
            return
        for name in ("power_r", "power_e", "abs_sum", "sa", "sb", "saa", "sbb", "sab"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.a_min, self.b_min = min(self.a_min, other.a_min), min(self.b_min, other.b_min)
        self.a_max, self.b_max = max(self.a_max, other.a_max), max(self.b_max, other.b_max)

    def distance(self) -> float:
        """The mel distance: mean |a - b| over every cell (frame x band)."""
        return self.abs_sum / (self.frames * self.n_mels)

    def correlation(self) -> float:
        """metrics.array_correlation of the floored log-mels, from their sums."""
        cells = self.frames * self.n_mels
        if cells < 2 or self.a_max == self.a_min or self.b_max == self.b_min:
            return 0.0
        var_a, var_b, cov = _centred(cells, *(float(v.sum()) for v in (self.sa, self.sb, self.saa, self.sbb, self.sab)))
        return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0)) if var_a > 0.0 and var_b > 0.0 else 0.0

    def pattern_correlation(self) -> float:
        """Correlation of the floored log-mels after removing each band's time average
        (`mel_pattern_correlation`), from the per-band sums."""
        if self.frames < 1 or self.frames * self.sa.size < 2:
            return 0.0
        var_a, var_b, cov = (float(v.sum()) for v in _centred(self.frames, self.sa, self.sb, self.saa, self.sbb, self.sab))
        # a pattern that is constant over time leaves only rounding after the band means are removed
        if var_a <= 1e-12 * float(self.saa.sum()) or var_b <= 1e-12 * float(self.sbb.sum()):
            return 0.0
        return float(np.clip(cov / math.sqrt(var_a * var_b), -1.0, 1.0))

    def band_transfer(self, sample_rate: int, scale_r: float, scale_e: float) -> dict[str, float]:
        """metrics.band_transfer_from_spectra of the mean power spectra; `scale_r`, `scale_e`: the
        peaks the blocks were divided by when float32 could not hold them (as_float32)."""
        def unscaled(power: np.ndarray, scale: float) -> np.ndarray:
            return power / (scale ** 2 if scale > 0 and 1e-20 < scale < 1e20 else 1.0) / self.frames

        return M.band_transfer_from_spectra(unscaled(self.power_r, scale_r), unscaled(self.power_e, scale_e),
                                            sample_rate, scale_ref=scale_r, scale_est=scale_e)


def _centred(n: int, sa, sb, saa, sbb, sab) -> tuple:
    """The centred sums of squares and products of n values from their raw sums (floats or per-band arrays)."""
    mean_a, mean_b = sa / n, sb / n
    return saa - n * mean_a * mean_a, sbb - n * mean_b * mean_b, sab - n * mean_a * mean_b


def stft_block_sums(stft: Stft, r_ext: np.ndarray, e_ext: np.ndarray, first: int, count: int, stride: int,
                    scale_r: float, scale_e: float, floor: float | None) -> MelSums:
    """Frames first .. first + count - 1 (those on the stride's grid) of both sides (block_frames),
    as MelSums.
    `floor` None: these are all of the pair's frames, and the floor is 3 decades below the
    reference's loudest bin here (what pass 1's RefMelPeak finds on a longer pair)."""
    skip = (-first) % stride
    out = MelSums(stft.n_mels, stft.n_fft // 2 + 1, frames=len(range(skip, count, stride)))
    if out.frames == 0:
        return out
    logs = []
    for x, scale, power in ((r_ext, scale_r, out.power_r), (e_ext, scale_e, out.power_e)):
        x32, log_scale = as_float32(x, scale)
        starts = np.lib.stride_tricks.sliding_window_view(x32, stft.n_fft)[skip * stft.hop::stft.hop * stride]
        parts = []
        for f0 in range(0, out.frames, STFT_BATCH_FRAMES):
            mag = stft.spectrum_magnitudes(starts[f0:min(f0 + STFT_BATCH_FRAMES, out.frames)])
            # float32 sums of at most STFT_BATCH_FRAMES squares, added up in float64
            power += np.einsum("ij,ij->j", mag, mag)
            parts.append(stft.log_mel(mag, log_scale))
        logs.append(np.concatenate(parts))
    a, b = logs
    out.abs_sum = float(np.abs(a - b).sum())
    if floor is None:
        floor = float(a.max()) - 3.0    # the log-mels are floored at stft.log_floor already
    a, b = np.maximum(a, floor), np.maximum(b, floor)
    out.sa, out.sb = a.sum(axis=0), b.sum(axis=0)
    out.saa, out.sbb, out.sab = np.einsum("ij,ij->j", a, a), np.einsum("ij,ij->j", b, b), np.einsum("ij,ij->j", a, b)
    out.a_min, out.a_max, out.b_min, out.b_max = float(a.min()), float(a.max()), float(b.min()), float(b.max())
    return out
