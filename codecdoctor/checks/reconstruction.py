"""R3xx: differential diagnosis of a reconstruction (reference vs estimate).

Pair checks (level "pair") read a `PairMeasurements`; set checks (level "set") read a
`ChunkSetMeasurements`. The decisive numbers are differential: "SNR with every fix" against "SNR
with every fix but this one". A fix that recovers at least 3 dB (half of the remaining error
energy) is a cause, not noise in the estimate. Thresholds are stated, with their reasoning, in each
check's What: paragraph.
"""
from __future__ import annotations

import math

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.pair import ChunkSetMeasurements, PairMeasurements

# A fix that removes at least half of the remaining error energy raises SNR by >= 3.01 dB.
CAUSE_GAIN_DB = 3.0


def _pair(m) -> PairMeasurements:
    if not isinstance(m, PairMeasurements):
        raise NotApplicable
    return m


def _scored_pair(m) -> PairMeasurements:
    """A pair whose reference carries signal and that has samples in common."""
    m = _pair(m)
    if m.ref_silent or m.compared_samples == 0:
        raise NotApplicable
    return m


def _db(value: float) -> str:
    if value == math.inf:
        return "+inf dB"
    if value == -math.inf:
        return "-inf dB"
    if value > 150.0:
        # Beyond ~150 dB the residual is float64 rounding of an exact copy.
        return f"{value:.0f} dB (exact)"
    return f"{value:.2f} dB"


def _what_if(m: PairMeasurements) -> dict[str, float]:
    return {f"snr_{key}_db": m.what_if.get(key, -math.inf) for key in ("raw", "gain", "aligned", "polarity", "all")}


def _gain_db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


@check("R300", scope="reconstruction", severity=Severity.INFO, level="pair")
def summary(m):
    """Reconstruction summary: SNR, SI-SNR, segmental SNR, mel distance and the what-if table.

    What: Always reported for a scored pair. SNR over total power 10*log10(sum ref^2 / sum (ref -
    est)^2); SI-SNR (zero-mean, scale-invariant); segmental SNR (20 ms frames, each clamped to
    [-10, 35] dB, silent frames skipped); L1 distance of log10 mel spectrograms (1.0 = 20 dB apart
    everywhere). The what-if table gives the SNR after the best non-negative gain, after time
    alignment, after a polarity flip, and after all of them.
    Why: One number hides the cause; the four metrics and the what-if columns disagree in
    characteristic ways (SI-SNR high but SNR low = scale; "aligned" high = delay; "all" low but mel
    distance small = phase) that the other R3xx checks turn into a named cause.
    Fix: Read the findings above this one; if there are none, the output is just noisy: train longer
    or raise the bitrate.
    """
    m = _scored_pair(m)
    w = m.what_if
    message = (f"SNR {_db(m.snr_db)}, SI-SNR {_db(m.si_snr_db)}, segmental SNR {_db(m.seg_snr_db)}, "
               f"mel distance {m.mel_distance:.3f}; what-if SNR: raw {_db(w['raw'])}, gain {_db(w['gain'])}, "
               f"aligned {_db(w['aligned'])}, polarity {_db(w['polarity'])}, all {_db(w['all'])}")
    return [finding("R300", message, subject=m.subject,
                    evidence={"snr_db": m.snr_db, "si_snr_db": m.si_snr_db, "seg_snr_db": m.seg_snr_db,
                              "mel_distance": m.mel_distance, **_what_if(m)},
                    cause="Summary of the measured reconstruction quality.", fix="")]


@check("R301", scope="reconstruction", severity=Severity.ERROR, level="pair")
def negative_snr(m):
    """Negative SNR: the error carries more energy than the reference.

    What: Fires when SNR over total power is below 0 dB. 0 dB is what an all-zero output scores, so a
    negative SNR means the output is worse than silence. This is the symptom; the findings listed
    above it name the cause when one of the corrections (gain, alignment, polarity, DC) recovers it.
    Why: A negative validation SNR is how broken scale, delay or polarity show up in training logs;
    guessing at the cause (normalisation, tanh on/off) wastes runs when the what-if table measures it.
    Fix: Fix the cause named above; the what-if columns say how much SNR each fix returns.
    """
    m = _scored_pair(m)
    if not m.snr_db < 0.0:
        return []
    energy_ratio = 10.0 ** (-m.snr_db / 10.0) if math.isfinite(m.snr_db) else math.inf
    message = (f"SNR is {_db(m.snr_db)}: the error has {energy_ratio:.3g}x the reference's energy "
               f"(an all-zero output would score 0 dB); with every correction the SNR would be {_db(m.what_if['all'])}.")
    return [finding("R301", message, subject=m.subject, evidence={"snr_db": m.snr_db, **_what_if(m)})]


