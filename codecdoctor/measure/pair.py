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
from codecdoctor.measure.metrics import dot

# A reference quieter than this (RMS, dBFS) is treated as silent: it is below the dithered 16-bit
# noise floor (about -101 dBFS), so an SNR against it measures nothing but the codec's idle noise.
SILENT_REF_RMS_DB = -100.0
# Segments for the per-segment level analysis (R302 "scale destroyed"): a quarter second holds a
# few pitch periods and is shorter than the chunks a per-chunk normaliser works on.
SEGMENT_SECONDS = 0.25
# Lag search window: half a second covers codec latencies (tens of ms) and whole-frame padding
# bugs (a 2000-sample delay is 125 ms at 16 kHz) with room to spare.
MAX_LAG_SECONDS = 0.5
# metrics.cross_correlation correlates at most this many evenly spaced blocks (an hour costs what a
# minute costs: a codec's lag is global).
LAG_BLOCKS = 32

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
    # ---- diagnosis v2 (each is a sum over samples, segments or frames: accumulable block by block)
    # The mel distance's configuration (single scale, as `mel_distance` above is computed).
    mel_distance_config: dict[str, Any] = field(default_factory=dict)
    # Correlation of the log-mel spectrograms after removing each band's time average (the long-term
    # spectrum): does the time-frequency *pattern* follow the input's? Two utterances share a
    # long-term spectrum (mel_correlation ~0.3-0.9) but not a pattern (~0.1).
    mel_pattern_correlation: float = 0.0
    # Chance level of `correlation`: the largest |normalised cross-correlation| of the reference with
    # the estimate moved by a third and two thirds of its length (unrelated to it whatever the
    # estimate is), over the same lag window (at most a quarter of the length).
    correlation_chance: float = 0.0
    # Fractional part of the lag (band-limited interpolation of the correlation peak), in
    # [-0.5, 0.5]; 0.0 when below 0.02 samples. The total delay is lag_samples + lag_fraction_samples.
    lag_fraction_samples: float = 0.0
    snr_after_fractional_alignment_db: float = -math.inf
    # SNR with every correction but DC matching.
    snr_without_dc_db: float = -math.inf
    # The output's level over the samples whose input is within half of full scale (|ref| <= 0.5 x
    # bound): a bounded or runaway output distorts the peaks, a gain error scales everything.
    output_level_small_signal_db: float = -math.inf
    # Every correction, then each 0.25 s segment divided by its own output/input level ratio
    # (time-varying gain undone); and the output peak once that is done.
    snr_with_segment_levels_db: float = -math.inf
    est_peak_after_segment_levels: float = 0.0
    # R304 lag drift: the lag measured again in evenly spaced windows (measure_lag_drift), each
    # [time_s, lag_samples, correlation, counted (1 when confident)]; the fitted change of the lag
    # from the first counted window to the last, the same as a clock-rate error in parts per
    # million, whether the counted lags move one way only (within a sample), and the SNR gained by
    # aligning each counted window at its own lag instead of the global one (optimal gain each).
    lag_by_window: list[list[float]] = field(default_factory=list)
    lag_drift_samples: float = 0.0
    lag_drift_monotone: bool = False
    lag_drift_ppm: float = 0.0
    snr_gain_local_lags_db: float = 0.0
    # R317 frame-rate artifacts: residual (after all corrections) energy locked to a frame grid.
    frame_hop_samples: int = 0
    frame_hop_known: bool = False
    frame_rate_hz: float = 0.0
    frame_line_excess_db: float = 0.0           # hop-rate harmonics above the modulation continuum
    frame_locked_fraction: float = 0.0          # share locked to the grid (0 below FRAME_LINE_MIN_DB)
    frame_locked_ceiling_db: float = math.inf   # SNR cap from the frame-locked energy alone
    # With the hop unknown and lines found: the reference's pitch range (5th-95th percentile of its
    # voiced frames' F0; 0 when not measured or unvoiced) and the smallest m for which m x the
    # frame rate lies in it while the rate's other harmonics stand below FRAME_LINE_MIN_DB
    # (0: the lines are not the voice's own).
    ref_pitch_low_hz: float = 0.0
    ref_pitch_high_hz: float = 0.0
    frame_pitch_multiple: int = 0
    # Quality metrics (codecdoctor.measure.quality; None when not computed or not computable).
    stoi: float | None = None
    estoi: float | None = None
    pesq_wb: float | None = None
    pesq_nb: float | None = None
    multiscale_mel_distance: float | None = None
    multiscale_mel_config: dict[str, Any] = field(default_factory=dict)
    quality_notes: list[str] = field(default_factory=list)


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


