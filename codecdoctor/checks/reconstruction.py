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

    What: Two ways. (1) Global: the output level (regression slope of est on ref, after alignment)
    is more than 1 dB off AND dividing it out raises the SNR by at least 3 dB (removes half of the
    error energy). A 1 dB gain error alone caps SNR at 19.3 dB, so beyond it scale dominates any
    decent codec's error. (2) Scale destroyed: across 0.25 s segments within 30 dB of the loudest
    whose input levels span at least 6 dB, the output level follows the input level at less than
    0.5 dB per dB (a straight-line fit of output dB on input dB; 1 dB/dB when the output follows the
    input, ~0 when every segment comes out at one level) and the output/input ratio varies with a
    standard deviation above 2 dB (a 2 dB level error alone caps SNR near 13.7 dB), while the output
    still follows the input's waveform (|correlation| >= 0.5). This is the signature of
    per-sample/per-chunk normalisation or an AGC. A partly trained codec also reproduces quiet
    syllables a few dB too quietly (ratio std of 3 dB measured at 9 dB SNR) but its slope stays
    near 1, so the slope, not the spread alone, separates the two.
    Why: SNR is not scale-invariant: an output at 0.1x scores 0.92 dB, at 10x -19 dB, though SI-SDR
    calls both perfect. Normalising each training chunk to unit peak teaches the model outputs whose
    level has nothing to do with the input's.
    Fix: Do not normalise per sample or per chunk (or store the gain and undo it after decoding);
    normalise the corpus once with one gain, and compare levels after decoding.
    """
    m = _scored_pair(m)
    if m.est_silent or abs(m.correlation) < 0.5:
        return []
    global_cost_db = m.snr_with_level_fixed_db - m.snr_without_gain_db
    level_off = math.isfinite(m.output_level_db) and abs(m.output_level_db) > 1.0
    global_mismatch = level_off and global_cost_db >= CAUSE_GAIN_DB
    scale_destroyed = (m.active_segments >= 4 and m.segment_input_span_db >= 6.0
                       and m.segment_level_slope < 0.5 and m.segment_level_spread_db > 2.0)
    if not (global_mismatch or scale_destroyed):
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
    message = "; ".join(parts) + "."
    return [finding("R302", message[0].upper() + message[1:], subject=m.subject,
                    evidence={"gain": m.gain, "gain_db": _gain_db(m.gain), "output_level_db": m.output_level_db,
                              "segment_level_spread_db": m.segment_level_spread_db,
                              "segment_level_slope": m.segment_level_slope,
                              "snr_after_gain_db": m.what_if["gain"], **_what_if(m)})]


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
    window). Fires when the lag is not 0 and aligning raises the SNR (with every other correction
    applied) by at least 3 dB: the delay is then at least half of the error. Even one sample of
    delay costs a lot: at 16 kHz, speech delayed by 1 sample scores about 20 dB, by 7 samples 4 dB.
    Why: Codecs with strided convolutions, look-ahead or padding emit audio shifted by a fixed number
    of samples; SNR against the unshifted input then measures the shift, not the codec. An SNR that
    goes negative can be nothing but a delay.
    Fix: Trim the output by the lag (or pad the input) before computing losses/metrics; make the
    encoder/decoder padding symmetric ("same" padding, causal padding undone at the output).
    """
    m = _scored_pair(m)
    if m.lag_samples == 0 or m.est_silent:
        return []
    recovered_db = m.what_if["all"] - m.snr_without_alignment_db
    if not recovered_db >= CAUSE_GAIN_DB:
        return []
    direction = "late (delayed)" if m.lag_samples > 0 else "early (advanced)"
    message = (f"The output is {abs(m.lag_samples)} samples ({abs(m.lag_ms):.2f} ms) {direction}: correlation "
               f"{m.correlation:.3f} at lag {m.lag_samples:+d}. SNR raw {_db(m.what_if['raw'])}, after alignment "
               f"{_db(m.what_if['aligned'])}, after all corrections {_db(m.what_if['all'])}.")
    return [finding("R304", message, subject=m.subject,
                    evidence={"lag_samples": m.lag_samples, "lag_ms": m.lag_ms, "correlation": m.correlation,
                              "snr_after_alignment_db": m.what_if["aligned"], **_what_if(m)})]


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
    Warning whenever input exceeds the bound; error when that ceiling is below 10 dB.
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
    input's; bins 60 dB below the loudest are floored). Unrelated noise scores near 0 there.
    Why: A decoder trained only on spectral (mel / STFT magnitude) or adversarial losses may
    reproduce how the audio sounds with arbitrary phase: it can sound fine and still score 0 dB or
    negative SNR. Then SNR is the wrong metric, or the waveform loss is missing.
    Fix: Add a waveform term (L1) or a complex-STFT loss if waveform fidelity matters; otherwise
    judge with mel distance / SI-SNR-free perceptual metrics.
    """
    m = _scored_pair(m)
    if m.est_silent or m.what_if["all"] > 3.0 or m.mel_correlation < 0.8:
        return []
    message = (f"Log-mel spectrograms correlate at {m.mel_correlation:.3f} (mel distance {m.mel_distance:.3f}) "
               f"but the best waveform SNR after every correction is {_db(m.what_if['all'])} "
               f"(correlation {m.correlation:.3f}): the magnitudes are right, the phase is not.")
    return [finding("R312", message, subject=m.subject,
                    evidence={"mel_correlation": m.mel_correlation, "mel_distance": m.mel_distance,
                              "snr_after_all_db": m.what_if["all"], "correlation": m.correlation})]


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
    """Output uncorrelated with the input (not learned, or the wrong input).

    What: Fires when |normalised cross-correlation| is below 0.1 at every lag within +-0.5 s (the
    output explains under 1% of the input's energy even after gain, alignment and polarity) and the
    spectrograms do not match either (otherwise it is R312). Unrelated signals of one second
    correlate at about 0.01, so 0.1 is far above chance and far below any codec that learned.
    Why: An untrained or reinitialised decoder, a model evaluated on the wrong batch, shuffled
    ref/est pairing, or a sample-rate mismatch that stretches the signal all give output with no
    relation to the input; no loss tweak helps until that is fixed.
    Fix: Check the pairing (file names, batch order), that the checkpoint's weights were loaded
    (strict=True), and the sample rate of both sides.
    """
    m = _scored_pair(m)
    if m.est_silent or abs(m.correlation) >= 0.1 or m.mel_correlation >= 0.8:
        return []
    message = (f"Peak |correlation| within +-{m.sample_rate // 2} samples is {abs(m.correlation):.4f}; "
               f"log-mel correlation {m.mel_correlation:.3f}; best SNR after every correction {_db(m.what_if['all'])}.")
    return [finding("R314", message, subject=m.subject,
                    evidence={"correlation": m.correlation, "mel_correlation": m.mel_correlation,
                              "snr_after_all_db": m.what_if["all"]})]


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