@check("R302", scope="reconstruction", severity=Severity.ERROR, level="pair")
def gain_mismatch(m):
    """Gain or scale mismatch: the output's level does not follow the input's.

    What: Three ways. (1) Global: the output level (regression slope of est on ref, after alignment)
    is more than 1 dB off AND dividing it out raises the SNR by at least 3 dB (removes half of the
    error energy). A 1 dB gain error alone caps SNR at 19.3 dB, so beyond it scale dominates any
    decent codec's error. (2) Scale destroyed: across 0.25 s segments within 30 dB of the loudest
    whose input levels span at least 6 dB, the output level follows the input level at less than
    0.5 dB per dB (a straight-line fit of output dB on input dB; 1 dB/dB when the output follows the
    input, ~0 when every segment comes out at one level) and the output/input ratio varies with a
    standard deviation above 2 dB (a 2 dB level error alone caps SNR near 13.7 dB), while the output
    still follows the input's waveform (|correlation| >= 0.5). This is the signature of
    per-sample/per-chunk normalisation. A partly trained codec also reproduces quiet syllables a few
    dB too quietly (ratio std of 3 dB measured at 9 dB SNR) but its slope stays near 1, so the slope,
    not the spread alone, separates the two. (3) Time-varying gain (an AGC, a gain riding over
    seconds): the per-segment ratio varies by more than 2 dB (std) and dividing each segment by its
    own ratio raises the SNR by at least 3 dB over one global gain. The ratio <r,e>/<r,r> is
    unbiased by added noise, so on a noisy but steady output this correction gains nothing.
    When the input is beyond the output's bound (R307) or the output runs away (R306) and the level
    where the input is within half of full scale is within 1 dB, the mismatch is theirs: this
    finding then says it is explained by them and ranks below them.
    Why: SNR is not scale-invariant: an output at 0.1x scores 0.92 dB, at 10x -19 dB, though SI-SDR
    calls both perfect. Normalising each training chunk to unit peak teaches the model outputs whose
    level has nothing to do with the input's; an AGC in the pipeline rides the level over seconds.
    Fix: Do not normalise per sample or per chunk (or store the gain and undo it after decoding);
    normalise the corpus once with one gain, remove any AGC / loudness normaliser from the decode
    path, and compare levels after decoding.
    """
    m = _scored_pair(m)
    if m.est_silent or abs(m.correlation) < 0.5:
        return []
    global_cost_db = m.snr_with_level_fixed_db - m.snr_without_gain_db
    level_off = math.isfinite(m.output_level_db) and abs(m.output_level_db) > 1.0
    global_mismatch = level_off and global_cost_db >= CAUSE_GAIN_DB
    scale_destroyed = (m.active_segments >= 4 and m.segment_input_span_db >= 6.0
                       and m.segment_level_slope < 0.5 and m.segment_level_spread_db > 2.0)
    time_varying = _time_varying_gain(m)
    if not (global_mismatch or scale_destroyed or time_varying):
        return []
    parts = []
    if global_mismatch or level_off:
        parts.append(f"the output is {m.output_level_db:+.2f} dB relative to the input (x{10 ** (m.output_level_db / 20):.3g}); "
                     f"the optimal gain {m.gain:.4g} ({_gain_db(m.gain):+.2f} dB) raises SNR from {_db(m.what_if['raw'])} "
                     f"to {_db(m.what_if['gain'])} (with alignment: {_db(m.what_if['all'])})")
    if scale_destroyed:
        parts.append(f"across {m.active_segments} segments of 0.25 s whose input level spans "
                     f"{m.segment_input_span_db:.1f} dB, the output level moves {m.segment_level_slope:.2f} dB per "
                     f"input dB and the output/input ratio varies by {m.segment_level_spread_db:.2f} dB (std; from "
                     f"{m.segment_level_min_db:+.1f} to {m.segment_level_max_db:+.1f} dB): the output's scale does "
                     f"not follow the input's")
    elif time_varying:
        parts.append(f"the gain varies over time: across {m.active_segments} segments of 0.25 s the output/input "
                     f"ratio moves from {m.segment_level_min_db:+.1f} to {m.segment_level_max_db:+.1f} dB (std "
                     f"{m.segment_level_spread_db:.2f} dB); undoing each segment's gain raises SNR from "
                     f"{_db(m.snr_with_level_fixed_db)} (one global gain) to {_db(m.snr_with_segment_levels_db)}")
    message = "; ".join(parts) + "."
    return [finding("R302", message[0].upper() + message[1:], subject=m.subject,
                    evidence={"gain": m.gain, "gain_db": _gain_db(m.gain), "output_level_db": m.output_level_db,
                              "output_level_small_signal_db": m.output_level_small_signal_db,
                              "segment_level_spread_db": m.segment_level_spread_db,
                              "segment_level_slope": m.segment_level_slope,
                              "time_varying": int(time_varying and not scale_destroyed),
                              "snr_with_segment_levels_db": m.snr_with_segment_levels_db,
                              "snr_after_gain_db": m.what_if["gain"], **_what_if(m)})]


def _time_varying_gain(m: PairMeasurements) -> bool:
    """R302 (3): per-segment ratio spread above 2 dB and undoing it gains at least 3 dB."""
    return (m.active_segments >= 4 and m.segment_level_spread_db > 2.0
            and m.snr_with_segment_levels_db - m.snr_with_level_fixed_db >= CAUSE_GAIN_DB)


@check("R303", scope="reconstruction", severity=Severity.ERROR, level="pair")
def polarity_inverted(m):
    """Polarity inverted: the output is an upside-down copy of the input.

    What: Fires when the correlation at the best lag is -0.5 or below (the output clearly follows
    the input, with the sign flipped) and flipping the sign raises the SNR by at least 3 dB. A
    perfect but inverted copy scores -6.02 dB SNR while SI-SDR (whose optimal scale may be negative)
    calls it perfect.
    Why: A sign flip in the decoder's last layer, a negated loss target, or swapped differential
    wiring halves nothing and doubles the error: every sample is wrong by twice its value.
    Fix: Multiply the output by -1 (or find the negation: target = -x, a final layer initialised or
    constrained negative); check with an asymmetric test pulse.
    """
    m = _scored_pair(m)
    if m.est_silent or m.correlation > -0.5:
        return []
    recovered_db = m.what_if["all"] - m.snr_without_polarity_db
    if not recovered_db >= CAUSE_GAIN_DB:
        return []
    message = (f"Correlation at the best lag is {m.correlation:.3f}: the output is inverted. Plain SNR "
               f"{_db(m.what_if['raw'])}; after flipping the sign {_db(m.what_if['polarity'])}; "
               f"SI-SDR {_db(m.si_sdr_db)} is blind to the flip.")
    return [finding("R303", message, subject=m.subject,
                    evidence={"correlation": m.correlation, "snr_after_polarity_db": m.what_if["polarity"], **_what_if(m)})]


