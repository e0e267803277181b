"""Differential diagnosis of a reconstruction: measure the pair, run the R3xx judges, order the findings.

Each R3xx check compares "all fixes" with "all fixes but mine" in the what-if table, so the fix
whose absence costs the most is the root cause; `order_findings` puts it first and a finding that
another explains says so. Shared by `compare`, `check-ckpt --data` and the live monitor's T608.
"""
from __future__ import annotations

from typing import Any, Sequence

from codecdoctor.core.findings import Finding
from codecdoctor.measure.pair import ChunkSetMeasurements, PairMeasurements, measure_chunk_set, measure_pair

# Root causes first: the order in which findings of equal severity are listed. A symptom (R301
# negative SNR) and the summary (R300) come last.
ROOT_ORDER = ("R309", "R315", "R305", "R306", "R314", "R312", "R304", "R303", "R302", "R308", "R307",
              "R311", "R310", "R316", "R313", "R301", "R300")


def _order_key(f: Finding) -> tuple[int, int]:
    rank = ROOT_ORDER.index(f.id) if f.id in ROOT_ORDER else len(ROOT_ORDER)
    return (-int(f.severity), rank)


def order_findings(findings: Sequence[Finding]) -> list[Finding]:
    """Worst first; within one severity, root causes before symptoms (ROOT_ORDER)."""
    return sorted(findings, key=_order_key)


def diagnose_pair(ref: Any, est: Any, sample_rate: int, subject: str | None = None,
                  output_bound: float | None = None, *, max_lag_samples: int | None = None,
                  ) -> tuple[PairMeasurements, list[Finding], list[str]]:
    """Measure a pair and run the R3xx pair checks. Returns (measurements, findings ordered root
    cause first, IDs of the checks that ran). `findings[0]` is the top finding."""
    from codecdoctor.core.registry import run_checks

    m = measure_pair(ref, est, sample_rate, subject=subject, output_bound=output_bound,
                     max_lag_samples=max_lag_samples)
    run = run_checks("reconstruction", m, level="pair")
    findings = order_findings(run.findings)
    _link_symptom_to_causes(findings)
    return m, findings, run.checks_run


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
