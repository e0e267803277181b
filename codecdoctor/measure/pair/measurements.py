"""PairMeasurements: every number the R3xx judges read, and the constants that define them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A reference quieter than this (RMS, dBFS) is treated as silent: it is below the dithered 16-bit
# noise floor (about -101 dBFS), so an SNR against it measures nothing but the codec's idle noise.
SILENT_REF_RMS_DB = -100.0
# Segments for the per-segment level analysis (R302 "scale destroyed"): a quarter second holds a
# few pitch periods and is shorter than the chunks a per-chunk normaliser works on.
SEGMENT_SECONDS = 0.25
# Lag search window: half a second covers codec latencies (tens of ms) and whole-frame padding
# bugs (a 2000-sample delay is 125 ms at 16 kHz) with room to spare.
MAX_LAG_SECONDS = 0.5
# metrics.cross_correlation correlates at most this many evenly spaced blocks (a codec's lag is global).
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
    mel_distance_config: dict[str, Any] = field(default_factory=dict)
    # Correlation of the log-mels after removing each band's time average: does the time-frequency
    # *pattern* follow the input's? Two utterances share a long-term spectrum, not a pattern (~0.1).
    mel_pattern_correlation: float = 0.0
    # Chance level of `correlation`: its largest value with the estimate moved by a third and two
    # thirds of its length (unrelated to the reference), over the lag window (<= a quarter of it).
    correlation_chance: float = 0.0
    # Fractional part of the lag (interpolated correlation peak), in [-0.5, 0.5]; 0.0 below 0.02.
    lag_fraction_samples: float = 0.0
    snr_after_fractional_alignment_db: float = -math.inf
    # SNR with every correction but DC matching.
    snr_without_dc_db: float = -math.inf
    # The output's level where |ref| <= 0.5 x bound: a bounded output distorts the peaks, a gain
    # error scales everything.
    output_level_small_signal_db: float = -math.inf
    # Every correction, then each 0.25 s segment divided by its own output/input level ratio
    # (time-varying gain undone); and the output peak once that is done.
    snr_with_segment_levels_db: float = -math.inf
    est_peak_after_segment_levels: float = 0.0
    # R304 lag drift (drift.measure_lag_drift): per window [time_s, lag_samples, correlation,
    # counted]; the fitted change of the lag across the counted windows, as parts per million,
    # whether it moves one way only, and the SNR gained by aligning each window at its own lag.
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
    # With the hop unknown and lines found: the reference's pitch range (voiced frames' F0, 5th-95th
    # percentile) and the smallest m with m x the frame rate in it and the rate's other harmonics
    # below FRAME_LINE_MIN_DB (0: the lines are not the voice's own).
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

# The mel distance's configuration (metrics.spectral_summary's defaults).
MEL_DISTANCE_CONFIG = {"scales": "single", "window": "hann", "n_fft": "64 ms (1024 at 16 kHz)", "hop": "n_fft/4",
                       "n_mels": 64, "mel_scale": "htk", "mel_norm": "slaney", "fmin_hz": 0.0, "fmax_hz": "nyquist",
                       "magnitude": "linear (not power)", "log": "log10", "floor": 1e-5, "distance": "mean |diff|"}


def set_segment_levels(m: "PairMeasurements", levels: np.ndarray, input_levels: np.ndarray) -> None:
    """The per-segment level statistics from each active segment's output-vs-input and input
    levels (dB); shared with the whole-file reference."""
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