@check("R304", scope="reconstruction", severity=Severity.ERROR, level="pair")
def time_offset(m):
    """Time offset: the output is delayed or advanced relative to the input.

    What: The lag is the peak of |normalised cross-correlation| within +-0.5 s (FFT, bounded
    window), refined between samples by windowed-sinc interpolation of the correlation (the
    correlation of band-limited signals is band-limited) and undone with a windowed-sinc
    fractional delay. Fires when the lag is not 0 and aligning raises the SNR (with every other
    correction applied) by at least 3 dB: the delay is then at least half of the error. Fractions
    under 0.02 samples are taken as 0: the error of a delay grows with its square, so 0.02 samples
    costs 34 dB less than one sample and caps SNR above 40 dB. Even a
    fraction of a sample costs a lot: on 16 kHz speech half a sample caps SNR near 13-17 dB, one
    sample near 8-20 dB, 7 samples near 4 dB.
    Also fires when the delay drifts: the lag measured again in up to 8 windows of 0.5 s spread
    over the pair (within +-50 ms of the global lag, on a pair over 8.3 minutes within a reach that
    follows a 200 ppm drift (two clocks each 100 ppm off) from the middle to the ends, at most
    +-0.5 s; a window counts when its peak |correlation| reaches 0.5) changes by at least one
    sample along a least-squares line from the first window to the last; it moves one way only (no
    window more than a sample back) with one sign of correlation, one window aside (the one that
    straddles a point where samples were dropped peaks between the two lags); and aligning each
    window at its own lag (optimal gain per window) raises the SNR by at least 3 dB over the global
    lag. A drift of one sample costs at the ends what one sample of delay costs, and the 3 dB gate
    means the drift is at least half of the error. One way and one sign, because a dispersive
    output (an all-pass-like phase response) also moves each window's peak, by that window's
    content, back and forth and flipping sign near its resonance: all-pass filters at 300 Hz and 1
    kHz on Telugu and synthetic speech moved the peaks by up to 25 samples and gained up to 2.4 dB.
    The slope is reported as a clock-rate error in ppm.
    Why: Codecs with strided convolutions, look-ahead or padding emit audio shifted by a fixed number
    of samples (a fraction of one after resampling or a transposed convolution's phase); SNR against
    the unshifted input then measures the shift, not the codec. An SNR that goes negative can be
    nothing but a delay. A delay that grows or shrinks over the file is a rate mismatch (a
    resampler set to 16001 Hz, 44.1 vs 44 kHz: 100 ppm is 1.6 samples per second at 16 kHz) or a
    streaming decoder that drops or repeats samples at chunk boundaries; one global alignment
    cannot undo it, and by the end of a long file the waveform looks unrelated.
    Fix: Trim the output by the lag (or pad the input) before computing losses/metrics; make the
    encoder/decoder padding symmetric ("same" padding, causal padding undone at the output); for a
    fractional lag check the resampler and the upsampling layers' padding. For a drift, check both
    sides' sample rates and the resampling ratio, and the overlap-add / chunking of a streaming
    decoder (output length = input length, chunk after chunk).
    """
    m = _scored_pair(m)
    if m.est_silent:
        return []
    aligned_db = max(m.what_if["all"], m.snr_after_fractional_alignment_db)
    recovered_db = aligned_db - m.snr_without_alignment_db
    offset = (m.lag_samples != 0 or m.lag_fraction_samples != 0.0) and recovered_db >= CAUSE_GAIN_DB
    drifting = lag_drifts(m)
    if not (offset or drifting):
        return []
    lag = m.lag_samples + m.lag_fraction_samples
    evidence = {"lag_samples": m.lag_samples, "lag_fraction_samples": m.lag_fraction_samples,
                "lag_ms": 1000.0 * lag / m.sample_rate, "correlation": m.correlation,
                "snr_after_alignment_db": m.what_if["aligned"],
                "snr_after_fractional_alignment_db": m.snr_after_fractional_alignment_db, **_what_if(m)}
    parts = []
    if offset:
        direction = "late (delayed)" if lag > 0 else "early (advanced)"
        amount = f"{abs(lag):.2f}" if m.lag_fraction_samples else f"{abs(m.lag_samples)}"
        parts.append(f"The output is {amount} samples ({1000.0 * abs(lag) / m.sample_rate:.2f} ms) {direction}: "
                     f"correlation {m.correlation:.3f} at lag {m.lag_samples:+d}. SNR raw {_db(m.what_if['raw'])}, "
                     f"after alignment {_db(m.what_if['aligned'])}, after all corrections {_db(aligned_db)}.")
    if drifting:
        counted = [w for w in m.lag_by_window if w[3]]
        first, last = counted[0], counted[-1]
        parts.append(f"The delay drifts by {m.lag_drift_samples:+.2f} samples over the pair ({m.lag_drift_ppm:+.1f} ppm "
                     f"of clock rate): {first[1]:+.2f} samples at {first[0]:.1f} s, {last[1]:+.2f} at {last[0]:.1f} s "
                     f"({len(counted)} windows). One global alignment cannot undo it: aligning each window at its own "
                     f"lag gains {_db(m.snr_gain_local_lags_db)}.")
        evidence.update({"lag_drift_samples": m.lag_drift_samples, "lag_drift_ppm": m.lag_drift_ppm,
                         "lag_drift_monotone": m.lag_drift_monotone,
                         "snr_gain_local_lags_db": m.snr_gain_local_lags_db,
                         # the counted windows, rounded (every window in full: the pair's lag_by_window)
                         "window_times_s": [round(w[0], 2) for w in counted],
                         "window_lags_samples": [round(w[1], 2) for w in counted]})
    return [finding("R304", " ".join(parts), subject=m.subject, evidence=evidence)]


