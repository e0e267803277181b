"""Q4xx: codebook health of vector quantizers, from EMA buffers (static) or code histograms (dynamic)."""
from __future__ import annotations

import math

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.quantizer import LevelStats, QuantizerMeasurements

# Q401: below half of the codebook in use the level spends a full log2(K) bits per frame on fewer
# than K/2 symbols - at least one bit per frame per level is wasted.
LOW_USAGE_FRACTION = 0.5
# Q402: effective bits (log2 perplexity) at least 4 bits below nominal (perplexity < K/16) is a
# collapse, not an imbalance: the level carries the information of a 16x smaller codebook.
COLLAPSE_PERPLEXITY_FRACTION = 1.0 / 16.0
# Q403: more than 1% of codes stale (not hit for ~1000+ EMA steps) means no revival is running.
STALE_FRACTION = 0.01
# Q405: a level whose perplexity is below 1.5 emits essentially one code (a constant vector: < 0.6
# bits); a level whose codebook RMS is below 1% of the first level's adds < -40 dB to the sum.
CONSTANT_PERPLEXITY = 1.5
NEGLIGIBLE_RMS_RATIO = 0.01
# Q405 dynamic: adding a level should raise the SNR; less than 0.1 dB means it adds nothing.
NEGLIGIBLE_SNR_GAIN_DB = 0.1
# Perplexity from a code histogram needs at least K frames per level (Q402): N tokens can show a
# perplexity of at most N, so a short clip of a healthy codebook would read as a collapse.
MIN_FRAMES_PER_CODE = 1.0
# Q402 on measured codes, before the K frames a perplexity needs: a level that emits at most 2
# distinct codes over 100 or more frames carries at most 1 bit per frame. A uniform draw of 100
# tokens over K >= 32 codes shows K(1-(1-1/K)^100) >= 30 distinct ones, and even a level whose
# perplexity sits at the K/16 collapse line (2 of 32) would show 2 only by chance; so whatever its
# EMA buffers say, such a level has collapsed (4+ bits below nominal, the same line as K/16).
FEW_CODES = 2
MIN_FRAMES_FEW_CODES = 100
MIN_SIZE_FEW_CODES = 32
# Q401 on codes judges the distinct codes seen against what a uniform draw of the same N tokens
# hits, K(1 - (1 - 1/K)^N); below 16 expected codes the count's own spread (binomial, ~sqrt of the
# count) is a quarter of it and a 50% line cannot be told from chance.
MIN_EXPECTED_CODES = 16.0


def _levels(q: QuantizerMeasurements, *, need_usage: bool, short_clips: bool = False) -> list[LevelStats]:
    """Levels a check can judge; `short_clips`: code histograms of fewer than K tokens are judged
    (Q401, against the uniform-draw expectation) instead of left out."""
    if q is None or not q.levels:
        raise NotApplicable
    levels = [lv for lv in q.levels if lv.used is not None] if need_usage else list(q.levels)
    if need_usage and short_clips:
        levels = [lv for lv in levels if lv.source != "codes" or (lv.expected_used or 0) >= MIN_EXPECTED_CODES]
    elif need_usage:
        levels = [lv for lv in levels if lv.source != "codes"
                  or (lv.total_count or 0) >= MIN_FRAMES_PER_CODE * lv.codebook_size]
    if not levels:
        raise NotApplicable
    return levels


def _initialised(levels: list[LevelStats]) -> list[LevelStats]:
    # Usage of a codebook that was never initialised is meaningless (Q404 covers it).
    return [lv for lv in levels if lv.initted is not False and not lv.all_zero]


