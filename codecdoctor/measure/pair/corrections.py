"""What-if SNRs from the sums: scale-invariant SDR, per-segment levels, fractional alignment."""
from __future__ import annotations

import math

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair.blocks import block_spans
from codecdoctor.measure.pair.measurements import WHAT_IF_KEYS, PairMeasurements, set_segment_levels
from codecdoctor.measure.pair.sources import WindowView
from codecdoctor.measure.pair.sums import EXACT_FRACTION, Quadratic, ratio_or_zero


def si_sdr_from_sums(q: Quadratic, zero_mean: bool) -> float:
    """metrics.si_sdr_db from the sums (a silent pair's inf is set_what_if's)."""
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


def segment_level_correction(qa: Quadratic, per_segment: list[np.ndarray], tail: dict[str, float], sign: float,
                              level: float, segment: int, aligned: int, active_range_db: float = 30.0,
                              ) -> tuple[float, float]:
    """(SNR, output peak) after each 0.25 s segment of the centred, sign-corrected output is divided
    by its own level ratio <r,e>/<r,r>, from per-segment sums. Segments more than `active_range_db`
    below the loudest, or whose ratio is not clearly positive (below 0.05: nothing to undo), use the
    global level; so does the tail after the last whole segment."""
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


def fractional_alignment_snr(ref: WindowView, est: WindowView, qa: Quadratic, delay: float, block: int) -> float:
    """SNR(ra, ra_dc + g * fractional_shift(ea_c, delay)) with g the optimal gain on the centred
    reference (snr_after_fractional_alignment_db), the FIR applied per block
    with margins (the same taps as metrics.fractional_shift)."""
    from codecdoctor.measure.spectral import fir_valid

    half = M.SINC_HALF_TAPS
    taps = M._windowed_sinc(np.arange(-half, half + 1) - float(delay), half + 1)
    taps /= taps.sum()
    cross = shifted_energy = 0.0
    for a, b in block_spans(ref.length, block):
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


def set_what_if(m: PairMeasurements, q: Quadratic, qa: Quadratic, aligned: int, silent_pair: bool) -> tuple[float, float]:
    """The what-if table and the "all fixes but one" SNRs from the unaligned (q) and aligned (qa)
    sums: each column is one fix on its own; "all" is alignment + DC matched to the reference +
    signed optimal gain (so polarity too). Returns the aligned optimal gain and the output level
    (<ra_c, ea_c> / <ra_c, ra_c>, 0.0 when undefined)."""
    signal = q.rr
    g0 = ratio_or_zero(q.re, q.ee)
    g_aligned = ratio_or_zero(qa.centred_re, qa.centred_ee)
    m.gain = abs(g_aligned)
    # "all": ra - (ra_dc + g * (ea - ea_dc)) = ra - g*ea - (ra_dc - g*ea_dc)
    m.what_if = {
        "raw": m.snr_db,
        "gain": q.snr(signal, 1.0, max(g0, 0.0)),
        "aligned": M.energy_ratio_db(qa.rr, qa.raw_error) if aligned else -math.inf,
        "polarity": q.snr(signal, 1.0, -1.0 if g0 < 0 else 1.0),
        "all": qa.snr(qa.rr, 1.0, g_aligned, qa.mean_r - g_aligned * qa.mean_e) if aligned else -math.inf,
    }
    sign_aligned = -1.0 if g_aligned < 0 else 1.0
    g_centred = ratio_or_zero(q.centred_re, q.centred_ee)
    m.snr_without_alignment_db = q.snr(signal, 1.0, g_centred, q.mean_r - g_centred * q.mean_e)
    g_positive = max(g_aligned, 0.0)
    m.snr_without_polarity_db = qa.snr(qa.rr, 1.0, g_positive, qa.mean_r - g_positive * qa.mean_e)
    m.snr_without_gain_db = qa.snr(qa.rr, 1.0, sign_aligned, qa.mean_r - sign_aligned * qa.mean_e)
    level = ratio_or_zero(qa.centred_re, qa.centred_rr)
    m.output_level_db = 20.0 * math.log10(abs(level)) if level != 0.0 else -math.inf
    if level != 0.0:
        b = sign_aligned / abs(level)
        m.snr_with_level_fixed_db = qa.snr(qa.rr, 1.0, b, qa.mean_r - b * qa.mean_e)
    else:
        m.snr_with_level_fixed_db = m.snr_without_gain_db
    m.snr_without_dc_db = qa.snr(qa.rr, 1.0, ratio_or_zero(qa.re, qa.ee)) if aligned else -math.inf
    m.snr_after_dc_removal_db = q.snr(q.centred_rr, 1.0, 1.0, q.mean_r - q.mean_e)
    if silent_pair:   # both sides all zeros: every correction leaves an exact match
        m.what_if = dict.fromkeys(WHAT_IF_KEYS, math.inf)
        for name in ("snr_without_alignment", "snr_without_polarity", "snr_without_gain", "snr_with_level_fixed",
                     "snr_after_dc_removal", "si_snr", "si_sdr"):
            setattr(m, f"{name}_db", math.inf)
    return g_aligned, level


def set_segment_levels_from_sums(m: PairMeasurements, qa: Quadratic, per_segment: list[np.ndarray],
                                 tail: dict[str, float], sign: float, level: float, segment: int, aligned: int,
                                 exponent: int) -> None:
    """R302's per-segment level statistics over the active segments (within 30 dB of the loudest),
    and the SNR and output peak after each segment's own level is undone. `exponent`: the aligned
    sums' (the peak is scaled back by it)."""
    energy, cross = per_segment[0], per_segment[1]
    if energy.size and float(energy.max()) > 0.0:
        loudest = float(energy.max())
        active = energy >= loudest * 10.0 ** (-30.0 / 10.0)
        ratio = sign * cross[active] / energy[active]
        levels = 20.0 * np.log10(np.maximum(np.abs(ratio), 1e-6))
        input_levels = 10.0 * np.log10(energy[active] / loudest)
        set_segment_levels(m, levels, input_levels)
    if level != 0.0 and aligned:
        m.snr_with_segment_levels_db, scaled_peak = segment_level_correction(
            qa, per_segment, tail, sign, abs(level), segment, aligned)
        m.est_peak_after_segment_levels = math.ldexp(scaled_peak, exponent)


def small_signal_level_db(qs: Quadratic, qa: Quadratic, sign: float) -> float:
    """The output's level over the small-signal samples (qs: their sums), each side centred by the
    aligned pair's means (qa)."""
    n = qs.n
    # <ra - ra_dc, ea - ea_dc> over the small-signal samples, with the global aligned means
    cross = qs.re - qa.mean_e * qs.r - qa.mean_r * qs.e + n * qa.mean_r * qa.mean_e
    power = qs.rr - 2.0 * qa.mean_r * qs.r + n * qa.mean_r ** 2
    small_level = sign * cross / power if power > 0.0 else 0.0
    return 20.0 * math.log10(small_level) if small_level > 0.0 else -math.inf
