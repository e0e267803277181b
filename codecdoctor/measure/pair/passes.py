"""The pair engine: `PairMeasurements` in two passes over blocks, memory flat in length.

* pass 1 (`pass_one`): per-side statistics, the unaligned pair sums, the loudest reference mel bin;
* the lag (`lag`): metrics.lag_and_peak's normalised cross-correlation, its chance level;
* pass 2 (`pass_two`, aligned): the aligned and per-segment sums, the STFT sums, segmental SNR;
* then the lag drift windows (R304), the frame-locking excerpt (R317) and the fractional
  alignment, each reading only what it needs.

Every what-if SNR is a quadratic form in those sums (`sums.Quadratic`): the error of `a*r - b*e -
c` is expanded, so no pass is needed per correction. tests/pair_reference.py computes each number
on whole arrays, the textbook way; tests/test_compare_stream.py holds the engine to it.
"""
from __future__ import annotations

import math
from typing import Any

from codecdoctor.measure import metrics as M
from codecdoctor.measure.bound import infer_output_bound
from codecdoctor.measure.pair.chunks import ChunkEnergies
from codecdoctor.measure.pair.corrections import (
    fractional_alignment_snr,
    set_segment_levels_from_sums,
    set_what_if,
    si_sdr_from_sums,
    small_signal_level_db,
)
from codecdoctor.measure.pair.drift import measure_lag_drift
from codecdoctor.measure.pair.frames import frame_locking_excerpt
from codecdoctor.measure.pair.lag import Correlator, LagPeak, correlation_chance, estimate_lag
from codecdoctor.measure.pair.measurements import MAX_LAG_SECONDS, SEGMENT_SECONDS, WHAT_IF_KEYS, PairMeasurements
from codecdoctor.measure.pair.pass_one import PassOneResult, pass_one
from codecdoctor.measure.pair.pass_two import AlignedSums, UnalignedSpectra, mel_frame_stride, read_pass_two
from codecdoctor.measure.pair.sources import AlignedView, ArraySource, FlatView, SignalSource
from codecdoctor.measure.pair.stft_sums import LONG_PAIR_SECONDS, Stft
from codecdoctor.measure.pair.sums import Quadratic, scale_exponent

# Samples per block: a multiple of every STFT hop, big enough to amortise numpy's per-call cost,
# small enough that a block's STFT stays in tens of MB.
BLOCK_SAMPLES = 1 << 18