@check("Q401", scope="quantizer", severity=Severity.WARNING)
def low_utilization(q: QuantizerMeasurements):
    """Low codebook utilization.

    What: Codes in use per level, against what the level could show. From EMA or usage counts a
    code is in use when it holds at least 1% of a uniform share; fires below 50% of the codebook:
    the level spends log2(K) bits per frame on fewer than K/2 symbols, wasting at least one bit per
    frame. From codes on data the distinct codes seen are compared with the distinct codes a
    uniform draw of the same N tokens would use, K(1-(1-1/K)^N) (63% of K at N = K, about N when
    N << K), so a short evaluation clip does not read as collapse; fires below 50% of that. The
    message gives the entropy in bits (DAC's compute_entropy) next to the nominal log2(K).
    Collapsed levels (Q402) are reported there instead.
    Why: Unused codes are rate paid for nothing; the real bitrate is lower than the nominal one and
    quality is what a smaller codebook would give.
    Fix: Initialise codebooks with k-means on encoder outputs, enable dead-code revival
    (`threshold_ema_dead_code` around 2), lower the codebook dimension or use factorised / l2
    normalised codes (DAC), or reduce the codebook size.
    """
    out = []
    for lv in _initialised(_levels(q, need_usage=True, short_clips=True)):
        collapsed = lv.perplexity is not None and lv.perplexity < COLLAPSE_PERPLEXITY_FRACTION * lv.codebook_size \
            and (lv.source != "codes" or (lv.total_count or 0) >= MIN_FRAMES_PER_CODE * lv.codebook_size)
        if collapsed or lv.used is None or _emits_few_codes(lv):
            continue
        reachable = lv.expected_used if lv.source == "codes" and lv.expected_used else float(lv.codebook_size)
        share = lv.used / reachable if reachable else 1.0
        if share >= LOW_USAGE_FRACTION:
            continue
        against = (f"a uniform draw of {lv.total_count:.0f} tokens would use {reachable:.0f}"
                   if lv.source == "codes" else f"{lv.used_fraction:.1%} of the codebook")
        out.append(finding("Q401", f"{lv.used} of {lv.codebook_size} codes in use ({against}); entropy "
                           f"{lv.entropy_bits or 0.0:.2f} of {lv.bits:.0f} bits per frame",
                           subject=lv.name, evidence={"used": lv.used, "codebook_size": lv.codebook_size,
                                                      "used_fraction": lv.used_fraction,
                                                      "expected_used": reachable, "used_of_expected": share,
                                                      "perplexity": lv.perplexity,
                                                      "entropy_bits": lv.entropy_bits or 0.0,
                                                      "source": lv.source}))
    return out


@check("Q402", scope="quantizer", severity=Severity.ERROR)
def collapse(q: QuantizerMeasurements):
    """Codebook collapse: perplexity far below the codebook size.

    What: Perplexity exp(H) of the code usage distribution per level; fires when it is below K/16,
    i.e. the level's effective bits log2(perplexity) are at least 4 bits below nominal log2(K).
    That is no longer imbalance but a collapse onto a handful of codes.
    From codes measured on data, a level that emits at most 2 distinct codes over 100 or more
    frames (codebooks of 32 or more) fires before it has K frames: a uniform draw of 100 tokens
    would show 30 or more, and 2 codes carry at most 1 bit per frame. Measured codes come first;
    the EMA buffers' perplexity of the same level is quoted as a second opinion.
    Why: A collapsed level quantises everything to a few vectors; the decoder gets almost no
    information from it and reconstruction quality stalls regardless of training time.
    Fix: Check the encoder output scale (codes collapse when the latents are tiny or huge versus the
    codebook), k-means initialise, enable dead-code revival, lower the learning rate of the encoder
    or increase the commitment weight; with EMA codebooks check the decay (0.99) was not set to 1.
    """
    few = [lv for lv in (q.levels if q is not None else []) if _emits_few_codes(lv)]
    try:
        judged = _initialised(_levels(q, need_usage=True))
    except NotApplicable:
        if not few:
            raise
        judged = []
    out = []
    for lv in q.levels:
        if lv in few:
            out.append(_collapse_finding(lv, f"{lv.used} distinct code{'s' if lv.used != 1 else ''} in "
                                             f"{lv.total_count:.0f} frames measured on data"))
        elif lv in judged and lv.perplexity is not None \
                and lv.perplexity < COLLAPSE_PERPLEXITY_FRACTION * lv.codebook_size:
            out.append(_collapse_finding(lv, f"{lv.used} codes alive"))
    return out


def _emits_few_codes(lv: LevelStats) -> bool:
    return (lv.source == "codes" and lv.used is not None and lv.used <= FEW_CODES
            and (lv.total_count or 0) >= MIN_FRAMES_FEW_CODES and lv.codebook_size >= MIN_SIZE_FEW_CODES)


