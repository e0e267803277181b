"""The lag search: normalised cross-correlation of the means-removed pair over +-max lag."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair.measurements import LAG_BLOCKS
from codecdoctor.measure.pair.sources import FlatView, WindowView
from codecdoctor.measure.pair.sums import scale_exponent

# The float32 lag search is within about 1e-6 of float64's: every lag within this margin of its
# peak is recomputed in float64 (up to EXACT_LAGS of them), else the search is redone in float64.
FLOAT32_LAG_MARGIN = 1e-4
EXACT_LAGS = 32


def lag_search_is_one_fft(ref_samples: int, max_lag: int) -> bool:
    """Whether metrics.cross_correlation's blocks all fit its budget: their sum is then one
    whole-signal correlation, a single FFT."""
    block = max(4 * max_lag, 1 << 14)
    return -(-int(ref_samples) // block) <= LAG_BLOCKS


def lag_frame_size(samples: int) -> int:
    """The single-FFT lag search's zero-padded frame for `samples` (at least): a fast length whose
    odd part is at most 255, as pocketfft's real transform is slow on a large odd factor (5^5 in
    the 168,750 points of a 10 s pair: twice the time of 168,960 = 2^10 x 165)."""
    from scipy.fft import next_fast_len

    size = next_fast_len(int(samples))
    while size // (size & -size) > 255:
        size = next_fast_len(size + 1)
    return size


def chance_in_frame(frame: np.ndarray, n: int, window: int, norm: float) -> float:
    """The chance level from `frame`, the circular correlation of the zero-padded means-removed pair
    (frame[j] = sum_t r[t] e[(t + j) mod size]): the estimate rotated by s correlates at lag k as
    frame[(k - s) mod size], so no other transform is needed. `norm` is sqrt(E_ref E_est)."""
    if n < 16 or window < 1 or not norm > 0.0 or not math.isfinite(norm):
        return 0.0
    k = np.arange(-window, window + 1)
    best = max(float(np.max(np.abs(frame[(k - shift) % frame.size]))) for shift in (n // 3, 2 * n // 3))
    return min(best / norm, 1.0)


def centred_block(view: Any, start: int, stop: int, mean: float, exponent: int) -> np.ndarray:
    """view's samples start .. stop, the mean removed, divided by 2^exponent."""
    x = view.read(start, stop) - mean
    return np.ldexp(x, -exponent, out=x) if exponent else x


def _unit_rms_spectrum(x: np.ndarray, energy: float, size: int) -> tuple[np.ndarray, int]:
    """The float32 spectrum of x zero-padded to `size`, x divided by the power of two nearest its
    RMS first (nothing overflows or turns subnormal, whatever the level), and that exponent (0 for
    a zero or non-finite energy: `energy` is x's sum of squares)."""
    from scipy.fft import rfft

    exponent = int(np.frexp(math.sqrt(energy / max(x.size, 1)))[1])
    padded = np.zeros(size, np.float32)
    np.multiply(x[:size], math.ldexp(1.0, -exponent), out=padded[:min(x.size, size)], casting="same_kind")
    return rfft(padded, overwrite_x=True), exponent


@dataclass
class LagPeak:
    lag: int
    correlation: float
    fraction: float = 0.0


