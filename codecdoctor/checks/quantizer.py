"""Q4xx: codebook health of vector quantizers, from EMA buffers (static) or code histograms (dynamic)."""
from __future__ import annotations

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
# Usage from a code histogram needs at least K frames per level: a uniform code over K entries seen
# N = K times shows 1 - 1/e = 63% of its codes, above Q401's 50% line; fewer frames cannot tell.
MIN_FRAMES_PER_CODE = 1.0


def _levels(q: QuantizerMeasurements, *, need_usage: bool) -> list[LevelStats]:
    if q is None or not q.levels:
        raise NotApplicable
    levels = [lv for lv in q.levels if lv.used is not None] if need_usage else list(q.levels)
    if need_usage:
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

    What: Fraction of codes in use per level (a code is in use when it receives at least 1% of a
    uniform share of assignments in the EMA counts, or appears at least once in codes on data).
    Fires below 50%: the level spends log2(K) bits per frame on fewer than K/2 symbols, wasting at
    least one bit per frame per level. Collapsed levels (Q402) are reported there instead.
    Why: Unused codes are rate paid for nothing; the real bitrate is lower than the nominal one and
    quality is what a smaller codebook would give.
    Fix: Initialise codebooks with k-means on encoder outputs, enable dead-code revival
    (`threshold_ema_dead_code` around 2), lower the codebook dimension or use factorised / l2
    normalised codes (DAC), or reduce the codebook size.
    """
    out = []
    for lv in _initialised(_levels(q, need_usage=True)):
        collapsed = lv.perplexity is not None and lv.perplexity < COLLAPSE_PERPLEXITY_FRACTION * lv.codebook_size
        if lv.used_fraction is not None and lv.used_fraction < LOW_USAGE_FRACTION and not collapsed:
            out.append(finding("Q401", f"{lv.used} of {lv.codebook_size} codes in use ({lv.used_fraction:.1%}); "
                               f"perplexity {lv.perplexity:.1f} = {lv.effective_bits:.2f} of {lv.bits:.0f} bits",
                               subject=lv.name, evidence={"used": lv.used, "codebook_size": lv.codebook_size,
                                                          "used_fraction": lv.used_fraction,
                                                          "perplexity": lv.perplexity, "source": lv.source}))
    return out


@check("Q402", scope="quantizer", severity=Severity.ERROR)
def collapse(q: QuantizerMeasurements):
    """Codebook collapse: perplexity far below the codebook size.

    What: Perplexity exp(H) of the code usage distribution per level; fires when it is below K/16,
    i.e. the level's effective bits log2(perplexity) are at least 4 bits below nominal log2(K).
    That is no longer imbalance but a collapse onto a handful of codes.
    Why: A collapsed level quantises everything to a few vectors; the decoder gets almost no
    information from it and reconstruction quality stalls regardless of training time.
    Fix: Check the encoder output scale (codes collapse when the latents are tiny or huge versus the
    codebook), k-means initialise, enable dead-code revival, lower the learning rate of the encoder
    or increase the commitment weight; with EMA codebooks check the decay (0.99) was not set to 1.
    """
    out = []
    for lv in _initialised(_levels(q, need_usage=True)):
        if lv.perplexity is not None and lv.perplexity < COLLAPSE_PERPLEXITY_FRACTION * lv.codebook_size:
            out.append(finding("Q402", f"perplexity {lv.perplexity:.2f} of {lv.codebook_size} codes "
                               f"({lv.effective_bits:.2f} of {lv.bits:.0f} bits); {lv.used} codes alive",
                               subject=lv.name, evidence={"perplexity": lv.perplexity, "used": lv.used,
                                                          "codebook_size": lv.codebook_size,
                                                          "effective_bits": lv.effective_bits, "source": lv.source}))
    return out


@check("Q403", scope="quantizer", severity=Severity.WARNING)
def dead_codes_not_revived(q: QuantizerMeasurements):
    """Dead codes that were never revived.

    What: Counts codes whose EMA share is below 1e-6 of a uniform share. With decay 0.99 a single hit
    needs ~1375 steps to decay that far, so these codes have not been selected for over a thousand
    steps - and a dead-code revival would have reset them long before. Fires when more than 1% of
    a level's codes are in that state. Needs EMA buffers (static source).
    Why: Without revival, codes that lose the competition early stay dead forever and the usable
    codebook shrinks as training goes on.
    Fix: Enable revival: replace codes whose EMA count is below a threshold (about 2 assignments)
    with random encoder outputs from the current batch, and reset their EMA state.
    """
    levels = [lv for lv in _initialised(_levels(q, need_usage=True)) if lv.source == "ema" and lv.stale is not None]
    if not levels:
        raise NotApplicable
    out = []
    for lv in levels:
        if lv.stale > STALE_FRACTION * lv.codebook_size and lv.total_count:
            out.append(finding("Q403", f"{lv.stale} of {lv.codebook_size} codes have an EMA count below "
                               f"1e-6 of a uniform share: not selected for ~1000+ steps and not revived",
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
        if first_rms and lv.codebook_rms is not None and lv.codebook_rms < NEGLIGIBLE_RMS_RATIO * first_rms:
            ratio_db = 20.0 * __import__("math").log10(max(lv.codebook_rms, 1e-30) / first_rms)
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