def _collapse_finding(lv: LevelStats, what: str):
    evidence = {"perplexity": lv.perplexity, "used": lv.used, "codebook_size": lv.codebook_size,
                "effective_bits": lv.effective_bits, "source": lv.source}
    second = ""
    if lv.buffer_perplexity is not None:
        evidence["buffer_perplexity"] = lv.buffer_perplexity
        second = f"; its EMA buffers read perplexity {lv.buffer_perplexity:.1f} (second opinion: the codes decide)"
    return finding("Q402", f"perplexity {lv.perplexity:.2f} of {lv.codebook_size} codes ({lv.effective_bits:.2f} "
                   f"of {lv.bits:.0f} bits); {what}{second}", subject=lv.name, evidence=evidence)


@check("Q403", scope="quantizer", severity=Severity.WARNING)
def dead_codes_not_revived(q: QuantizerMeasurements):
    """Dead codes that were never revived.

    What: Counts codes whose EMA share is below 1e-6 of a uniform share. With decay 0.99 a single hit
    needs ~1375 steps to decay that far, so these codes have not been selected for over a thousand
    steps - and a dead-code revival would have reset them long before. Fires when more than 1% of
    a level's codes are in that state. Needs EMA buffers or a usage count buffer next to the codebook
    (static sources); for a cumulative count a stale code was never selected since counting began.
    Why: Without revival, codes that lose the competition early stay dead forever and the usable
    codebook shrinks as training goes on.
    Fix: Enable revival: replace codes whose EMA count is below a threshold (about 2 assignments)
    with random encoder outputs from the current batch, and reset their EMA state.
    """
    levels = [lv for lv in _initialised(_levels(q, need_usage=True)) if lv.source in ("ema", "counts")
              and lv.stale is not None]
    if not levels:
        raise NotApplicable
    out = []
    for lv in levels:
        if lv.stale > STALE_FRACTION * lv.codebook_size and lv.total_count:
            if lv.source == "ema":
                what = "have an EMA count below 1e-6 of a uniform share: not selected for ~1000+ steps and not revived"
            else:
                what = (f"hold less than 1e-6 of a uniform share of {lv.count_buffer or 'the counts'} "
                        f"({lv.total_count:.0f} counted): never selected while it counted, and not revived")
            out.append(finding("Q403", f"{lv.stale} of {lv.codebook_size} codes {what}",
                               subject=lv.name, evidence={"stale": lv.stale, "codebook_size": lv.codebook_size}))
    return out


@check("Q404", scope="quantizer", severity=Severity.ERROR)
def not_initialised(q: QuantizerMeasurements):
    """Codebook not initialised.

    What: The `initted` / `inited` flag is false, or the codebook is all zeros, or every code vector
    is identical. EnCodec and vector-quantize-pytorch with k-means init start with zero codebooks
    and fill them from the first batch; a flag still false after training means that never ran.
    Why: A zero or constant codebook maps every latent to the same vector: the decoder receives no
    information and the output is a constant or silence.
    Fix: Run at least one training forward pass before saving (k-means init runs there), make sure
    the buffers are saved with the model (`register_buffer`, persistent) and loaded into it, or
    initialise explicitly from encoder outputs.
    """
    out = []
    for lv in _levels(q, need_usage=False):
        reasons = []
        if lv.initted is False:
            reasons.append("initted flag is false")
        if lv.all_zero:
            reasons.append("codebook is all zeros")
        elif lv.identical_rows:
            reasons.append("all code vectors are identical")
        if reasons:
            out.append(finding("Q404", "; ".join(reasons) + f" ({lv.codebook_size} codes)", subject=lv.name,
                               evidence={"initted": lv.initted, "all_zero": lv.all_zero,
                                         "identical_rows": lv.identical_rows, "codebook_rms": lv.codebook_rms}))
    return out


def _rms_negligible(rms: float | None, first_rms: float | None) -> bool:
    """Level RMS below 1% of level 0's. Both must be finite and level 0's positive: a corrupted
    (non-finite) codebook is C201's finding, and no dB ratio can be stated for it."""
    if rms is None or first_rms is None or not (math.isfinite(rms) and math.isfinite(first_rms)):
        return False
    return first_rms > 0.0 and rms < NEGLIGIBLE_RMS_RATIO * first_rms


