"""Differential diagnosis of a reconstruction: measure the pair, run the R3xx judges, order the findings.

The rule: the top finding is the correction that recovers the most dB, and a finding explained by
another says so and ranks below it. Concretely (`order_findings`):

1. Findings that make the what-if table meaningless come first: non-finite samples (R309), an
   unscorable pair (R315), a silent output (R305), excursions of the output's own (R306 as an
   error), an unrelated output (R314), a phase-incoherent one (R312).
2. The corrections of the what-if table are ranked by what each recovers with every other
   correction applied: alignment (R304: "all" against "all but alignment"), polarity (R303), gain
   (R302: one global gain, or per-segment gains when the gain rides), DC (R308). Values above
   100 dB are taken as 100 dB (an exact copy once corrected), so "inverted and one sample late"
   ranks the sign flip (recovers ~100 dB: without it the SNR is 0 dB) above the lag (without it
   the SNR is still ~15 dB). Within 3 dB of each other the order is that of ROOT_ORDER: alignment
   first, because polarity and gain are measured after it.
3. The other findings follow in ROOT_ORDER; the symptom R301 and the summary R300 come last.
4. Explanations: R307 (input beyond the output bound) and R306 (runaway output) explain R302 when
   the level where the input is within half of full scale is right (within 1 dB); a riding gain
   (R302) explains R306 when undoing it brings the peak back; an alignment (R304) explains a
   length difference (R310) equal to the lag. An explained finding moves right below its
   explainer, says so in its message, and the explainer takes the explained finding's severity
   when that is higher (the report lists worst first, so the cause must not rank below its effect).
5. R301 (negative SNR) names every cause above it.
6. Across the checks of one report (`rank_root_causes`, used by `check-ckpt` and the monitor's
   report) the same mechanism links findings of different scopes: a measured quantizer collapse
   (Q402 / Q401 from emitted codes, T607: a level emitting at most 2 codes) explains R314, R301
   and T608; it ranks first, and they say "Explained by <ID>".

Shared by `compare`, `check-ckpt --data` and the live monitor's T608.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

from codecdoctor.core.findings import Finding, Severity
from codecdoctor.measure.pair import ChunkSetMeasurements, PairMeasurements, measure_chunk_set, measure_pair

# Root causes first: the order in which findings of equal standing are listed. A symptom (R301
# negative SNR) and the summary (R300) come last.
ROOT_ORDER = ("R309", "R315", "R305", "R306", "R314", "R312", "R304", "R303", "R302", "R308", "R307",
              "R317", "R311", "R310", "R316", "R313", "R301", "R300")
# Findings that say the what-if corrections cannot help: listed before any correction.
BLOCKING = ("R309", "R315", "R305", "R314", "R312")
# An SNR this high is an exact copy once corrected; costs are measured against it.
SNR_CAP_DB = 100.0
# Two corrections whose costs differ by less than half the error energy (3 dB) are ranked by
# ROOT_ORDER: neither is clearly the bigger cause, and alignment comes first because polarity and
# gain are measured after it.
COST_TIE_DB = 3.0


def _capped(value: float) -> float:
    if value != value:  # NaN
        return -SNR_CAP_DB
    return max(-SNR_CAP_DB, min(SNR_CAP_DB, value))


def correction_cost_db(f: Finding, m: PairMeasurements) -> float | None:
    """dB that the finding's correction recovers with every other correction applied; None for a
    finding that is not a what-if correction."""
    if f.id == "R304":
        aligned = max(m.what_if.get("all", -math.inf), m.snr_after_fractional_alignment_db)
        recovered = _capped(aligned) - _capped(m.snr_without_alignment_db)
        if "lag_drift_samples" in f.evidence:   # a drift: aligning window by window recovers more
            recovered += max(0.0, min(SNR_CAP_DB, m.snr_gain_local_lags_db))
        return recovered
    if f.id == "R303":
        return _capped(m.what_if.get("all", -math.inf)) - _capped(m.snr_without_polarity_db)
    if f.id == "R302":
        global_db = _capped(m.snr_with_level_fixed_db) - _capped(m.snr_without_gain_db)
        if f.evidence.get("time_varying"):
            return max(global_db, _capped(m.snr_with_segment_levels_db) - _capped(m.snr_with_level_fixed_db))
        return global_db
    if f.id == "R308":
        return _capped(m.what_if.get("all", -math.inf)) - _capped(m.snr_without_dc_db)
    return None


def _rank(check_id: str) -> int:
    return ROOT_ORDER.index(check_id) if check_id in ROOT_ORDER else len(ROOT_ORDER)


def _group(f: Finding, m: PairMeasurements | None) -> int:
    if f.id in BLOCKING or (f.id == "R306" and f.severity >= Severity.ERROR):
        # an output with excursions of its own (R306 error) swamps every correlation-based number
        return 0
    if m is not None and correction_cost_db(f, m) is not None:
        return 1
    if f.id in ("R301", "R300"):
        return 3
    return 2


def order_findings(findings: Sequence[Finding], m: PairMeasurements | None = None) -> list[Finding]:
    """Worst first; within one severity, the order of the module doc (without `m`: ROOT_ORDER)."""
    def compare(a: Finding, b: Finding) -> int:
        ga, gb = _group(a, m), _group(b, m)
        if ga != gb:
            return ga - gb
        if ga == 1 and m is not None:
            ca, cb = correction_cost_db(a, m), correction_cost_db(b, m)
            if abs(ca - cb) > COST_TIE_DB:
                return -1 if ca > cb else 1
        return _rank(a.id) - _rank(b.id)

    ordered = sorted(findings, key=functools.cmp_to_key(compare))
    if m is not None:
        ordered = _apply_explanations(ordered, explanations(ordered, m))
    return sorted(ordered, key=lambda f: -int(f.severity))


def explanations(findings: Sequence[Finding], m: PairMeasurements) -> dict[str, str]:
    """{explained ID: explaining ID} for the pair's findings (see the module doc, step 4)."""
    present = {f.id: f for f in findings}
    out: dict[str, str] = {}
    small_signal_right = (math.isfinite(m.output_level_small_signal_db)
                          and abs(m.output_level_small_signal_db) <= 1.0)
    r302 = present.get("R302")
    if r302 is not None and "R306" in present and r302.evidence.get("time_varying"):
        if m.est_peak_after_segment_levels <= max(m.ref_peak, 1.0) * 10.0 ** (1.0 / 20.0):
            out["R306"] = "R302"
    if r302 is not None and "R306" not in out:
        if "R307" in present and small_signal_right:
            out["R302"] = "R307"
        elif "R306" in present and (small_signal_right or present["R306"].severity >= Severity.ERROR):
            out["R302"] = "R306"
    if "R310" in present and "R304" in present:
        if abs((m.est_samples - m.ref_samples) - m.lag_samples) <= 1:
            out["R310"] = "R304"
    return out