class Correlator:
    """`metrics.cross_correlation` (means removed, normalised, +-max_lag) between the reference and
    estimate views. Up to LAG_BLOCKS blocks it is one FFT of the whole signals, the reference's
    spectrum kept for the next estimate; beyond, the same evenly spaced blocks, read by seeking.

    The single FFT runs in float32 (half the time of float64: a 10 s pair is measured in 3/4 of the
    time a float64 search takes), each side scaled to unit RMS by a
    power of two; `exact_at` recomputes chosen lags as float64 dot products, which is how
    estimate_lag gets the float64 search's peak, ties and value."""

    def __init__(self, ref_view: FlatView, mean_r: float, mean_e: float, peaks: tuple[float, float] = (1.0, 1.0)):
        self.ref_view, self.mean_r, self.mean_e = ref_view, mean_r, mean_e
        # 0 unless E_ref E_est would overflow or underflow (a sum of squares within 2^+-421 each)
        self.ref_exponent, self.est_exponent = (scale_exponent(peak=peak, limit=200) for peak in peaks)
        # (FFT size, conjugate float32 spectrum, E_ref, means-removed reference, its scale exponent)
        self._spectrum: tuple[int, np.ndarray, float, np.ndarray, int] | None = None
        # the last single FFT's (estimate view, circular frame, its norm in the frame's units) and
        # (estimate view, means-removed reference and estimate, sqrt(E_ref E_est))
        self.frame: tuple[Any, np.ndarray, float] | None = None
        self._signals: tuple[Any, np.ndarray, np.ndarray, float] | None = None

    def correlate(self, est_view: Any, max_lag: int, precise: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Lags and normalised correlation; `precise`: a float64 single FFT. Values slightly above 1
        are kept (metrics.cross_correlation's clip=False), so a peak among neighbours that would all
        clip to 1.0 is found where it is."""
        max_lag = max(0, int(max_lag))
        lags = np.arange(-max_lag, max_lag + 1)
        if self.ref_view.length == 0 or est_view.length == 0:
            return lags, np.zeros(lags.size)
        if lag_search_is_one_fft(self.ref_view.length, max_lag):
            raw, ref_energy, est_energy = self._full(est_view, max_lag, precise)
        else:
            raw, ref_energy, est_energy = self._block_sums(est_view, max_lag, max(4 * max_lag, 1 << 14))
        denominator = math.sqrt(ref_energy * est_energy)
        if not denominator > 0.0 or not math.isfinite(denominator):
            return lags, np.zeros(lags.size)
        return lags, raw / denominator

    def searched_in_float32(self, est_view: Any) -> bool:
        """Whether the last `correlate` of this view was the single float32 FFT (see exact_at)."""
        return self._signals is not None and self._signals[0] is est_view

    def exact_at(self, lags: np.ndarray) -> np.ndarray:
        """The normalised correlation at `lags` in float64, for the last single-FFT `correlate`."""
        _, r, e, denominator = self._signals
        values = np.zeros(len(lags))
        for i, k in enumerate(int(v) for v in lags):
            lo, hi = max(0, -k), min(r.size, e.size - k)
            if hi > lo:
                values[i] = float(dot(r[lo:hi], e[lo + k:hi + k]))
        return values / denominator

    def _full(self, est_view: Any, max_lag: int, precise: bool) -> tuple[np.ndarray, float, float]:
        from scipy.fft import irfft, rfft

        lr = self.ref_view.length
        le = min(est_view.length, lr + max_lag)
        size = lag_frame_size(max(lr, le) + max_lag + 1)
        if self._spectrum is None or self._spectrum[0] != size:
            r = centred_block(self.ref_view, 0, lr, self.mean_r, self.ref_exponent)
            ref_energy = float(dot(r, r))
            ref_spectrum, ref_exponent = _unit_rms_spectrum(r, ref_energy, size)
            self._spectrum = (size, np.conjugate(ref_spectrum, out=ref_spectrum), ref_energy, r, ref_exponent)
        _, ref_spectrum, ref_energy, r, ref_exponent = self._spectrum
        e = centred_block(est_view, 0, le, self.mean_e, self.est_exponent)
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

    def _block_sums(self, est_view: Any, max_lag: int, block: int) -> tuple[np.ndarray, float, float]:
        from scipy.fft import irfft, next_fast_len, rfft

        starts = np.arange(0, self.ref_view.length, block)
        if starts.size > LAG_BLOCKS:
            starts = starts[np.linspace(0, starts.size - 1, LAG_BLOCKS).round().astype(int)]
        out = np.zeros(2 * max_lag + 1)
        ref_energy = est_energy = 0.0
        for start in (int(v) for v in starts):
            seg_r = centred_block(self.ref_view, start, start + block, self.mean_r, self.ref_exponent)
            length = seg_r.size
            size = next_fast_len(2 * length + 2 * max_lag)
            lo, hi = start - max_lag, start + length + max_lag
            seg_e = np.zeros(hi - lo)
            src_lo, src_hi = max(lo, 0), min(hi, est_view.length)
            if src_hi > src_lo:
                values = centred_block(est_view, src_lo, src_hi, self.mean_e, self.est_exponent)
                seg_e[src_lo - lo:src_lo - lo + values.size] = values
            ref_energy += float(dot(seg_r, seg_r))
            part = seg_e[start - lo:start - lo + length][: max(0, min(length, est_view.length - start))]
            est_energy += float(dot(part, part))
            out += irfft(rfft(seg_e, size) * np.conj(rfft(seg_r, size)), size)[: 2 * max_lag + 1]
        return out, ref_energy, est_energy


def estimate_lag(correlator: Correlator, est_view: FlatView, max_lag_samples: int) -> LagPeak:
    """metrics.lag_and_peak plus the fractional part: the lag with the largest |normalised
    correlation| (unclipped, ties to the smallest |lag|), the signed correlation there (clipped to
    [-1, 1]) and the fraction of a sample where the interpolated peak lies (0 below 0.02 samples)."""
    longest = max(correlator.ref_view.length, est_view.length)
    max_lag = max(min(int(max_lag_samples), longest - 1), 0) if longest else 0
    lags, c = correlator.correlate(est_view, max_lag)
    c = np.nan_to_num(c, nan=0.0)
    magnitude = np.abs(c)
    best = float(magnitude.max()) if magnitude.size else 0.0
    if best == 0.0:
        return LagPeak(0, 0.0)
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
        return LagPeak(0, 0.0)
    candidates = np.flatnonzero(magnitude >= best * (1.0 - 1e-9))
    index = int(candidates[np.argmin(np.abs(lags[candidates]))])
    fraction = M.fractional_lag(lags, c, index)
    return LagPeak(int(lags[index]), float(np.clip(c[index], -1.0, 1.0)), fraction if abs(fraction) >= 0.02 else 0.0)


def correlation_chance(correlator: Correlator, est_view: FlatView, max_lag_samples: int) -> float:
    """The chance level of the peak correlation: the largest |correlation| with the estimate rotated
    by a third and two thirds of its length, over +-min(max_lag, length / 4); from the lag search's
    own frame when that was one FFT, else correlated again block by block. After estimate_lag."""
    n = est_view.length
    window = min(int(max_lag_samples), n // 4)
    if n < 16 or window < 1:
        return 0.0
    if correlator.frame is not None and correlator.frame[0] is est_view:
        _, frame, norm = correlator.frame
        return chance_in_frame(frame, n, window, norm)
    chance = 0.0
    for shift in (n // 3, 2 * n // 3):
        _, c = correlator.correlate(WindowView(est_view, -shift, n), window)
        chance = max(chance, float(np.max(np.abs(c))))
    return min(chance, 1.0)