@check("Q405", scope="quantizer", severity=Severity.WARNING)
def useless_levels(q: QuantizerMeasurements):
    """RVQ levels that add nothing.

    What: A level after the first adds nothing when (a) it emits essentially one code (perplexity
    < 1.5, under 0.6 bits: a constant offset), (b) its codebook RMS is below 1% of the first
    level's (it adds less than -40 dB to the quantised sum), or (c) on data, decoding with it
    raises the SNR by less than 0.1 dB over decoding without it.
    Why: Each RVQ level costs log2(K) bits per frame; a level that adds nothing is pure rate
    overhead, and often a sign that quantizer dropout or the residual scale is misconfigured.
    Fix: Drop the level (fewer codebooks, lower bitrate at equal quality), check that each level
    quantises the residual of the previous ones, and that dead-code revival runs on every level.
    """
    levels = _levels(q, need_usage=False)
    if len(levels) < 2:
        raise NotApplicable
    out = []
    first_rms = levels[0].codebook_rms
    for index, lv in enumerate(levels[1:], start=1):
        if lv.initted is False or lv.all_zero:
            continue  # Q404
        reasons, evidence = [], {"level": index}
        if lv.perplexity is not None and lv.total_count and lv.perplexity < CONSTANT_PERPLEXITY:
            reasons.append(f"perplexity {lv.perplexity:.2f} (one code carries everything)")
            evidence["perplexity"] = lv.perplexity
        if _rms_negligible(lv.codebook_rms, first_rms):
            ratio_db = 20.0 * math.log10(max(lv.codebook_rms, 1e-30) / first_rms)
            reasons.append(f"codebook RMS {lv.codebook_rms:.3g} is {ratio_db:.1f} dB below level 0's")
            evidence["rms_ratio_db"] = ratio_db
        if q.snr_by_levels_db and index < len(q.snr_by_levels_db):
            gain_db = q.snr_by_levels_db[index] - q.snr_by_levels_db[index - 1]
            evidence["snr_gain_db"] = gain_db
            if gain_db < NEGLIGIBLE_SNR_GAIN_DB:
                reasons.append(f"adding it changes the SNR by {gain_db:+.2f} dB")
        if reasons:
            out.append(finding("Q405", f"level {index} adds nothing: " + "; ".join(reasons), subject=lv.name,
                               evidence=evidence))
    return out


@check("Q406", scope="quantizer", severity=Severity.WARNING)
def reduced_precision(q: QuantizerMeasurements):
    """Quantizer in reduced precision.

    What: The codebook or its EMA buffers are stored as float16 / bfloat16.
    Why: Nearest-neighbour search on half-precision distances ties and flips (fp16 keeps ~3 decimal
    digits, bf16 ~2); EMA updates with decay 0.99 lose the 1% increment entirely in bf16
    (1 + 0.01 rounds to 1 at 8 bits of mantissa), so codebooks stop learning.
    Fix: Keep the quantizer in float32: exclude it from `.half()`, run it with autocast disabled, and
    cast its input to float32.
    """
    out = []
    for lv in _levels(q, need_usage=False):
        if lv.dtype in ("float16", "bfloat16", "half"):
            out.append(finding("Q406", f"codebook stored as {lv.dtype}", subject=lv.name, evidence={"dtype": lv.dtype}))
    return out