def lag_drifts(m: PairMeasurements) -> bool:
    """R304's drift condition (see its doc): the lag moves by a sample or more across the pair and
    aligning window by window recovers at least half of the error."""
    return abs(m.lag_drift_samples) >= 1.0 and m.lag_drift_monotone and m.snr_gain_local_lags_db >= CAUSE_GAIN_DB


@check("R305", scope="reconstruction", severity=Severity.ERROR, level="pair")
def output_silent(m):
    """Output silent or collapsed.

    What: Fires when the output is constant (all zeros or a single value) or its RMS is below -100
    dBFS, or when it is more than 40 dB quieter than the input AND follows it only weakly
    (|correlation| < 0.5; a quiet but faithful output is a gain problem, R302). 40 dB below means
    the output carries 0.01% of the input's energy.
    Why: A collapsed decoder (dead ReLUs, a vanished final layer, a mask that zeroes everything)
    scores exactly 0 dB SNR: a flat 0 dB validation SNR is this, not a learning-rate problem.
    Fix: Check the decoder's last layers for dead activations or zero weights, the loss for a term
    that rewards silence, and the data loader for all-zero targets.
    """
    m = _scored_pair(m)
    collapsed = m.est_silent
    quiet = (m.est_rms_db - m.ref_rms_db) < -40.0 and abs(m.correlation) < 0.5
    if not (collapsed or quiet):
        return []
    if m.est_peak == 0.0:
        what = "the output is all zeros"
    elif m.est_max == m.est_min:
        what = f"the output is constant at {m.est_max:.6g}"
    else:
        what = f"the output RMS is {m.est_rms_db:.1f} dBFS, {m.ref_rms_db - m.est_rms_db:.1f} dB below the input's"
    message = f"{what[0].upper() + what[1:]} (input RMS {m.ref_rms_db:.1f} dBFS); SNR {_db(m.snr_db)}."
    return [finding("R305", message, subject=m.subject,
                    evidence={"est_rms_db": m.est_rms_db, "ref_rms_db": m.ref_rms_db, "est_peak": m.est_peak,
                              "snr_db": m.snr_db})]


@check("R306", scope="reconstruction", severity=Severity.ERROR, level="pair")
def output_exceeds_range(m):
    """Output range exceeds the input range (unbounded decoder).

    What: Fires when the output peak exceeds both the input peak and full scale 1.0 by more than 1 dB
    (x1.122). Warning when it is just a scaled copy (see R302): the output level is more than 1 dB
    off and either the SNR after all corrections reaches 10 dB or dividing the output by its level
    brings its peak within 1 dB of the input's. Error otherwise: the output has excursions of its
    own, as an unbounded decoder produces.
    Why: Without a final tanh/clamp the decoder can emit any value; excursions far beyond the input
    dominate the squared error (one sample at 30 costs as much as a second of speech at 0.1 RMS) and
    clip when written to PCM.
    When the gain rides over time (R302) and undoing each segment's gain brings the output's peak
    within 1 dB of max(input peak, 1.0), the excursions are the gain's: R302 explains this finding.
    When the output is right where the input is within half of full scale (within 1 dB) or its
    excursions are its own, this finding explains R302's level mismatch.
    Fix: Bound the output (tanh or clamp) only if the data never exceeds the bound (see R307/D103);
    otherwise keep it unbounded and find what blows up (learning rate, loss scale, a missing norm).
    """
    m = _scored_pair(m)
    limit = max(m.ref_peak, 1.0) * 10.0 ** (1.0 / 20.0)
    if not m.est_peak > limit:
        return []
    level = 10.0 ** (m.output_level_db / 20.0) if math.isfinite(m.output_level_db) else 0.0
    # a scaled copy: undoing the output's level brings its peak back within 1 dB of the input's
    peak_after_level_db = (20.0 * math.log10(m.est_peak / (level * m.ref_peak))
                           if level > 0.0 and m.ref_peak > 0.0 else math.inf)
    explained_by_gain = abs(m.output_level_db) > 1.0 and (m.what_if["all"] >= 10.0 or peak_after_level_db <= 1.0)
    excess_db = 20.0 * math.log10(m.est_peak / max(m.ref_peak, 1.0))
    message = (f"Output peak {m.est_peak:.4g} ({excess_db:+.1f} dB over max(input peak {m.ref_peak:.4g}, 1.0)); "
               f"output range [{m.est_min:.4g}, {m.est_max:.4g}] vs input [{m.ref_min:.4g}, {m.ref_max:.4g}]. "
               + ("A global gain explains it (SNR after all corrections "
                  f"{_db(m.what_if['all'])})." if explained_by_gain else
                  f"A global gain does not explain it (SNR after all corrections {_db(m.what_if['all'])}): "
                  "the output has excursions of its own."))
    return [finding("R306", message, subject=m.subject,
                    severity=Severity.WARNING if explained_by_gain else Severity.ERROR,
                    evidence={"est_peak": m.est_peak, "ref_peak": m.ref_peak, "excess_db": excess_db,
                              "snr_after_all_db": m.what_if["all"]})]


