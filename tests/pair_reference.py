"""The whole-file pair measurement the streaming engine (codecdoctor.measure.pair) is checked against.

Each number is computed directly on the whole signals in float64, with its own pass and the
textbook formula (metrics.snr_db, metrics.spectral_summary, metrics.cross_correlation, ...): no
block carries, no expanded quadratic forms, no float32. tests/test_compare_stream.py holds the
engine's `measure_pair` and `measure_pair_stream` to it field by field. The R317 and R304
measurements (frame locking, lag drift) are shared with the engine: they are computed on arrays
there too.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair.drift import measure_lag_drift
from codecdoctor.measure.pair.frames import SNR_EXACT_DB, frame_locking
from codecdoctor.measure.pair.lag import chance_in_frame, lag_frame_size, lag_search_is_one_fft
from codecdoctor.measure.pair.measurements import (
    MAX_LAG_SECONDS,
    MEL_DISTANCE_CONFIG,
    SEGMENT_SECONDS,
    SILENT_REF_RMS_DB,
    WHAT_IF_KEYS,
    PairMeasurements,
    set_segment_levels,
)
from codecdoctor.measure.pair.sums import scale_exponent


def _flat_time_last(x: Any) -> tuple[np.ndarray, int]:
    """Flattened float64 signal and its length along the time (last) axis."""
    arr = M.as_signal(x)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr, int(arr.shape[-1])


def _level_db(x: np.ndarray) -> float:
    if x.size == 0:
        return -math.inf
    peak = float(np.max(np.abs(x)))
    if peak == 0.0:
        return -math.inf
    rms = peak * math.sqrt(float(np.mean((x / peak) ** 2)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def _mean(x: np.ndarray) -> float:
    if x.size == 0:
        return 0.0
    peak = float(np.max(np.abs(x)))
    return 0.0 if peak == 0.0 else peak * float(np.mean(x / peak))


def _segment_levels_db(ref: np.ndarray, est: np.ndarray, segment: int,
                       active_range_db: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment output level 20*log10|<r,e>/<r,r>| (output relative to input) and the input's
    level 10*log10<r,r> (relative to the loudest segment), over segments whose reference energy is
    within `active_range_db` of the loudest segment (quiet segments give noisy ratios)."""
    empty = (np.zeros(0), np.zeros(0))
    n_seg = ref.size // segment
    if n_seg < 1:
        return empty
    scale = M._common_scale(ref, est) or 1.0
    r = ref[: n_seg * segment].reshape(n_seg, segment) / scale
    e = est[: n_seg * segment].reshape(n_seg, segment) / scale
    energy = np.einsum("ij,ij->i", r, r)
    loudest = float(energy.max())
    if loudest <= 0.0:
        return empty
    active = energy >= loudest * 10.0 ** (-active_range_db / 10.0)
    ratio = np.einsum("ij,ij->i", r[active], e[active]) / energy[active]
    return 20.0 * np.log10(np.maximum(np.abs(ratio), 1e-6)), 10.0 * np.log10(energy[active] / loudest)


def _segment_level_correction(ra: np.ndarray, ea: np.ndarray, ra_dc: float, ea_dc: float, sign: float,
                              level: float, segment: int, active_range_db: float = 30.0) -> tuple[float, float]:
    """(SNR after dividing each segment of the centred, sign-corrected output by its own level
    ratio <r,e>/<r,r>, output peak after that). Segments more than `active_range_db` below the
    loudest, or whose ratio is not clearly positive (below 0.05: nothing to undo), use the global
    level; so does the tail after the last whole segment."""
    rc, ec = ra - ra_dc, sign * (ea - ea_dc)
    scale = M._common_scale(rc, ec) or 1.0
    rc, ec = rc / scale, ec / scale
    n_seg = rc.size // segment
    ratios = np.full(n_seg, level)
    if n_seg >= 1:
        r = rc[: n_seg * segment].reshape(n_seg, segment)
        e = ec[: n_seg * segment].reshape(n_seg, segment)
        energy = np.einsum("ij,ij->i", r, r)
        loudest = float(energy.max())
        if loudest > 0.0:
            own = np.einsum("ij,ij->i", r, e) / np.maximum(energy, 1e-300)
            usable = (energy >= loudest * 10.0 ** (-active_range_db / 10.0)) & (own > 0.05)
            ratios = np.where(usable, own, level)
    per_sample = np.full(rc.size, level)
    per_sample[: n_seg * segment] = np.repeat(ratios, segment)
    if not np.all(per_sample > 0.0):
        return -math.inf, 0.0
    corrected = ec / per_sample
    snr = M.snr_db(rc + ra_dc / scale, corrected + ra_dc / scale)
    return snr, float(np.max(np.abs(corrected))) * scale if corrected.size else 0.0