# Q407: the EMA counts of one step sum to the tokens the batch quantised (their EMA converges to
# that sum). With an absolute dead-code threshold t, a code whose average share total/K is below t
# is "dead" even at a perfectly uniform assignment: when total < K·t, every code is reset on every
# step and the codebook never learns.
@check("Q407", scope="quantizer", severity=Severity.ERROR)
def dead_code_threshold_unreachable(q: QuantizerMeasurements):
    """Dead-code threshold that can never be met.

    What: The dead-code rule the run used (`threshold_ema_dead_code` / `dead_code_threshold` in the
    saved config or arguments or on the built model; this codec's `dead_code_fraction`) against the
    EMA counts: the counts of one step sum to the tokens of one batch, and their EMA converges to
    that sum. Fires when the total EMA count is below K × threshold (for a relative rule: a fraction
    of the uniform share of 1 or more): even a perfectly uniform assignment leaves every code below
    the threshold, so codes are reset on every step. Levels whose counts never moved (no EMA step
    yet) are left out.
    Why: A codebook whose codes are all replaced by random batch vectors on every step never learns:
    reconstruction stays at the level of random codes, and usage statistics look healthy because
    the replacements are spread evenly (WavTokenizer issue 82).
    Fix: Lower the threshold below tokens-per-batch / K (e.g. 2 needs batch × frames ≥ 2K), raise
    the batch size or crop length, use a smaller codebook, or make the rule relative to the uniform
    share (a fraction such as 0.01 of total / K).
    """
    if q is None or not q.levels or (q.dead_code_threshold is None and q.dead_code_fraction is None):
        raise NotApplicable
    levels = [lv for lv in q.levels if lv.source == "ema" and lv.total_count and not lv.ema_counts_constant
              and lv.initted is not False]
    if not levels:
        raise NotApplicable
    out = []
    for lv in levels:
        per_code = lv.total_count / lv.codebook_size
        if q.dead_code_threshold is not None and q.dead_code_threshold > 0:
            threshold = q.dead_code_threshold
        elif q.dead_code_fraction is not None and q.dead_code_fraction > 0:
            threshold = q.dead_code_fraction * per_code
        else:
            continue
        needed = threshold * lv.codebook_size
        if lv.total_count >= needed:
            continue
        out.append(finding("Q407", f"the EMA counts sum to {lv.total_count:.4g} tokens per step, {per_code:.3g} per "
                           f"code on average, below the dead-code threshold {threshold:.3g} ({q.threshold_source}): "
                           f"a batch would need {needed:.0f} tokens, so every code is reset on every step",
                           subject=lv.name, evidence={"total_count": lv.total_count, "codebook_size": lv.codebook_size,
                                                      "threshold": threshold, "tokens_needed": needed,
                                                      "mean_count_per_code": per_code}))
    return out


@check("Q408", scope="quantizer", severity=Severity.ERROR)
def ema_state_inconsistent(q: QuantizerMeasurements):
    """EMA state inconsistent: codebook != embed_avg / cluster_size for live codes.

    What: An EMA codebook is recomputed each step as embed = embed_avg / cluster_size (Laplace
    smoothing changes a live code's divisor by about 1e-5 relative). For every live code (at least
    1% of a uniform share) the relative distance between `embed` and `embed_avg / cluster_size`,
    with and without smoothing; fires when any live code is off by more than 1%. Levels whose
    counts never moved from their initial value (no EMA step ran) are left out.
    Why: The next EMA step overwrites `embed` with `embed_avg / cluster_size`: whatever wrote
    `embed` alone (a dead-code revival that did not reset `embed_avg` and `cluster_size`, a gradient
    step on a buffer the EMA owns) is undone, so revived codes are pulled straight back to their
    stale position and die again (espnet PR 6284, vector-quantize-pytorch issue 66).
    Fix: When replacing a code, reset its EMA state with it: embed_avg[i] = new · c and
    cluster_size[i] = c (c = the threshold or the uniform share); do not also train the codebook
    with gradients when it is EMA-updated.
    """
    if q is None or not q.levels:
        raise NotApplicable
    levels = [lv for lv in q.levels if lv.ema_live_codes and lv.ema_inconsistent_codes is not None
              and not lv.ema_counts_constant]
    if not levels:
        raise NotApplicable
    out = []
    for lv in levels:
        if not lv.ema_inconsistent_codes:
            continue
        out.append(finding("Q408", f"{lv.ema_inconsistent_codes} of {lv.ema_live_codes} live codes differ from "
                           f"embed_avg / cluster_size by more than 1% (worst {lv.ema_max_relative_error:.3g} relative): "
                           "the next EMA step will overwrite them", subject=lv.name,
                           evidence={"inconsistent_codes": lv.ema_inconsistent_codes, "live_codes": lv.ema_live_codes,
                                     "max_relative_error": lv.ema_max_relative_error}))
    return out