@check("R307", scope="reconstruction", severity=Severity.WARNING, level="pair")
def bounded_ceiling(m):
    """Bounded-output ceiling: the input goes beyond what the output can reach.

    What: With the decoder's output bound b (given, e.g. 1.0 for tanh; or inferred as 1.0 when the
    output never exceeds 1.0 while the input does), counts input samples with |x| > b and computes
    the best SNR any output limited to +-b can reach: 10*log10(sum x^2 / sum (x - clip(x, -b, b))^2).
    Warning whenever input exceeds the bound; error when that ceiling is below 10 dB. When the
    output's level is right (within 1 dB) where the input is within half of the bound but off
    overall, the bound explains R302's level mismatch: this finding ranks above it and takes its
    severity.
    Why: A tanh can never produce 1.01; training pushes its pre-activation towards infinity for those
    samples (saturated gradients), and the metric can never reach the data. Data that peaks at 1.01
    with a tanh decoder is the saga's last guess.
    Fix: Scale the data into the bound once for the whole corpus (e.g. peak-normalise to 0.95), or
    drop the bound and clip only when writing PCM.
    """
    m = _scored_pair(m)
    if m.output_bound is None or m.ref_beyond_bound_samples == 0:
        return []
    how = "inferred: the output never exceeds 1.0" if m.output_bound_inferred else "given"
    fraction = m.ref_beyond_bound_samples / max(m.ref_samples, 1)
    message = (f"{m.ref_beyond_bound_samples} input samples ({100 * fraction:.3g}%) exceed the output bound "
               f"+-{m.output_bound:g} ({how}); input peak {m.ref_peak:.4g}, output peak {m.est_peak:.4g}. "
               f"No output within the bound can score above {_db(m.bound_ceiling_db)} SNR on this input.")
    return [finding("R307", message, subject=m.subject,
                    severity=Severity.ERROR if m.bound_ceiling_db < 10.0 else Severity.WARNING,
                    evidence={"ceiling_db": m.bound_ceiling_db, "output_bound": m.output_bound,
                              "ref_peak": m.ref_peak, "samples_beyond_bound": m.ref_beyond_bound_samples})]


@check("R308", scope="reconstruction", severity=Severity.WARNING, level="pair")
def dc_in_output(m):
    """DC offset in the output.

    What: Compares the SNR after removing each signal's mean with the raw SNR. Warning when removing
    DC gains at least 1 dB (the DC difference is over a fifth of the error energy); error when it
    gains at least 3 dB (DC is at least half of the error).
    Why: A constant offset is pure error energy that the decoder's last bias or an un-centred
    target adds; it also wastes headroom and thumps on playback.
    Fix: Remove DC from the data (high-pass at ~20 Hz), check the final layer's bias, or add a
    DC-blocking filter after decoding.
    """
    m = _scored_pair(m)
    if m.est_silent:
        return []
    recovered_db = m.snr_after_dc_removal_db - m.snr_db
    if not recovered_db >= 1.0:
        return []
    message = (f"Output DC {m.est_dc:+.4g} vs input DC {m.ref_dc:+.4g} (difference {m.est_dc - m.ref_dc:+.4g}); "
               f"removing DC raises SNR from {_db(m.snr_db)} to {_db(m.snr_after_dc_removal_db)}.")
    return [finding("R308", message, subject=m.subject,
                    severity=Severity.ERROR if recovered_db >= CAUSE_GAIN_DB else Severity.WARNING,
                    evidence={"est_dc": m.est_dc, "ref_dc": m.ref_dc, "snr_after_dc_removal_db": m.snr_after_dc_removal_db})]


@check("R309", scope="reconstruction", severity=Severity.CRITICAL, level="pair")
def nonfinite_output(m):
    """Non-finite samples (NaN or Inf) in the output or the input.

    What: Counts NaN/Inf samples. Critical for any in the output; error for any in the input only.
    Every other number in this report is computed with those samples set to 0.
    Why: One NaN makes every metric and loss NaN; training then stops learning or the grad-scaler
    skips every step. A NaN output usually means the forward pass overflowed (fp16) or a weight is
    already NaN.
    Fix: Run check-ckpt for non-finite weights (C201), the train monitor for the first module that
    produced a non-finite output (T604); audit the data (D102) for a non-finite input.
    """
    m = _pair(m)
    if not (m.nonfinite_est or m.nonfinite_ref):
        return []
    message = (f"{m.nonfinite_est} non-finite output samples and {m.nonfinite_ref} non-finite input samples; "
               "the other measurements treat them as 0.")
    return [finding("R309", message, subject=m.subject,
                    severity=Severity.CRITICAL if m.nonfinite_est else Severity.ERROR,
                    evidence={"nonfinite_est": m.nonfinite_est, "nonfinite_ref": m.nonfinite_ref})]


@check("R310", scope="reconstruction", severity=Severity.WARNING, level="pair")
def length_mismatch(m):
    """Length mismatch between input and output.

    What: Fires when the output has a different number of samples than the input along the time
    axis. Metrics here use the common part from the start; a difference that is a whole number of
    codec frames points at padding in the encoder or trimming in the decoder.
    Why: Training code that crops or pads silently can shift targets (see R304) or score padding;
    evaluation code that zips arrays drops the tail.
    Fix: Pad the input to a multiple of the hop before encoding and trim the output to the input's
    length after decoding.
    """
    m = _pair(m)
    difference = m.est_samples - m.ref_samples
    if difference == 0:
        return []
    kind = "padded: longer" if difference > 0 else "trimmed: shorter"
    message = (f"Output has {m.est_samples} samples, input {m.ref_samples} ({kind} by {abs(difference)} samples, "
               f"{1000 * abs(difference) / m.sample_rate:.2f} ms); metrics use the first {m.compared_samples} samples.")
    return [finding("R310", message, subject=m.subject,
                    evidence={"ref_samples": m.ref_samples, "est_samples": m.est_samples, "difference_samples": difference})]