def _apply_explanations(ordered: list[Finding], links: dict[str, str]) -> list[Finding]:
    """Every finding of an explained ID says which finding explains it and moves right below the
    first finding of its cause, which says what it explains and takes the explained finding's
    severity when that is higher. `links`: {explained ID: explaining ID}, no chains. Applying the
    same links again changes nothing (a report may be ranked more than once)."""
    links = {e: c for e, c in links.items() if c not in links}
    first: dict[str, Finding] = {}
    for f in ordered:
        first.setdefault(f.id, f)
    links = {e: c for e, c in links.items() if e in first and c in first}
    if not links:
        return ordered
    for explained_id, cause_id in links.items():
        cause = first[cause_id]
        for explained in (f for f in ordered if f.id == explained_id):
            if explained.evidence.get("explained_by") != cause_id:
                explained.message = _sentence_end(explained.message) + \
                    f" Explained by {cause_id} ({_lower_first(cause.title)}, see above)."
                explained.evidence["explained_by"] = cause_id
            if explained.severity > cause.severity:
                cause.severity = explained.severity
        explains = cause.evidence.setdefault("explains", [])
        if explained_id not in explains:
            explains.append(explained_id)
            cause.message = _sentence_end(cause.message) + \
                f" It explains {explained_id} ({_lower_first(first[explained_id].title)})."
    result = [f for f in ordered if f.id not in links]
    for explained_id in sorted(links, key=lambda i: _rank(i)):
        # right below its cause (and below anything the cause already pulled under it)
        cause_index = next(i for i, f in enumerate(result) if f is first[links[explained_id]])
        insert_at = cause_index + 1
        while insert_at < len(result) and links.get(result[insert_at].id) == links[explained_id]:
            insert_at += 1
        result[insert_at:insert_at] = [f for f in ordered if f.id == explained_id]
    return result