def measure_pair_stream(ref: SignalSource, est: SignalSource, sample_rate: int, *, subject: str | None = None,
                        output_bound: float | None = None, max_lag_samples: int | None = None,
                        hop_samples: int | None = None, block_samples: int = BLOCK_SAMPLES,
                        chunks: ChunkEnergies | None = None) -> PairMeasurements:
    """Measure a pair read from two sources of the same channel count (compare downmixes both).
    `chunks`, when given, receives each chunk's (reference, error) energy (R313)."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    stft = Stft(sample_rate)
    block = max(stft.hop, int(block_samples) // stft.hop * stft.hop)
    for _attempt in range(3):  # a file found truncated in pass 1 changes the lengths: measure again
        lengths = (ref.frames, est.frames)
        if chunks is not None:
            chunks.signal.clear()
            chunks.error.clear()
        m, first = pass_one(ref, est, sample_rate, subject, output_bound, stft, block, chunks)
        if (ref.frames, est.frames) == lengths:
            break
    if first is None:
        return m
    pass_two(ref, est, m, first, output_bound, max_lag_samples, stft, block, hop_samples)
    return m


def measure_lag(m: PairMeasurements, full_r: FlatView, full_e: FlatView, first: PassOneResult,
                max_lag_samples: int | None) -> LagPeak:
    """The lag on the full signals (metrics.lag_and_peak), its chance level and polarity, into m."""
    sr = m.sample_rate
    max_lag = int(max_lag_samples if max_lag_samples is not None else round(MAX_LAG_SECONDS * sr))
    side_r, side_e = first.side_r, first.side_e
    correlator = Correlator(full_r, side_r.mean(), side_e.mean(), (side_r.peak, side_e.peak))
    found = estimate_lag(correlator, full_e, max_lag)
    m.lag_samples, m.correlation, m.lag_fraction_samples = found.lag, found.correlation, found.fraction
    m.correlation_chance = correlation_chance(correlator, full_e, max_lag)
    m.lag_ms = 1000.0 * found.lag / sr
    m.polarity = 0 if abs(found.correlation) < 0.1 else (1 if found.correlation > 0 else -1)
    return found


def pair_output_bound(m: PairMeasurements, output_bound: float | None) -> float | None:
    """The output bound (measure.bound.infer_output_bound): the one given, else 1.0 when the output
    never exceeds 1.0 while the input does (R307; from pass 1's peaks)."""
    peak = m.est_peak if m.ref_peak > 1.0 and m.est_peak > 0.0 else None
    found = infer_output_bound(given=output_bound, peak=peak)
    bound = found.value if found is not None else None
    m.output_bound_inferred = output_bound is None and bound is not None
    if bound is not None and bound > 0:
        m.output_bound = float(bound)
    return bound


def pass_two(ref: SignalSource, est: SignalSource, m: PairMeasurements, first: PassOneResult,
             output_bound: float | None, max_lag_samples: int | None, stft: Stft, block: int,
             hop_samples: int | None) -> None:
    """The lag, pass 2's sums, and every measurement read from them, into m."""
    sample_rate, compared = m.sample_rate, m.compared_samples
    n = min(ref.frames, est.frames)
    full_r, full_e = FlatView(ref, ref.frames), FlatView(est, est.frames)
    crop_r, crop_e = FlatView(ref, n), FlatView(est, n)
    found = measure_lag(m, full_r, full_e, first, max_lag_samples)
    lag = found.lag
    offset_r, offset_e = (0, lag) if lag > 0 else (-lag, 0)
    aligned = max(0, min(full_r.length - offset_r, full_e.length - offset_e))
    # the output bound is inferred from the peaks (pass 1); the small-signal level needs it here
    bound = pair_output_bound(m, output_bound)
    small_limit = 0.5 * (m.output_bound or 1.0)
    # the files' peaks (pass 1) bound every block: one scale exponent for the whole pair
    files_peak = max(first.side_r.peak, first.side_e.peak)
    exponent = scale_exponent(peak=files_peak)
    segment = max(1, round(SEGMENT_SECONDS * sample_rate))
    sums = AlignedSums(aligned, segment, small_limit, m.ref_peak <= small_limit, exponent,
                       None if exponent else files_peak)
    stride = mel_frame_stride(compared, sample_rate, stft.hop)
    if stride > 1:
        m.notes.append(f"mel distance, mel correlations and bandwidth from every {stride}th STFT frame "
                       f"(pair longer than {LONG_PAIR_SECONDS / 60:g} min)")
    spectra = UnalignedSpectra(stft, block, compared, first, exponent, stride)
    if first.side_r.nonfinite == 0 and first.side_e.nonfinite == 0:  # pass 1 found none: no need to look again
        for view in (full_r, full_e, crop_r, crop_e):
            view.zero_nonfinite = False
    read_pass_two(full_r, full_e, crop_r, crop_e, ref.channels, lag, aligned, block, stft.n_fft - stft.hop,
                  sums, spectra)
    silent_pair = max(first.crop_peak) == 0.0
    q = first.q
    m.si_snr_db = si_sdr_from_sums(q, True, silent_pair)
    m.si_sdr_db = si_sdr_from_sums(q, False, silent_pair)
    m.seg_snr_db = spectra.seg_snr_db(silent_pair, q.raw_error)
    m.mel_distance = spectra.mel.distance()
    m.mel_correlation = spectra.mel.correlation()
    m.mel_pattern_correlation = spectra.mel.pattern_correlation()
    qa = Quadratic(sums.sums, aligned)
    g_aligned, level = set_what_if(m, q, qa, aligned, silent_pair)
    sign = -1.0 if g_aligned < 0 else 1.0
    per_segment, tail = sums.per_segment()
    set_segment_levels_from_sums(m, qa, per_segment, tail, sign, level, segment, aligned, sums.sums.exponent or 0)
    if sums.small_count >= 16:
        m.output_level_small_signal_db = small_signal_level_db(Quadratic(sums.small, sums.small_count), qa, sign)
    aligned_ref, aligned_est = AlignedView(full_r, offset_r, aligned), AlignedView(full_e, offset_e, aligned)
    if found.fraction != 0.0 and aligned > 2 * M.SINC_HALF_TAPS:
        m.snr_after_fractional_alignment_db = fractional_alignment_snr(aligned_ref, aligned_est, qa, -found.fraction,
                                                                       block)
    else:
        m.snr_after_fractional_alignment_db = m.what_if["all"]
    measure_lag_drift(m, full_r.read, full_e.read, full_r.length, full_e.length)
    frame_locking_excerpt(m, aligned_ref, aligned_est, qa, g_aligned, hop_samples, sample_rate)
    _finish(m, first, bound, spectra)


def _finish(m: PairMeasurements, first: PassOneResult, bound: float | None, spectra: UnalignedSpectra) -> None:
    """The bound's SNR ceiling (R307), the silent-reference sentinels and the band transfer."""
    if bound is not None and bound > 0 and bound == first.bound_for_ceiling:
        m.ref_beyond_bound_samples = first.side_r.beyond_bound
        if m.ref_beyond_bound_samples:
            m.bound_ceiling_db = M.energy_ratio_db(first.side_r.sums["square"], first.side_r.sums["clip_error"])
    if m.ref_silent:
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        m.notes.append("reference is silent: SNR and the what-if table are undefined (-inf)")
    bands = spectra.mel.band_transfer(m.sample_rate, *first.crop_peak)
    m.ref_bandwidth_hz = bands["ref_bandwidth_hz"]
    m.est_bandwidth_hz = bands["est_bandwidth_hz"]
    m.lost_band_energy_fraction = bands["lost_energy_fraction"]


def measure_pair(ref: Any, est: Any, sample_rate: int, *, subject: str | None = None,
                 output_bound: float | None = None, max_lag_samples: int | None = None,
                 hop_samples: int | None = None) -> PairMeasurements:
    """Measure one (ref, est) pair of arrays: the engine over two array sources. `output_bound`:
    the decoder's bound when known (else inferred from the peaks, R307); `hop_samples`: the codec's
    frame hop if known (R317 searches otherwise). Leading axes are joined end to end; signals whose
    leading shapes differ (stereo against mono) are each pooled into one signal first."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    r, e = M.as_signal(ref), M.as_signal(est)
    r, e = (x.reshape(1) if x.ndim == 0 else x for x in (r, e))
    lengths = (int(r.shape[-1]), int(e.shape[-1]))
    if r.shape[:-1] != e.shape[:-1]:
        r, e = r.reshape(-1), e.reshape(-1)
    m = measure_pair_stream(ArraySource(r, sample_rate), ArraySource(e, sample_rate), sample_rate, subject=subject,
                            output_bound=output_bound, max_lag_samples=max_lag_samples, hop_samples=hop_samples)
    m.ref_samples, m.est_samples = lengths
    return m