@check("R311", scope="reconstruction", severity=Severity.WARNING, level="pair")
def bandwidth_loss(m):
    """Bandwidth loss: the output stops at a frequency where the input still has content.

    What: Long-term spectra in 32 equal bands; the input's bandwidth is the highest band within 80 dB
    of its strongest; the output's is the highest such band where the output, level-normalised, is
    no more than 20 dB below the input (a removed band loses >99% of its energy; codec tilt errors
    are a few dB). Only when the output follows the input (|correlation| >= 0.5; otherwise a band
    comparison says nothing about a cutoff). Fires when the output's bandwidth is below 80% of the input's. Error when the
    energy above the cutoff caps the SNR below 10 dB.
    Why: A codec trained at 8 kHz fed 16 kHz audio, a resampler on the wrong rate, or a decoder
    that never learned the top octave shows as a brick wall; SNR barely notices (speech carries
    little energy up there) but listeners do.
    Fix: Check sample rates end to end (data, model config, resampling); check the loss covers the
    full band (mel filterbank fmax = Nyquist).
    """
    m = _scored_pair(m)
    if m.est_silent or abs(m.correlation) < 0.5 or m.ref_bandwidth_hz <= 0 or not m.est_bandwidth_hz < 0.8 * m.ref_bandwidth_hz:
        return []
    ceiling_db = -10.0 * math.log10(m.lost_band_energy_fraction) if m.lost_band_energy_fraction > 0 else math.inf
    message = (f"Output bandwidth {m.est_bandwidth_hz / 1000:.2f} kHz vs input {m.ref_bandwidth_hz / 1000:.2f} kHz "
               f"({100 * m.est_bandwidth_hz / m.ref_bandwidth_hz:.0f}%); the input carries "
               f"{100 * m.lost_band_energy_fraction:.3g}% of its energy above the cutoff (alone it caps SNR at "
               f"{_db(ceiling_db)}).")
    return [finding("R311", message, subject=m.subject,
                    severity=Severity.ERROR if ceiling_db < 10.0 else Severity.WARNING,
                    evidence={"est_bandwidth_hz": m.est_bandwidth_hz, "ref_bandwidth_hz": m.ref_bandwidth_hz,
                              "lost_band_energy_fraction": m.lost_band_energy_fraction, "band_ceiling_db": ceiling_db})]


@check("R312", scope="reconstruction", severity=Severity.ERROR, level="pair")
def phase_incoherent(m):
    """Phase-incoherent output: right spectrogram, wrong waveform.

    What: Fires when even after every correction the SNR stays at or below 3 dB (the output
    explains at most half of the input's energy: |correlation| <= 0.71) while the log-mel
    spectrograms correlate at 0.8 or more (the time-frequency energy pattern explains >= 64% of the
    input's; bins 60 dB below the loudest are floored) AND still correlate at 0.5 or more once each
    mel band's time average is removed (the pattern over time, not just the long-term spectrum,
    follows the input). Another utterance shares the long-term spectrum of speech (0.3-0.9 before
    removing it) but not its pattern (about 0.1 after), unrelated noise neither.
    Why: A decoder trained only on spectral (mel / STFT magnitude) or adversarial losses may
    reproduce how the audio sounds with arbitrary phase: it can sound fine and still score 0 dB or
    negative SNR. Then SNR is the wrong metric, or the waveform loss is missing. (A delay that
    drifts also leaves the spectrogram right and the waveform wrong: that is R304's drift, and this
    check then stays silent.)
    Fix: Add a waveform term (L1) or a complex-STFT loss if waveform fidelity matters; otherwise
    judge with mel distance / SI-SNR-free perceptual metrics.
    """
    m = _scored_pair(m)
    if m.est_silent or m.what_if["all"] > 3.0 or not _spectral_pattern_follows(m) or lag_drifts(m):
        return []
    message = (f"Log-mel spectrograms correlate at {m.mel_correlation:.3f} ({m.mel_pattern_correlation:.3f} with "
               f"each band's mean removed; mel distance {m.mel_distance:.3f}) "
               f"but the best waveform SNR after every correction is {_db(m.what_if['all'])} "
               f"(correlation {m.correlation:.3f}): the magnitudes are right, the phase is not.")
    return [finding("R312", message, subject=m.subject,
                    evidence={"mel_correlation": m.mel_correlation, "mel_pattern_correlation": m.mel_pattern_correlation,
                              "mel_distance": m.mel_distance,
                              "snr_after_all_db": m.what_if["all"], "correlation": m.correlation})]


def _spectral_pattern_follows(m: PairMeasurements) -> bool:
    return m.mel_correlation >= 0.8 and m.mel_pattern_correlation >= 0.5


@check("R313", scope="reconstruction", severity=Severity.WARNING, level="set")
def chunk_average_bias(m):
    """Metric bias: a mean of per-chunk dB dominated by silent chunks.

    What: Over a set of chunks (validation crops or files), compares the mean of per-chunk SNR in dB
    (eps = float32 epsilon, as training loops compute it) with the total-power SNR (all reference
    energy over all error energy). Fires when at least one chunk is silent (reference energy 40 dB
    below the median chunk) and the mean is at least 3 dB below the total. Error when the mean is
    negative while the total is not: the sign of the reported metric is an artefact.
    Why: A silent chunk's SNR is the codec's idle noise against nothing: -60 dB or worse, whatever
    the model. Averaging dB values lets a few of them outvote every good chunk: 9% silent chunks at
    -66 dB turn a 25 dB codec into 17 dB, and a 5 dB codec negative.
    Fix: Report total-power SNR over the set (sum the energies, then take the log), or drop chunks
    whose reference is silent before averaging, or clamp per-chunk SNR (segmental SNR style).
    """
    if not isinstance(m, ChunkSetMeasurements) or m.chunks == 0:
        raise NotApplicable
    bias_db = m.total_snr_db - m.mean_chunk_snr_db
    if m.silent_chunks == 0 or not bias_db >= CAUSE_GAIN_DB:
        return []
    message = (f"Mean of per-chunk SNR {_db(m.mean_chunk_snr_db)} vs total-power SNR {_db(m.total_snr_db)} over "
               f"{m.chunks} chunks: {m.silent_chunks} silent chunks ({100 * m.silent_fraction:.1f}%) pull the mean "
               f"down by {_db(bias_db)} (mean over non-silent chunks {_db(m.mean_active_chunk_snr_db)}).")
    flips_sign = m.mean_chunk_snr_db < 0.0 <= m.total_snr_db
    return [finding("R313", message, subject=m.subject, severity=Severity.ERROR if flips_sign else Severity.WARNING,
                    evidence={"mean_chunk_snr_db": m.mean_chunk_snr_db, "total_snr_db": m.total_snr_db,
                              "mean_active_chunk_snr_db": m.mean_active_chunk_snr_db,
                              "silent_chunks": m.silent_chunks, "chunks": m.chunks, "bias_db": bias_db})]