# Mel distance as `measure_pair` computes it (metrics.spectral_summary's defaults).
MEL_DISTANCE_CONFIG = {"scales": "single", "window": "hann", "n_fft": "64 ms (1024 at 16 kHz)", "hop": "n_fft/4",
                       "n_mels": 64, "mel_scale": "htk", "mel_norm": "slaney", "fmin_hz": 0.0, "fmax_hz": "nyquist",
                       "magnitude": "linear (not power)", "log": "log10", "floor": 1e-5, "distance": "mean |diff|"}
# R317: plausible codec frame rates when the hop is not given (EnCodec 75 Hz, DAC 86 Hz, SoundStream
# 50-75 Hz, Mimi 12.5 Hz, SNAC 12-47 Hz, WavTokenizer 40-75 Hz): every integer hop with a frame
# rate in this range is tried.
FRAME_RATE_RANGE_HZ = (10.0, 200.0)
# The residual's energy envelope is pooled to about this rate before its modulation spectrum is
# taken: it keeps hop-rate harmonics up to 1 kHz (the fifth of a 200 Hz frame rate).
ENVELOPE_RATE_HZ = 4000.0
# R317 needs the hop-rate harmonics 10 dB (10x) above the modulation continuum on average: on the
# residuals of healthy, noisy, band-limited, gain-ridden and normalised speech pairs the best of
# the ~1500 candidate rates reached 6.3 dB (a Welch estimate's scatter maximised over candidates).
FRAME_LINE_MIN_DB = 10.0
# Beyond this SNR (after every correction) the residual is float rounding of an exact copy.
SNR_EXACT_DB = 150.0


