"""Measure a (reference, estimate) pair once: every number the R3xx judges read.

`measure_pair` computes SNR, SI-SNR, segmental SNR, mel distance, gain, lag, polarity, DC, level
slope and the what-if table: the SNR the pair would have after each single fix (best non-negative
gain, time alignment, polarity flip) and after all of them. The chunk-set measurements say how a
set of chunks averages (mean of per-chunk dB vs total-power SNR). Judging is `codecdoctor.diagnose`.

Arrays: any array-like (numpy, torch). Time is the last axis; leading axes (batch, channels) are
joined end to end. Nothing here raises on bad values; see `codecdoctor.measure.metrics` for the sentinels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from codecdoctor.measure import metrics as M

# A reference quieter than this (RMS, dBFS) is treated as silent: it is below the dithered 16-bit
# noise floor (about -101 dBFS), so an SNR against it measures nothing but the codec's idle noise.
SILENT_REF_RMS_DB = -100.0
# Segments for the per-segment level analysis (R302 "scale destroyed"): a quarter second holds a
# few pitch periods and is shorter than the chunks a per-chunk normaliser works on.
SEGMENT_SECONDS = 0.25
# Lag search window: half a second covers codec latencies (tens of ms) and whole-frame padding
# bugs (a 2000-sample delay is 125 ms at 16 kHz) with room to spare.
MAX_LAG_SECONDS = 0.5

WHAT_IF_KEYS = ("raw", "gain", "aligned", "polarity", "all")

@dataclass
class PairMeasurements:
    """Every measurement of one (ref, est) pair. Levels in dBFS, lags in samples, SNRs in dB."""

    sample_rate: int
    ref_samples: int
    est_samples: int
    compared_samples: int
    subject: str | None = None
    nonfinite_ref: int = 0
    nonfinite_est: int = 0
    ref_silent: bool = False
    est_silent: bool = False
    ref_peak: float = 0.0
    est_peak: float = 0.0
    ref_min: float = 0.0
    ref_max: float = 0.0
    est_min: float = 0.0
    est_max: float = 0.0
    ref_rms_db: float = -math.inf
    est_rms_db: float = -math.inf
    ref_dc: float = 0.0
    est_dc: float = 0.0
    snr_db: float = -math.inf
    si_snr_db: float = -math.inf
    si_sdr_db: float = -math.inf
    seg_snr_db: float = -math.inf
    mel_distance: float = math.inf
    mel_correlation: float = 0.0
    # Optimal gain to apply to est (after alignment and polarity): |<ref, est> / <est, est>|.
    gain: float = 0.0
    # The output's level relative to the input: 20*log10|<ref, est> / <ref, ref>| (after alignment).
    output_level_db: float = -math.inf
    # Spread (standard deviation) of the per-segment output level over active segments.
    segment_level_spread_db: float = 0.0
    segment_level_min_db: float = 0.0
    segment_level_max_db: float = 0.0
    segment_input_span_db: float = 0.0   # loudest minus quietest active input segment
    segment_level_slope: float = 1.0     # output dB per input dB across segments
    active_segments: int = 0
    lag_samples: int = 0
    lag_ms: float = 0.0
    # Normalised cross-correlation at the best lag (signed: negative = inverted).
    correlation: float = 0.0
    polarity: int = 0
    what_if: dict[str, float] = field(default_factory=dict)
    # "All fixes but one": SNR with every correction except the named one (differential diagnosis).
    snr_without_alignment_db: float = -math.inf
    snr_without_polarity_db: float = -math.inf
    snr_without_gain_db: float = -math.inf
    snr_with_level_fixed_db: float = -math.inf
    snr_after_dc_removal_db: float = -math.inf
    output_bound: float | None = None
    output_bound_inferred: bool = False
    ref_beyond_bound_samples: int = 0
    bound_ceiling_db: float = math.inf
    ref_bandwidth_hz: float = 0.0
    est_bandwidth_hz: float = 0.0
    lost_band_energy_fraction: float = 0.0
    notes: list[str] = field(default_factory=list)


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


def measure_pair(ref: Any, est: Any, sample_rate: int, *, subject: str | None = None,
                 output_bound: float | None = None, max_lag_samples: int | None = None) -> PairMeasurements:
    """Measure one (ref, est) pair. `output_bound`: the decoder's output bound (1.0 for tanh/clamp)
    when known; when None and the output never exceeds 1.0 while the input does, a bound of 1.0 is
    inferred (R307). Non-finite samples are counted and set to 0 for every other measurement."""
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
    m.mel_correlation = M.array_correlation(np.maximum(ref_mel, floor), np.maximum(est_mel, floor))

    # Alignment over the full signals, within a bounded window.
    max_lag = int(max_lag_samples if max_lag_samples is not None else round(MAX_LAG_SECONDS * sample_rate))
    lag, peak = M.lag_and_peak(r_full, e_full, max_lag)
    m.lag_samples, m.correlation = lag, peak
    m.lag_ms = 1000.0 * lag / sample_rate
    m.polarity = 0 if abs(peak) < 0.1 else (1 if peak > 0 else -1)
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
    level = M.output_level_ratio(ra_c, ea_c)
    m.output_level_db = 20.0 * math.log10(abs(level)) if level != 0.0 else -math.inf
    m.snr_with_level_fixed_db = (M.snr_db(ra, ra_dc + sign_aligned * ea_c / abs(level)) if level != 0.0
                                 else m.snr_without_gain_db)
    levels, input_levels = _segment_levels_db(ra, sign_aligned * ea, max(1, round(SEGMENT_SECONDS * sample_rate)))
    m.active_segments = int(levels.size)
    if levels.size >= 4:
        m.segment_level_spread_db = float(np.std(levels))
        m.segment_level_min_db = float(levels.min())
        m.segment_level_max_db = float(levels.max())
        m.segment_input_span_db = float(np.ptp(input_levels))
        if m.segment_input_span_db > 0.0:
            # output level (dB) against input level (dB) across segments: 1 dB/dB when the output
            # follows the input, ~0 when every segment comes out at one level (normalisation, AGC)
            m.segment_level_slope = float(np.polyfit(input_levels, input_levels + levels, 1)[0])
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

    if m.ref_silent:
        # SNR against silence is undefined; the sentinels above would read as numbers.
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        m.notes.append("reference is silent: SNR and the what-if table are undefined (-inf)")
    bands = M.band_transfer_from_spectra(ref_psd, est_psd, sample_rate, scale_ref=ref_scale, scale_est=est_scale)
    m.ref_bandwidth_hz = bands["ref_bandwidth_hz"]
    m.est_bandwidth_hz = bands["est_bandwidth_hz"]
    m.lost_band_energy_fraction = bands["lost_energy_fraction"]
    return m


# A chunk whose reference energy is 40 dB below the median chunk is silent for scoring purposes: its
# content is below the idle noise of any practical codec, so its SNR is hugely negative whatever
# the model does.
SILENT_CHUNK_DB = -40.0


@dataclass
class ChunkSetMeasurements:
    """How a set of chunks (validation crops, files) scores under two averaging rules."""

    chunks: int
    silent_chunks: int
    silent_fraction: float
    # Mean of per-chunk SNR dB computed the way training loops do (eps = float32 epsilon).
    mean_chunk_snr_db: float
    # Same mean over the non-silent chunks only.
    mean_active_chunk_snr_db: float
    median_chunk_snr_db: float
    # Total-power SNR: sum of reference energy over sum of error energy, across every chunk.
    total_snr_db: float
    subject: str | None = None
    chunk_snr_db: list[float] = field(default_factory=list)


def measure_chunk_set(refs: Sequence[Any], ests: Sequence[Any], subject: str | None = None) -> ChunkSetMeasurements:
    """Score a set of (ref, est) chunks both ways: mean of per-chunk dB vs total-power SNR."""
    signal_energy: list[float] = []
    error_energy: list[float] = []
    for ref, est in zip(refs, ests):
        signal, error = chunk_energies(ref, est)
        signal_energy.append(signal)
        error_energy.append(error)
    return chunk_set_from_energies(signal_energy, error_energy, subject=subject)


def chunk_energies(ref: Any, est: Any) -> tuple[float, float]:
    """(sum ref^2, sum (ref - est)^2) over the common length; the error is inf when a sample is
    non-finite (a loop's metric would be NaN or -inf for that chunk)."""
    r, e = M.crop_pair(ref, est)
    finite = bool(np.isfinite(r).all() and np.isfinite(e).all())
    r = np.where(np.isfinite(r), r, 0.0)
    with np.errstate(over="ignore"):
        signal = float(np.dot(r, r))
        error = float(np.dot(r - e, r - e)) if finite else math.inf
    return signal, error


def chunk_set_from_energies(signal_energy: Sequence[float], error_energy: Sequence[float],
                            subject: str | None = None) -> ChunkSetMeasurements:
    """Build the set measurements from per-chunk (reference, error) energies."""
    n = len(signal_energy)
    if n == 0:
        return ChunkSetMeasurements(0, 0, 0.0, -math.inf, -math.inf, -math.inf, -math.inf, subject)
    energies = np.asarray(signal_energy, dtype=np.float64)
    errors = np.asarray(error_energy, dtype=np.float64)
    median = float(np.median(energies))
    silent = (energies <= 0.0) | (energies <= median * 10.0 ** (SILENT_CHUNK_DB / 10.0))
    eps = M.FLOAT32_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = 10.0 * np.log10((energies + eps) / (errors + eps))
    values = np.where(np.isfinite(errors), values, -math.inf)
    values = np.nan_to_num(values, nan=-math.inf)
    all_finite = bool(np.isfinite(values).all())
    active_values = values[~silent & np.isfinite(values)]
    total_error = float(np.sum(errors))
    total_signal = float(np.sum(energies))
    return ChunkSetMeasurements(
        chunks=n,
        silent_chunks=int(silent.sum()),
        silent_fraction=float(silent.mean()),
        mean_chunk_snr_db=float(values.mean()) if all_finite else -math.inf,
        mean_active_chunk_snr_db=float(active_values.mean()) if active_values.size else -math.inf,
        median_chunk_snr_db=float(np.median(values)) if all_finite else -math.inf,
        total_snr_db=M.energy_ratio_db(total_signal, total_error) if math.isfinite(total_error) else -math.inf,
        subject=subject,
        chunk_snr_db=[float(v) for v in values],
    )