@check("R314", scope="reconstruction", severity=Severity.ERROR, level="pair")
def uncorrelated(m):
    """Output uncorrelated with the input: not learned, the wrong input, or mixed-up pairs.

    What: Fires when the waveforms are unrelated and the spectrogram pattern does not follow either
    (otherwise it is R312). Unrelated means the peak |normalised cross-correlation| within +-0.5 s
    is below 0.1 (the output explains under 1% of the input's energy even after gain, alignment
    and polarity), or it is below 0.5 and below twice its chance level. The chance level is
    measured on the pair itself: the peak |correlation| of the input with the output moved by a
    third and by two thirds of its length, which is unrelated to the input whatever the output is
    but keeps its spectrum and level envelope. Speech against other speech, or against itself
    played backwards, has a similar spectrum, so its peak correlation is not near 0 (0.05-0.3 on 3-9
    s of speech, high for strongly voiced speech) but it stays within 1.4x of its chance level,
    while a reconstruction at 0 dB SNR measured 5-22x; twice the chance level sits between.
    Why: An untrained or reinitialised decoder, a model evaluated on the wrong batch, shuffled
    ref/est pairing (another utterance), a reversed or wrongly seeked file, or a sample-rate
    mismatch that stretches the signal all give output with no relation to the input; no loss
    tweak helps until that is fixed.
    Fix: Check the pairing (file names, batch order, that the same file and offset are read for
    both), that the checkpoint's weights were loaded (strict=True), and the sample rate of both
    sides. (An output that follows the input window by window at a drifting delay is R304's
    drift, not this.)
    """
    m = _scored_pair(m)
    if m.est_silent or not _waveform_unrelated(m) or _spectral_pattern_follows(m) or lag_drifts(m):
        return []
    message = (f"Peak |correlation| within +-{m.sample_rate // 2} samples is {abs(m.correlation):.4f}, "
               f"chance level for this pair {m.correlation_chance:.4f}; log-mel correlation {m.mel_correlation:.3f} "
               f"({m.mel_pattern_correlation:.3f} with each band's mean removed); best SNR after every correction "
               f"{_db(m.what_if['all'])}: the output is unrelated to the input (another utterance, reversed, "
               f"noise, or not learned).")
    return [finding("R314", message, subject=m.subject,
                    evidence={"correlation": m.correlation, "correlation_chance": m.correlation_chance,
                              "mel_correlation": m.mel_correlation, "mel_pattern_correlation": m.mel_pattern_correlation,
                              "snr_after_all_db": m.what_if["all"]})]


def _waveform_unrelated(m: PairMeasurements) -> bool:
    c = abs(m.correlation)
    return c < 0.1 or (c < 0.5 and c < 2.0 * m.correlation_chance)


@check("R315", scope="reconstruction", severity=Severity.WARNING, level="pair")
def cannot_score(m):
    """The pair cannot be scored: silent or empty reference, unreadable or missing file.

    What: Fires when the reference is empty (error: the evaluation evaluates nothing), when nothing
    overlaps (an error when the output is empty but the input is not: the codec produced nothing),
    or when the reference's RMS is below -100
    dBFS (under the dithered 16-bit noise floor): SNR against it is undefined (division by zero) or
    measures only the output's idle noise. `compare` also uses this ID for a file that cannot be
    read and for a reference without a counterpart.
    Why: A silent or missing reference silently becomes -inf or NaN in averages (see R313) or is
    dropped without notice.
    Fix: Remove silent references from the evaluation set, or score them by the output's idle level
    instead of SNR; fix the pairing of files.
    """
    m = _pair(m)
    severity = None
    if m.compared_samples == 0:
        message = f"Nothing to compare: input has {m.ref_samples} samples, output {m.est_samples}."
        if m.ref_samples > 0 and m.est_samples == 0:
            # an empty output for a non-empty input is a failed reconstruction, not an unscorable pair
            message += " The codec produced no output at all."
            severity = Severity.ERROR
        elif m.ref_samples == 0:
            # an empty reference means the evaluation itself is broken (a failed export or read)
            message += " The reference is empty, so this pair evaluates nothing."
            severity = Severity.ERROR
    elif m.ref_silent:
        level = "all zeros" if m.ref_peak == 0 else f"RMS {m.ref_rms_db:.1f} dBFS"
        message = (f"The reference is silent ({level}): SNR is undefined; the output's RMS is "
                   f"{m.est_rms_db:.1f} dBFS, peak {m.est_peak:.4g}.")
    else:
        return []
    return [finding("R315", message, subject=m.subject, severity=severity,
                    evidence={"ref_rms_db": m.ref_rms_db, "est_rms_db": m.est_rms_db, "ref_samples": m.ref_samples,
                              "est_samples": m.est_samples})]


