"""The lag search: normalised cross-correlation of the means-removed pair over +-max lag."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair.measurements import LAG_BLOCKS
from codecdoctor.measure.pair.sources import FlatView, RolledView

# The float32 lag search's values are within about 1e-6 of float64's (FFT rounding, relative to the
# norms: a normalised correlation of 1); every lag within this margin of its peak is recomputed in
# float64, up to EXACT_LAGS of them (a dot product each), else the whole search is redone in float64.
FLOAT32_LAG_MARGIN = 1e-4
EXACT_LAGS = 32


def lag_search_is_one_fft(ref_samples: int, max_lag: int) -> bool:
    """Whether metrics.cross_correlation's blocks for this lag window all fit its block budget, so
    the sum of the block correlations is one whole-signal correlation (the Correlator computes it as a
    single FFT)."""
    block = max(4 * max_lag, 1 << 14)
    return -(-int(ref_samples) // block) <= LAG_BLOCKS


def lag_frame_size(samples: int) -> int:
    """The length of the single-FFT lag search's zero-padded frame for `samples` (at least)."""
    from scipy.fft import next_fast_len

    return next_fast_len(int(samples), real=True)


def chance_in_frame(frame: np.ndarray, n: int, window: int, norm: float) -> float:
    """The chance level from `frame`, the circular correlation of the means-removed pair zero-padded
    to frame.size samples (frame[j] = sum_t r[t] e[(t + j) mod size]): the estimate rotated by s
    within that zero-padded frame correlates with the reference at lag k as frame[(k - s) mod size],
    so both rotations come without another transform. `norm` is sqrt(E_ref E_est)."""
    if n < 16 or window < 1 or not norm > 0.0 or not math.isfinite(norm):
        return 0.0
    k = np.arange(-window, window + 1)
    best = max(float(np.max(np.abs(frame[(k - shift) % frame.size]))) for shift in (n // 3, 2 * n // 3))
    return min(best / norm, 1.0)


def unit_rms_exponent(energy: Any, count: int) -> Any:
    """The exponent of the power of two nearest the RMS of `count` values whose sum of squares is
    `energy` (a float or an array of them); 0 for a zero, infinite or NaN energy. Dividing by it
    puts a signal near unit RMS for a float32 FFT, where nothing then overflows or turns subnormal."""
    return np.frexp(np.sqrt(np.asarray(energy, dtype=np.float64) / max(int(count), 1)))[1]


def correlation_exponent(peak: float) -> int:
    """The power of two a side of the lag search is divided by: 0 for any peak within 2^+-200 (a
    sum of 2^21 squares then stays within 2^+-421, and a product of two such sums is a float64),
    else the peak's own exponent (the normalised correlation is the same)."""
    exponent = math.frexp(peak)[1] if 0.0 < peak < math.inf else 0
    return exponent if abs(exponent) > 200 else 0


def centred_block(view: Any, start: int, stop: int, mean: float, exponent: int) -> np.ndarray:
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
    may be overwritten.

    What it buys, measured on compare's 10 s pairs (CPU per pair, medians of interleaved rounds):
    plain rfft at the same length costs 9% more per pair; plain rfft at the nearest length whose
    odd part is at most 63 (a longer frame) 5% more. Both are at or above the 5% a trick must be
    worth to stay, so it stays."""
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
class LagPeak:
    lag: int
    correlation: float
    fraction: float = 0.0


class Correlator:
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

    def __init__(self, ref_view: FlatView, mean_r: float, mean_e: float, peaks: tuple[float, float] = (1.0, 1.0)):
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

    def correlate(self, est_view: Any, max_lag: int, precise: bool = False,
                  clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Lags and normalised correlation; `precise` makes a single FFT float64 (estimate_lag's
        fallback when too many lags are within float32's rounding of the peak). `clip=False` keeps
        values slightly above 1 (an estimate longer than the reference has less energy in its
        first part than at the peak's lag), as metrics.cross_correlation's clip=False: a peak
        among neighbours that would all clip to 1.0 is found where it is."""
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
        return lags, (np.clip(raw / denominator, -1.0, 1.0) if clip else raw / denominator)

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
            key = (start, block)
            if key not in self._block_spectra:  # the chance level reuses the lag's reference blocks
                seg_r = centred_block(self.ref_view, start, start + block, self.mean_r, self.ref_exponent)
                size = next_fast_len(seg_r.size + 2 * max_lag + seg_r.size)
                self._block_spectra[key] = (seg_r.size, size, np.conj(rfft(seg_r, size)), float(dot(seg_r, seg_r)))
            length, size, ref_spectrum, energy = self._block_spectra[key]
            lo, hi = start - max_lag, start + length + max_lag
            seg_e = np.zeros(hi - lo)
            src_lo, src_hi = max(lo, 0), min(hi, est_view.length)
            if src_hi > src_lo:
                values = centred_block(est_view, src_lo, src_hi, self.mean_e, self.est_exponent)
                seg_e[src_lo - lo:src_lo - lo + values.size] = values
            ref_energy += energy
            part = seg_e[start - lo:start - lo + length][: max(0, min(length, est_view.length - start))]
            est_energy += float(dot(part, part))
            out += irfft(rfft(seg_e, size) * ref_spectrum, size)[: 2 * max_lag + 1]
        return out, ref_energy, est_energy


def estimate_lag(correlator: Correlator, est_view: FlatView, max_lag_samples: int) -> LagPeak:
    """metrics.lag_and_peak plus the fractional part: the lag with the largest |normalised
    correlation| (unclipped, ties to the smallest |lag|), the signed correlation there (clipped to
    [-1, 1]) and the fraction of a sample where the interpolated peak lies (0 below 0.02 samples)."""
    longest = max(correlator.ref_view.length, est_view.length)
    max_lag = max(min(int(max_lag_samples), longest - 1), 0) if longest else 0
    lags, c = correlator.correlate(est_view, max_lag, clip=False)
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
            lags, c = correlator.correlate(est_view, max_lag, precise=True, clip=False)
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
    """The chance level of the peak correlation: the largest |correlation| with the estimate rotated by a third and
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
        _, c = correlator.correlate(RolledView(est_view, shift), window)
        chance = max(chance, float(np.max(np.abs(c))) if c.size else 0.0)
    return chance