def measure_pair_whole(ref: Any, est: Any, sample_rate: int, *, subject: str | None = None,
                 output_bound: float | None = None, max_lag_samples: int | None = None,
                 hop_samples: int | None = None) -> PairMeasurements:
    """Measure one (ref, est) pair. `output_bound`: the decoder's output bound (1.0 for tanh/clamp)
    when known; when None and the output never exceeds 1.0 while the input does, a bound of 1.0 is
    inferred (R307). `hop_samples`: the codec's frame hop if known (R317 searches plausible frame
    rates otherwise). Non-finite samples are counted and set to 0 for every other measurement."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    ref_arr, ref_len = _flat_time_last(ref)
    est_arr, est_len = _flat_time_last(est)
    nonfinite_ref = int(np.size(ref_arr) - np.count_nonzero(np.isfinite(ref_arr)))
    nonfinite_est = int(np.size(est_arr) - np.count_nonzero(np.isfinite(est_arr)))
    if nonfinite_ref:
        ref_arr = np.where(np.isfinite(ref_arr), ref_arr, 0.0)
    if nonfinite_est:
        est_arr = np.where(np.isfinite(est_arr), est_arr, 0.0)
    r, e = M.crop_pair(ref_arr, est_arr)
    # Full flattened signals (uncropped) for alignment: a padded output keeps its tail.
    r_full, e_full = ref_arr.reshape(-1), est_arr.reshape(-1)
    m = PairMeasurements(sample_rate=sample_rate, ref_samples=ref_len, est_samples=est_len,
                         compared_samples=int(r.size), subject=subject,
                         nonfinite_ref=nonfinite_ref, nonfinite_est=nonfinite_est)
    m.mel_distance_config = dict(MEL_DISTANCE_CONFIG)
    for name, x in (("ref", r_full), ("est", e_full)):
        if x.size:
            setattr(m, f"{name}_peak", float(np.max(np.abs(x))))
            setattr(m, f"{name}_min", float(np.min(x)))
            setattr(m, f"{name}_max", float(np.max(x)))
        setattr(m, f"{name}_rms_db", _level_db(x))
        setattr(m, f"{name}_dc", _mean(x))
    m.ref_silent = m.ref_rms_db < SILENT_REF_RMS_DB
    m.est_silent = m.est_rms_db < SILENT_REF_RMS_DB or (m.est_max - m.est_min) == 0.0
    if r.size == 0:
        m.notes.append("nothing to compare: an input is empty")
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        return m

    m.snr_db = M.snr_db(r, e)
    m.si_snr_db = M.si_snr_db(r, e)
    m.si_sdr_db = M.si_sdr_db(r, e)
    m.seg_snr_db = M.seg_snr_db(r, e, frame_samples=max(1, round(0.02 * sample_rate)))
    ref_mel, ref_psd, ref_scale = M.spectral_summary(r, sample_rate)
    est_mel, est_psd, est_scale = M.spectral_summary(e, sample_rate)
    m.mel_distance = float(np.mean(np.abs(ref_mel - est_mel)))
    # Bins more than 60 dB (3 decades of magnitude) below the reference's loudest are floored: they
    # are inaudible beside it and would make the correlation measure noise floors, not content.
    floor = ref_mel.max() - 3.0
    ref_floored, est_floored = np.maximum(ref_mel, floor), np.maximum(est_mel, floor)
    m.mel_correlation = M.array_correlation(ref_floored, est_floored)
    m.mel_pattern_correlation = M.array_correlation(ref_floored - ref_floored.mean(axis=0),
                                                    est_floored - est_floored.mean(axis=0))

    # Alignment over the full signals, within a bounded window.
    max_lag = int(max_lag_samples if max_lag_samples is not None else round(MAX_LAG_SECONDS * sample_rate))
    lag, peak, fraction = _lag_peak_fraction(r_full, e_full, max_lag)
    m.lag_samples, m.correlation, m.lag_fraction_samples = lag, peak, fraction
    m.lag_ms = 1000.0 * lag / sample_rate
    m.polarity = 0 if abs(peak) < 0.1 else (1 if peak > 0 else -1)
    m.correlation_chance = _correlation_chance(r_full, e_full, max_lag, (m.ref_peak, m.est_peak))
    ra, ea = M.shift_pair(r_full, e_full, lag)

    # What-if table: each column is one fix on its own; "all" is alignment + DC matched to the
    # reference + signed optimal gain (so polarity too).
    g0 = M.optimal_gain(r, e)
    sign0 = -1.0 if g0 < 0 else 1.0
    ra_dc, ea_dc = _mean(ra), _mean(ea)
    ra_c, ea_c = ra - ra_dc, ea - ea_dc
    r_c, e_c = r - _mean(r), e - _mean(e)
    g_aligned = M.optimal_gain(ra_c, ea_c)
    m.gain = abs(g_aligned)
    m.what_if = {
        "raw": m.snr_db,
        "gain": M.snr_db(r, max(g0, 0.0) * e),
        "aligned": M.snr_db(ra, ea),
        "polarity": M.snr_db(r, sign0 * e),
        "all": M.snr_db(ra, ra_dc + g_aligned * ea_c),
    }
    sign_aligned = -1.0 if g_aligned < 0 else 1.0
    m.snr_without_alignment_db = M.snr_db(r, _mean(r) + M.optimal_gain(r_c, e_c) * e_c)
    m.snr_without_polarity_db = M.snr_db(ra, ra_dc + max(g_aligned, 0.0) * ea_c)
    m.snr_without_gain_db = M.snr_db(ra, ra_dc + sign_aligned * ea_c)
    m.snr_without_dc_db = M.snr_db(ra, M.optimal_gain(ra, ea) * ea)
    level = M.output_level_ratio(ra_c, ea_c)
    m.output_level_db = 20.0 * math.log10(abs(level)) if level != 0.0 else -math.inf
    m.snr_with_level_fixed_db = (M.snr_db(ra, ra_dc + sign_aligned * ea_c / abs(level)) if level != 0.0
                                 else m.snr_without_gain_db)
    if fraction != 0.0 and ea_c.size > 2 * M.SINC_HALF_TAPS:
        shifted = M.fractional_shift(ea_c, -fraction)
        m.snr_after_fractional_alignment_db = M.snr_db(ra, ra_dc + M.optimal_gain(ra_c, shifted) * shifted)
    else:
        m.snr_after_fractional_alignment_db = m.what_if["all"]
    segment = max(1, round(SEGMENT_SECONDS * sample_rate))
    levels, input_levels = _segment_levels_db(ra, sign_aligned * ea, segment)
    set_segment_levels(m, levels, input_levels)
    if level != 0.0:
        m.snr_with_segment_levels_db, m.est_peak_after_segment_levels = _segment_level_correction(
            ra, ea, ra_dc, ea_dc, sign_aligned, abs(level), segment)
    m.snr_after_dc_removal_db = M.snr_db(r - _mean(r), e - _mean(e))

    # Bounded output (R307): the SNR ceiling an output limited to +-bound can reach on this input.
    bound = output_bound
    if bound is None and m.ref_peak > 1.0 and 0.0 < m.est_peak <= 1.0:
        bound, m.output_bound_inferred = 1.0, True
    if bound is not None and bound > 0:
        m.output_bound = float(bound)
        beyond = np.abs(r_full) > bound
        m.ref_beyond_bound_samples = int(np.count_nonzero(beyond))
        if m.ref_beyond_bound_samples:
            m.bound_ceiling_db = M.snr_db(r_full, np.clip(r_full, -bound, bound))
    # Small-signal level: where the input is within half of full scale (or of the bound), a bound
    # or a runaway output does not act; a gain error does.
    small = np.abs(ra) <= 0.5 * (m.output_bound or 1.0)
    if np.count_nonzero(small) >= 16:
        small_level = M.output_level_ratio(ra_c[small], sign_aligned * ea_c[small])
        m.output_level_small_signal_db = 20.0 * math.log10(small_level) if small_level > 0.0 else -math.inf

    measure_lag_drift(m, lambda a, b: r_full[max(a, 0):max(b, 0)], lambda a, b: e_full[max(a, 0):max(b, 0)],
                      r_full.size, e_full.size)

    residual = ra - (ra_dc + g_aligned * ea_c)
    if m.what_if["all"] < SNR_EXACT_DB:   # an exact copy's residual is float rounding: no frames
        unit = m.ref_peak or 1.0   # energies of 1e300-sized samples are summed at unit scale
        frame_locking(m, residual, float(dot(ra / unit, ra / unit)) * unit * unit, hop_samples, ra)

    if m.ref_silent:
        # SNR against silence is undefined; the sentinels above would read as numbers.
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        m.notes.append("reference is silent: SNR and the what-if table are undefined (-inf)")
    bands = M.band_transfer_from_spectra(ref_psd, est_psd, sample_rate, scale_ref=ref_scale, scale_est=est_scale)
    m.ref_bandwidth_hz = bands["ref_bandwidth_hz"]
    m.est_bandwidth_hz = bands["est_bandwidth_hz"]
    m.lost_band_energy_fraction = bands["lost_energy_fraction"]
    return m


def _lag_peak_fraction(ref: np.ndarray, est: np.ndarray, max_lag_samples: int) -> tuple[int, float, float]:
    """`metrics.lag_and_peak` plus the fractional part of the lag; below 0.02 samples it is 0."""
    max_lag = min(int(max_lag_samples), max(ref.size, est.size) - 1) if max(ref.size, est.size) else 0
    lags, c = M.cross_correlation(ref, est, max(max_lag, 0), clip=False)
    c = np.nan_to_num(c, nan=0.0)
    magnitude = np.abs(c)
    best = float(magnitude.max()) if magnitude.size else 0.0
    if best == 0.0:
        return 0, 0.0, 0.0
    candidates = np.flatnonzero(magnitude >= best * (1.0 - 1e-9))
    index = int(candidates[np.argmin(np.abs(lags[candidates]))])
    fraction = M.fractional_lag(lags, c, index)
    return int(lags[index]), float(np.clip(c[index], -1.0, 1.0)), (fraction if abs(fraction) >= 0.02 else 0.0)


def _correlation_frame(ref: np.ndarray, est: np.ndarray, max_lag: int,
                       peaks: tuple[float, float]) -> tuple[np.ndarray, float]:
    """The circular correlation frame and norm of `chance_in_frame`, as the engine's single-FFT lag
    search builds them: means removed, each side divided by scale_exponent(peak, limit=200), the
    estimate cut to ref + max_lag samples, the frame long enough that lags up to max_lag do not wrap."""
    from scipy.fft import irfft, rfft

    r = ref - ref.mean()
    e = est[: ref.size + max_lag] - est.mean()
    for x, peak in zip((r, e), peaks):
        exponent = scale_exponent(peak=peak, limit=200)
        if exponent:
            np.ldexp(x, -exponent, out=x)
    size = lag_frame_size(max(r.size, e.size) + max_lag + 1)
    frame = irfft(rfft(e, size) * np.conj(rfft(r, size)), size)
    est_part = e[: min(r.size, e.size)]
    return frame, math.sqrt(float(M.dot(r, r)) * float(M.dot(est_part, est_part)))


def _correlation_chance(ref: np.ndarray, est: np.ndarray, max_lag_samples: int,
                        peaks: tuple[float, float] | None = None) -> float:
    """Largest |correlation| of ref with est rotated by a third and two thirds of its length, over
    +-min(max_lag, length/4): whatever est is, a rotation that far is unrelated to ref at every lag
    searched, but has the same spectrum and level envelope, so this is the chance level of the
    peak correlation for this pair (high for narrow-band or periodic signals, ~4/sqrt(N) for white).

    A pair whose lag search is one FFT (up to about a minute at 16 kHz; lag_search_is_one_fft) is
    rotated within that FFT's zero-padded frame (chance_in_frame: the lag search's own correlation
    holds both rotations); a longer pair's estimate is rolled and correlated block by block.
    `peaks`: both sides' largest magnitudes when the caller has them."""
    n = est.size
    window = min(int(max_lag_samples), n // 4)
    if n < 16 or window < 1:
        return 0.0
    max_lag = max(min(int(max_lag_samples), max(ref.size, est.size) - 1), 0)
    if ref.size and lag_search_is_one_fft(ref.size, max_lag):
        if peaks is None:
            peaks = (float(np.max(np.abs(ref))), float(np.max(np.abs(est))))
        frame, norm = _correlation_frame(ref, est, max_lag, peaks)
        return chance_in_frame(frame, n, window, norm)
    chance = 0.0
    for shift in (n // 3, 2 * n // 3):
        _, c = M.cross_correlation(ref, np.roll(est, shift), window)
        chance = max(chance, float(np.max(np.abs(c))) if c.size else 0.0)
    return chance