@check("R316", scope="reconstruction", severity=Severity.WARNING, level="file")
def channel_or_rate_mismatch(info):
    """Channel count or sample rate differs between reference and output files.

    What: Compares the two files' headers. A different sample rate is resampled to the reference's
    rate (error: the model ran at the wrong rate); a different channel count is compared as mono
    downmixes (warning).
    Why: A codec fed 48 kHz audio it was trained at 16 kHz for, or a stereo reference against a mono
    output, produces numbers that measure the mismatch, not the codec.
    Fix: Resample and downmix in the data pipeline to the model's configured rate and channels, and
    write the output at that rate.
    """
    if not isinstance(info, dict) or "ref_rate" not in info:
        raise NotApplicable
    findings = []
    if info["ref_rate"] != info["est_rate"]:
        findings.append(finding("R316", f"Sample rates differ: reference {info['ref_rate']} Hz, output {info['est_rate']} Hz; "
                                f"the output was resampled to {info['ref_rate']} Hz for comparison.",
                                subject=info.get("subject"), severity=Severity.ERROR,
                                evidence={"ref_rate": info["ref_rate"], "est_rate": info["est_rate"]}))
    if info["ref_channels"] != info["est_channels"]:
        findings.append(finding("R316", f"Channel counts differ: reference {info['ref_channels']}, output "
                                f"{info['est_channels']}; both were downmixed to mono for comparison.",
                                subject=info.get("subject"),
                                evidence={"ref_channels": info["ref_channels"], "est_channels": info["est_channels"]}))
    return findings


@check("R317", scope="reconstruction", severity=Severity.WARNING, level="pair")
def frame_rate_artifacts(m):
    """Frame-rate artifacts: residual energy concentrated at the hop rate and its harmonics.

    What: The residual (input minus the output after every correction) is squared, pooled to a 4
    kHz energy envelope and divided by its 50 ms moving average (speech's syllable-rate swings go,
    anything repeating every frame stays); its modulation spectrum (Welch, 1 s segments) is
    searched for lines at a frame rate and its harmonics. With the codec's hop given, that rate is
    used; otherwise every integer hop with a frame rate from 10 to 200 Hz is tried (EnCodec 75 Hz,
    DAC 86 Hz, SoundStream 50-75 Hz, Mimi 12.5 Hz, SNAC 12-47 Hz), the hop doubled or tripled
    while the lower rate's own harmonics are present, then pinned to the sample by folding. The
    score is the mean, over the harmonics up to 1 kHz (at most 8), of line power over the median of
    the bins 4-20 bins away. Then the residual energy is folded at the hop (synchronous averaging:
    a comb at the frame rate's harmonics) and compared with the same folding after rotating every
    frame by a random offset: the phases that rise above every chance phase, counted above the
    median phase, give a lower bound on the share of residual energy locked to the frame grid.
    Fires when the lines stand 10 dB above the continuum on average (healthy, noisy, band-limited,
    gain-ridden and normalised speech pairs reached at most 6.3 dB over all candidates), at least
    20% of the residual is frame-locked (removing it would raise SNR by 1 dB or more) and that
    energy alone caps SNR below 50 dB. Error when it is at least half of the residual (3 dB).
    A line matches the codec's hop when the hop is known. When it is not, a line set that the
    reference's own voice explains is not one: a codec that smears glottal pulses leaves residual
    energy modulated at the speaker's pitch (F0 and its harmonics). The reference's pitch range is
    the 5th-95th percentile of its voiced frames' F0 (measure/pitch.py); the lines are the voice's
    when the frame rate found, or a multiple m of it, lies within that range (+-3%) and the rate's
    other harmonics (k not a multiple of m) carry no line. (Measured: 101.7 Hz found on speakers
    with pitch 93-126 Hz whose codec ran at 75 Hz; a steady 101.7 Hz voice is found as 33.9 Hz,
    whose 3rd harmonic is the pitch.)
    Why: Seams between decoded frames (overlap-add with a window that does not sum to one,
    transposed-convolution checkerboard, chunked decoding, a per-frame gain or a causal padding
    reset) leave a click or ripple every hop: an audible buzz at the frame rate that SNR and mel
    losses average away.
    Fix: Check the decoder's upsampling (kernel size a multiple of the stride, or resize + conv),
    the overlap-add windows (they must sum to a constant at that hop), and decode with the
    context the model was trained with; a multi-resolution STFT or adversarial loss penalises buzz.
    """
    m = _scored_pair(m)
    if m.est_silent or m.frame_hop_samples <= 0:
        return []
    if not (m.frame_line_excess_db >= 10.0 and m.frame_locked_fraction >= 0.2 and m.frame_locked_ceiling_db < 50.0):
        return []
    if not m.frame_hop_known and m.frame_pitch_multiple > 0:
        return []   # the reference's own pitch, not a frame grid (see What)
    how = "given" if m.frame_hop_known else f"found among frame rates {10:g}-{200:g} Hz"
    gain_db = -10.0 * math.log10(max(1.0 - m.frame_locked_fraction, 1e-12))
    message = (f"At least {100 * m.frame_locked_fraction:.0f}% of the residual energy repeats every "
               f"{m.frame_hop_samples} samples ({m.frame_rate_hz:.2f} Hz frame rate, {how}); its harmonics stand "
               f"{m.frame_line_excess_db:.1f} dB above the residual's modulation continuum. That energy alone caps "
               f"SNR at {_db(m.frame_locked_ceiling_db)}; removing it would raise SNR by {gain_db:.2f} dB.")
    return [finding("R317", message, subject=m.subject,
                    severity=Severity.ERROR if m.frame_locked_fraction >= 0.5 else Severity.WARNING,
                    evidence={"hop_samples": m.frame_hop_samples, "frame_rate_hz": m.frame_rate_hz,
                              "hop_known": int(m.frame_hop_known), "line_excess_db": m.frame_line_excess_db,
                              "locked_fraction": m.frame_locked_fraction,
                              "locked_ceiling_db": m.frame_locked_ceiling_db, "snr_gain_db": gain_db})]