def _modulation_spectrum(envelope: np.ndarray, envelope_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum of an energy envelope (mean removed), 1 s segments (1 Hz bins)."""
    from codecdoctor.measure.spectral import welch_density

    nperseg = int(min(envelope.size, 2 ** round(math.log2(max(envelope_rate, 16.0)))))
    return welch_density(envelope - envelope.mean(), envelope_rate, nperseg)


def _line_table_db(freqs: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Per bin: the line power (largest bin within one bin) over the continuum (median of the bins
    4 to 20 bins away on both sides), in dB; 0 where undefined. One table serves every candidate
    frame rate. Only the bins up to the highest harmonic `_line_excess_db` reads (1 kHz, or 0.8 of
    Nyquist) are filled: the medians above it were half of R317's cost."""
    table = np.zeros(power.size)
    if power.size < 48:
        return table
    from numpy.lib.stride_tricks import sliding_window_view

    df = float(freqs[1] - freqs[0])
    reach = min(power.size, int(math.ceil(_harmonic_top_hz(freqs) / df)) + 2) if df > 0 else power.size
    padded = np.pad(power, 21, mode="edge")[: reach + 42]
    windows = sliding_window_view(padded, 43)          # bins b-21 .. b+21 around each bin b < reach
    line = windows[:, 20:23].max(axis=1)
    # the median of each row's 34 bins, as np.median gives it: a sort of short rows is 4x faster
    # than np.median's partition
    ordered = np.sort(np.concatenate([windows[:, 1:18], windows[:, 25:42]], axis=1), axis=1)
    continuum = (ordered[:, 16] + ordered[:, 17]) / 2.0
    valid = (continuum > 0.0) & (line > 0.0)
    table[:reach][valid] = 10.0 * np.log10(line[valid] / continuum[valid])
    return table


def _harmonic_top_hz(freqs: np.ndarray) -> float:
    """The highest frequency a hop-rate harmonic is read at: 1 kHz, or 0.8 of the top bin."""
    return min(1000.0, 0.8 * float(freqs[-1]))


def _line_excess_db(freqs: np.ndarray, table: np.ndarray, frame_rates: np.ndarray, *,
                    harmonics: int = 8) -> np.ndarray:
    """Mean over the hop-rate harmonics (up to 1 kHz, at most `harmonics`) of the line-over-continuum
    table, for each frame rate."""
    rates = np.atleast_1d(np.asarray(frame_rates, dtype=np.float64))
    if freqs.size < 48:
        return np.zeros(rates.size)
    df = float(freqs[1] - freqs[0])
    top = _harmonic_top_hz(freqs)
    k = np.arange(1, harmonics + 1)[None, :]
    harmonic_hz = rates[:, None] * k
    inside = harmonic_hz <= top
    bins = np.clip(np.round(harmonic_hz / df).astype(int), 0, table.size - 1)
    values = np.where(inside, table[bins], 0.0)
    counts = inside.sum(axis=1)
    return np.where(counts > 0, values.sum(axis=1) / np.maximum(counts, 1), 0.0)


def _search_hop(freqs: np.ndarray, table: np.ndarray, sample_rate: int, samples: int) -> int:
    """The integer hop whose frame rate's harmonics stand highest above the modulation continuum,
    among every hop with a frame rate in FRAME_RATE_RANGE_HZ (0 when none fits the signal). A
    pattern repeating every h samples also has lines at every harmonic of sr/(h/2), so the best
    score alone cannot tell h from h/2: the hop is multiplied by 2, 3, 5 or 7 while the lower
    rate's own harmonics (those not shared with the higher rate) stand at least half as high as the
    best score, 3 dB or more."""
    lo = max(2, int(math.ceil(sample_rate / FRAME_RATE_RANGE_HZ[1])))
    hi = min(int(sample_rate / FRAME_RATE_RANGE_HZ[0]), samples // 8)
    hops = np.arange(lo, hi + 1)
    if hops.size == 0:
        return 0
    scores = _line_excess_db(freqs, table, sample_rate / hops)
    best = int(hops[int(np.argmax(scores))])
    target = max(3.0, 0.5 * float(scores.max()))
    for factor in (2, 3, 5, 7):
        keep = [k for k in range(1, 10) if k % factor]
        while factor * best <= hi:
            rate = sample_rate / (factor * best)
            harmonic_hz = np.array([rate * k for k in keep if rate * k <= _harmonic_top_hz(freqs)])
            lines = _line_excess_db(freqs, table, harmonic_hz, harmonics=1) if harmonic_hz.size else harmonic_hz
            if not lines.size or float(np.mean(lines)) < target:
                break
            best *= factor
    return best


def _normalised_energy(energy: np.ndarray, window: int) -> np.ndarray:
    """Energy over its moving average across `window` samples: speech's syllable-rate level swings
    (tens of dB) are divided out, a pattern that repeats within a frame is kept."""
    n = energy.size
    window = max(1, min(int(window), n))
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    # sample i averages [i - half, i - half + window) cut to the signal: interior sums are one
    # shifted difference of the cumulative sum, the edges repeat its ends (slices, no gathers)
    half = window // 2
    ahead = window - half
    upper = np.concatenate([cumulative[ahead:], np.full(ahead - 1, cumulative[n])])
    lower = np.concatenate([np.full(half, cumulative[0]), cumulative[: n - half]])
    count = np.full(n, float(window))
    if half:
        count[:half] -= half - np.arange(half)
    if ahead > 1:
        count[n - (ahead - 1):] -= np.arange(1, ahead)
    local = (upper - lower) / count
    floor = 1e-6 * float(energy.mean()) if n else 0.0
    return energy / np.maximum(local, max(floor, 1e-300))


def _locked_share(energy: np.ndarray, period: int) -> float:
    """Lower bound on the share of `energy` that repeats with every `period` samples.

    The energy, normalised by its moving average over four periods, is folded at `period` (the
    mean over frames at each phase: synchronous averaging, a comb filter at the frame rate and its
    harmonics). The same folding after rotating each frame by a random offset (seeded) keeps every
    value but destroys any alignment with the grid: its largest phase bin is the chance level. The
    share counts, over the phases that stand above that level, their excess over the median phase."""
    frames = energy.size // period
    if frames < 8 or period < 2:
        return 0.0
    units = _normalised_energy(energy, 4 * period)[: frames * period].reshape(frames, period)
    profile = units.mean(axis=0)
    rng = np.random.default_rng(period)
    columns = (np.arange(period)[None, :] + rng.integers(0, period, frames)[:, None]) % period
    chance = np.take_along_axis(units, columns, axis=1).mean(axis=0)
    total = float(profile.sum())
    if total <= 0.0:
        return 0.0
    above = profile > float(chance.max())
    return float(np.sum(profile[above] - np.median(profile)) / total)


# A line is at the pitch when it is within 3% (half a semitone) of the voiced frames' F0 range, or
# one modulation-spectrum bin, whichever is wider.
PITCH_TOLERANCE = 0.03


def _pitch_multiple(freqs: np.ndarray, table: np.ndarray, rate: float, low_hz: float, high_hz: float) -> int:
    """The smallest m (1-8) with m × `rate` inside [low_hz, high_hz] (widened by PITCH_TOLERANCE or
    a bin) whose other harmonics of `rate` (k not a multiple of m, up to 1 kHz) carry no line
    (mean excess below FRAME_LINE_MIN_DB): then every line is a harmonic of the voice's pitch. 0
    when there is none."""
    slack = max(PITCH_TOLERANCE * high_hz, float(freqs[1] - freqs[0]))
    top = _harmonic_top_hz(freqs)
    for multiple in range(1, 9):
        if not low_hz - slack <= multiple * rate <= high_hz + slack:
            continue
        others = np.array([k * rate for k in range(1, 9) if k % multiple and k * rate <= top])
        if not others.size or float(np.mean(_line_excess_db(freqs, table, others, harmonics=1))) < FRAME_LINE_MIN_DB:
            return multiple
    return 0


def _frame_locking(m: PairMeasurements, residual: np.ndarray, ref_energy: float, hop: int | None,
                   reference: np.ndarray | None = None) -> None:
    """R317's measurements from the residual after every correction; see the R317 check's doc.
    `reference`: the aligned reference over the same samples, for its pitch range when the hop is
    unknown."""
    sr = m.sample_rate
    if residual.size < 8 * max(hop or 0, int(sr / FRAME_RATE_RANGE_HZ[1])):
        return
    scale = max(float(residual.max()), -float(residual.min())) if residual.size else 0.0
    if not scale > 0.0:
        return
    energy = np.divide(residual, scale)
    np.square(energy, out=energy)
    pool = max(1, int(round(sr / ENVELOPE_RATE_HZ)))
    usable = energy.size // pool * pool
    columns = energy[:usable].reshape(-1, pool)
    envelope = columns[:, 0].copy()
    for k in range(1, pool):   # column by column: numpy's sum over a short axis is 10x slower
        envelope += columns[:, k]
    # Normalised over 50 ms: the syllable-rate swings (< 20 Hz) go, frame-rate lines (>= 10 Hz
    # fundamentals, harmonics to 1 kHz) stay, against a flat continuum.
    envelope = _normalised_energy(envelope, int(0.05 * sr / pool))
    freqs, power = _modulation_spectrum(envelope, sr / pool)
    table = _line_table_db(freqs, power)
    if hop:
        chosen = int(hop)
    else:
        chosen = _search_hop(freqs, table, sr, residual.size)
        if chosen == 0:
            return
        if float(_line_excess_db(freqs, table, np.array([sr / chosen]))[0]) >= FRAME_LINE_MIN_DB:
            # The grid must be exact to fold on. A 1 Hz bin at the 4th harmonic leaves
            # h^2 / (4 sr) samples of doubt (12 at a hop of 441 at 16 kHz): try them all.
            doubt = int(math.ceil(chosen * chosen * float(freqs[1] - freqs[0]) / (4.0 * sr))) + 1
            shares = {h: _locked_share(energy, h) for h in range(max(2, chosen - doubt), chosen + doubt + 1)}
            chosen = max(shares, key=lambda h: shares[h])
    m.frame_hop_samples = int(chosen)
    m.frame_hop_known = bool(hop)
    m.frame_rate_hz = sr / chosen
    m.frame_line_excess_db = float(_line_excess_db(freqs, table, np.array([sr / chosen]))[0])
    if m.frame_line_excess_db < FRAME_LINE_MIN_DB:
        # Without hop-rate lines there is nothing to confirm by folding (R317 reads the share only
        # above FRAME_LINE_MIN_DB): the share stays 0, and a short pair's compare skips about half of
        # its R317 cost (the folding normalises the full-rate residual energy).
        return
    if not hop and reference is not None:
        from codecdoctor.measure.pitch import pitch_range

        voice = pitch_range(reference, sr)
        if voice is not None:
            m.ref_pitch_low_hz, m.ref_pitch_high_hz = voice.low_hz, voice.high_hz
            m.frame_pitch_multiple = _pitch_multiple(freqs, table, m.frame_rate_hz, voice.low_hz, voice.high_hz)
    m.frame_locked_fraction = _locked_share(energy, chosen)
    residual_energy = float(energy.sum()) * scale * scale
    if m.frame_locked_fraction > 0.0 and ref_energy > 0.0:
        m.frame_locked_ceiling_db = M.energy_ratio_db(ref_energy, m.frame_locked_fraction * residual_energy)


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


def set_segment_levels(m: "PairMeasurements", levels: np.ndarray, input_levels: np.ndarray) -> None:
    """The per-segment level statistics from each active segment's output-vs-input level (dB) and
    input level (dB); shared by the whole-file and the streaming measurement."""
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


def measure_pair(ref: Any, est: Any, sample_rate: int, *, subject: str | None = None,
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
        _frame_locking(m, residual, float(dot(ra / unit, ra / unit)) * unit * unit, hop_samples, ra)

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


# Lag drift (R304): at most DRIFT_WINDOWS evenly spaced windows of DRIFT_WINDOW_SECONDS each (a
# correlation peak over 0.5 s of speech is sharp to a fraction of a sample), each searched around
# the global lag. The global lag sits near the middle window's, so an end window's own lag is
# off by up to the drift rate x half the pair: the search reaches DRIFT_SEARCH_SECONDS, or on a
# long pair far enough for DRIFT_MAX_PPM (two device clocks each +-100 ppm off, the crystal
# tolerance of consumer audio hardware), at most MAX_LAG_SECONDS (the lag search's own window).
# Without that, a 100 ppm drift on a 1.8 h pair left only the middle window or two within reach.
# A window counts when its peak |correlation| reaches DRIFT_MIN_CORRELATION (the output explains
# a quarter of the window's energy: below, noise moves the peak) and lies inside the search range.
DRIFT_WINDOWS = 8
DRIFT_MIN_WINDOWS = 4
DRIFT_WINDOW_SECONDS = 0.5
DRIFT_SEARCH_SECONDS = 0.05
DRIFT_MAX_PPM = 200.0
DRIFT_MIN_CORRELATION = 0.5


def drift_search_seconds(pair_seconds: float) -> float:
    """How far from the global lag each drift window is searched, for a pair this long."""
    reach = DRIFT_MAX_PPM * 1e-6 * max(pair_seconds, 0.0) / 2.0
    return min(max(DRIFT_SEARCH_SECONDS, reach), MAX_LAG_SECONDS)


def measure_lag_drift(m: PairMeasurements, read_ref: Any, read_est: Any, ref_samples: int, est_samples: int) -> None:
    """The lag again in up to DRIFT_WINDOWS windows spread over the pair, around m.lag_samples.

    `read_ref(start, stop)` / `read_est(start, stop)` return those samples of the flattened signals
    (measure_pair slices arrays, pair_stream reads blocks: both call this, so both agree). Fills
    m.lag_by_window, and from the confident windows (at least DRIFT_MIN_WINDOWS) m.lag_drift_samples
    (least-squares line through their lags, from the first window's time to the last's),
    m.lag_drift_ppm, m.lag_drift_monotone and m.snr_gain_local_lags_db."""
    from scipy.fft import irfft, next_fast_len, rfft

    sr, lag = m.sample_rate, int(m.lag_samples)
    width = max(16, int(round(DRIFT_WINDOW_SECONDS * sr)))
    radius = max(1, int(round(drift_search_seconds(min(ref_samples, est_samples) / sr) * sr)))
    # reference windows [t, t + width) whose estimate stretch [t + lag - radius, t + lag + width + radius) exists
    first = max(0, radius - lag)
    last = min(ref_samples, est_samples - lag - radius) - width
    if last < first or m.ref_silent or m.est_silent:
        return
    count = min(DRIFT_WINDOWS, (last - first) // width + 1)
    if count < DRIFT_MIN_WINDOWS:
        return
    size = next_fast_len(width + 2 * radius, real=True)
    shifts = np.arange(-radius, radius + 1)
    # every window is read first and all of them are correlated in one batch of transforms: eight
    # small FFTs each were mostly scipy's per-call overhead on a 10 s pair
    starts, refs, ests = [], [], []
    for start in np.linspace(first, last, count).round().astype(int):
        r = np.asarray(read_ref(int(start), int(start) + width), dtype=np.float64)
        e = np.asarray(read_est(int(start) + lag - radius, int(start) + lag + width + radius), dtype=np.float64)
        if r.size == width and e.size == width + 2 * radius:
            starts.append(int(start))
            refs.append(r)
            ests.append(e)
    if not starts:
        return
    r = np.stack(refs)
    e = np.stack(ests)
    r -= r.mean(axis=1, keepdims=True)
    e -= e.mean(axis=1, keepdims=True)
    ref_energy = np.einsum("ij,ij->i", r, r)
    usable = (ref_energy > 0.0) & np.isfinite(ref_energy)
    if not usable.any():
        return
    if not usable.all():
        starts = [s for s, ok in zip(starts, usable) if ok]
        r, e, ref_energy = r[usable], e[usable], ref_energy[usable]
    # energy of e[j : j + width], j = 0 .. 2R: the first window's, then what each step adds and drops
    squares = e * e
    steps = squares[:, width:] - squares[:, :-width]
    est_energy = np.empty((e.shape[0], 2 * radius + 1))
    est_energy[:, 0] = squares[:, :width].sum(axis=1)
    np.cumsum(steps, axis=1, out=steps)
    est_energy[:, 1:] = est_energy[:, :1] + steps
    # in float32, each row scaled by the power of two nearest its RMS (nothing overflows or turns
    # subnormal): half the float64 time, and within about 1e-7 of its correlations
    r_exponent = unit_rms_exponent(ref_energy, width)
    e_exponent = unit_rms_exponent(squares.sum(axis=1), e.shape[1])
    r32 = np.ldexp(r, -r_exponent[:, None]).astype(np.float32)
    e32 = np.ldexp(e, -e_exponent[:, None]).astype(np.float32)
    raw32 = irfft(rfft(e32, size, axis=1) * np.conj(rfft(r32, size, axis=1)), size, axis=1)[:, : 2 * radius + 1]
    raw = np.ldexp(raw32.astype(np.float64), (r_exponent + e_exponent)[:, None])
    denominator = np.sqrt(ref_energy[:, None] * np.maximum(est_energy, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(denominator > 0.0, raw / denominator, 0.0)
    rho = np.clip(np.nan_to_num(rho, nan=0.0), -1.0, 1.0)
    peaks = np.argmax(np.abs(rho), axis=1)
    times, lags, correlations, errors_global, errors_local = [], [], [], [], []
    for start, row, index, energy in zip(starts, rho, peaks, ref_energy):
        index = int(index)
        local = float(row[index])
        fraction = M.fractional_lag(shifts, row, index) if 0 < index < 2 * radius else 0.0
        centre_s = (start + width / 2.0) / sr
        counted = abs(local) >= DRIFT_MIN_CORRELATION and 0 < index < 2 * radius
        m.lag_by_window.append([centre_s, float(lag + shifts[index] + fraction), local, float(counted)])
        if counted:
            times.append(centre_s)
            lags.append(lag + shifts[index] + fraction)
            correlations.append(local)
            # the error left with the optimal gain is E_ref (1 - rho^2): at the global lag, at the window's own
            errors_global.append(float(energy) * (1.0 - float(row[radius]) ** 2))
            errors_local.append(float(energy) * (1.0 - local ** 2))
    if len(times) < DRIFT_MIN_WINDOWS:
        return
    t, y = np.asarray(times), np.asarray(lags)
    centred_t = t - t.mean()
    spread = float(centred_t @ centred_t)
    # the least-squares slope, samples per second (np.polyfit's lstsq took longer than the windows)
    slope = float(centred_t @ (y - y.mean())) / spread if spread > 0.0 else 0.0
    m.lag_drift_samples = slope * float(t[-1] - t[0])
    m.lag_drift_ppm = 1e6 * slope / sr
    # a clock error or dropped samples move the lag one way; a dispersive (all-pass-like) output
    # moves each window's peak by its own content, back and forth. One window may stand out of line:
    # the one that straddles the point where samples were dropped peaks between the two lags.
    # The correlation's sign (polarity) stays too: an all-pass response near resonance flips it.
    direction = np.sign(m.lag_drift_samples)
    signs = np.sign(np.asarray(correlations))
    m.lag_drift_monotone = any(bool(np.all(direction * np.diff(np.delete(y, skip)) >= -1.0))
                               and np.unique(np.delete(signs, skip)).size == 1 for skip in range(y.size))
    global_error, local_error = sum(errors_global), sum(errors_local)
    if local_error > 0.0 and global_error > 0.0:
        m.snr_gain_local_lags_db = 10.0 * math.log10(global_error / local_error)
    elif global_error > 0.0:
        m.snr_gain_local_lags_db = math.inf


def lag_search_is_one_fft(ref_samples: int, max_lag: int) -> bool:
    """Whether metrics.cross_correlation's blocks for this lag window all fit its block budget, so
    the sum of the block correlations is one whole-signal correlation (pair_stream computes it as a
    single FFT)."""
    block = max(4 * max_lag, 1 << 14)
    return -(-int(ref_samples) // block) <= LAG_BLOCKS


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


def _correlation_frame(ref: np.ndarray, est: np.ndarray, max_lag: int,
                       peaks: tuple[float, float]) -> tuple[np.ndarray, float]:
    """The circular correlation frame and norm of `chance_in_frame`, as pair_stream's single-FFT lag
    search builds them: means removed, each side divided by correlation_exponent of its peak, the
    estimate cut to ref + max_lag samples, the frame long enough that lags up to max_lag do not wrap."""
    from scipy.fft import irfft, next_fast_len, rfft

    r = ref - ref.mean()
    e = est[: ref.size + max_lag] - est.mean()
    for x, peak in zip((r, e), peaks):
        exponent = correlation_exponent(peak)
        if exponent:
            np.ldexp(x, -exponent, out=x)
    size = next_fast_len(max(r.size, e.size) + max_lag + 1, real=True)
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
        signal = float(dot(r, r))
        error = float(dot(r - e, r - e)) if finite else math.inf
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