def _sentence_end(text: str) -> str:
    """`text` ending in a full stop, so a sentence can follow it."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _lower_first(title: str) -> str:
    """A title inside a sentence: its first letter lower-cased, acronyms (SNR, RMS) kept."""
    return title if title[1:2].isupper() else title[:1].lower() + title[1:]


# ---- root causes across checks: a report's findings --------------------------------------------

# A level that emits at most this many distinct codes passes at most one bit per frame: the
# decoder gets a constant (or a sign) from it (issue of a k-means blow-up: every RVQ level emitted
# one code on held-out audio while the EMA buffers still read perplexity 108-146).
COLLAPSED_LEVEL_CODES = 2
# Measured collapse findings: codes on data (check-ckpt) and codebook usage under training (watch).
COLLAPSE_CHECKS = ("Q402", "Q401", "T607")
# What a quantizer that emits one code per level explains: an output unrelated to the input, a
# negative SNR, an output whose level no longer follows the input's (silent or collapsed, spectrally
# close but incoherent) and the training's low validation SNR.
EXPLAINED_BY_COLLAPSE = ("R314", "R301", "R305", "R312", "T608")


def measured_collapse(f: Finding) -> bool:
    """A collapse finding whose level was measured to emit at most COLLAPSED_LEVEL_CODES codes:
    from the codes the quantizer emitted, or from a live run's EMA usage buffers (T607) while no
    emitted code contradicts them (a contradicted buffer reading is only info). A checkpoint's
    static buffers alone (Q40x from "ema") are a second opinion: they may be stale."""
    source = f.evidence.get("source")
    if f.id not in COLLAPSE_CHECKS or source not in (None, "codes", "emitted codes", "EMA buffers"):
        return False
    if source == "EMA buffers" and f.severity < Severity.WARNING:
        return False
    for key in ("distinct_codes", "codes_emitted", "used", "perplexity"):
        # one level's number, or one per level when a finding groups the levels it names
        value = f.evidence.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers and len(numbers) == len(values):
            return max(numbers) <= COLLAPSED_LEVEL_CODES
    return False


def cross_check_explanations(findings: Sequence[Finding]) -> dict[str, str]:
    """{explained ID: explaining ID} across checks of one report: a measured quantizer collapse
    (Q402 / Q401 on codes, T607) explains R314, R301 and T608. With one code per level the decoder
    receives a constant, so its output cannot follow the input; the collapse is the mechanism, the
    unrelated output and the negative SNR its symptoms."""
    present = {f.id for f in findings}
    collapse = next((f for f in findings if measured_collapse(f)), None)
    if collapse is not None:
        return {explained: collapse.id for explained in EXPLAINED_BY_COLLAPSE if explained in present}
    cause = _training_cause_of_low_snr(findings)
    if cause is None:
        return {}
    return {explained: cause for explained in EXPLAINED_BY_TRAINING_CAUSE if explained in present}


# Training findings that by themselves keep a codec from learning, so they explain a low validation
# SNR and an output unrelated to the input: a learning rate far below range (the weights stay at
# their initialisation), vanishing or exploding gradients, non-finite outputs or losses, and input
# beyond the output's bound. A discriminator that does not learn (T613) or a drifting level (T603)
# do not: the reconstruction losses still train the generator.
TRAINING_CAUSES_OF_LOW_SNR = ("T604", "T602", "T605", "T609", "T601")
EXPLAINED_BY_TRAINING_CAUSE = ("T608", "R314", "R301")


def _training_cause_of_low_snr(findings: Sequence[Finding]) -> str | None:
    """The first of T608's measured causes (its evidence "causes") that is a training finding able
    to keep the codec from learning, when that finding is in the report."""
    t608 = next((f for f in findings if f.id == "T608" and f.severity >= Severity.WARNING), None)
    if t608 is None:
        return None
    present = {f.id for f in findings}
    causes = t608.evidence.get("causes") or []
    return next((c for c in causes if c in TRAINING_CAUSES_OF_LOW_SNR and c in present), None)


def rank_root_causes(findings: Sequence[Finding]) -> list[Finding]:
    """A report's findings, root causes first: each cause found across checks (see
    `cross_check_explanations`) moves to the front with the findings it explains right below it,
    which say "Explained by <ID>"; the rest keep their order. A report lists worst first with a
    stable sort, so within one severity the cause is listed first."""
    ordered = list(findings)
    links = cross_check_explanations(ordered)
    if not links:
        return ordered
    ordered = _apply_explanations(ordered, links)
    causes = set(links.values())
    cause = next(f for f in ordered if f.id in causes)
    siblings = [f for f in ordered if f.id in causes and f is not cause]   # e.g. the other collapsed levels
    explained = [f for f in ordered if f.id in links]
    rest = [f for f in ordered if f.id not in causes and f.id not in links]
    return [cause] + siblings + explained + rest


def diagnose_pair(ref: Any, est: Any, sample_rate: int, subject: str | None = None,
                  output_bound: float | None = None, *, max_lag_samples: int | None = None,
                  hop_samples: int | None = None) -> tuple[PairMeasurements, list[Finding], list[str]]:
    """Measure a pair and run the R3xx pair checks. Returns (measurements, findings ordered root
    cause first, IDs of the checks that ran). `findings[0]` is the top finding. `hop_samples`: the
    codec's frame hop if known (R317)."""
    m = measure_pair(ref, est, sample_rate, subject=subject, output_bound=output_bound,
                     max_lag_samples=max_lag_samples, hop_samples=hop_samples)
    findings, ran = judge_pair(m)
    return m, findings, ran


def judge_pair(m: PairMeasurements) -> tuple[list[Finding], list[str]]:
    """Run the R3xx pair checks on measurements (whole-file or streamed) and order the findings."""
    from codecdoctor.core.registry import run_checks

    run = run_checks("reconstruction", m, level="pair")
    m.notes.extend(run.notes)  # a check's internal error travels with the pair (core.registry.internal_errors)
    findings = order_findings(run.findings, m)
    _link_symptom_to_causes(findings)
    return findings, run.checks_run


def _link_symptom_to_causes(findings: list[Finding]) -> None:
    """Say in the negative-SNR finding which findings above it explain it."""
    causes = [f.id for f in findings if f.id not in ("R300", "R301") and int(f.severity) >= 1]
    for f in findings:
        if f.id == "R301":
            if causes:
                f.message += f" Explained by: {', '.join(dict.fromkeys(causes))} (see above)."
            else:
                f.message += " No single correctable cause found: the output is mostly error (train longer, check the loss)."


# ---- R313: how a set of chunks is averaged -------------------------------------------------------

def diagnose_chunk_set(refs: Sequence[Any], ests: Sequence[Any], subject: str | None = None,
                       ) -> tuple[ChunkSetMeasurements, list[Finding], list[str]]:
    """Measure a chunk set and run the set-level checks (R313)."""
    from codecdoctor.core.registry import run_checks

    m = measure_chunk_set(refs, ests, subject=subject)
    run = run_checks("reconstruction", m, level="set")
    return m, order_findings(run.findings), run.checks_run
