"""The demo's `index.html`: one card per step with its verdict paragraph and links to its reports."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from codecdoctor.core.findings import Report, Severity
from codecdoctor.core.io import atomic_write_text
from codecdoctor.report.html import render_page


@dataclass
class DemoStep:
    title: str
    story: str  # what this step reproduces, in the team's words
    kind: str  # "healthy" (expect no error findings) or "saga" (expect the named IDs)
    report: Report | None = None
    html_path: Path | None = None
    json_path: Path | None = None
    expected_ids: list[str] = field(default_factory=list)
    verdict: str = ""  # one paragraph, written from the measured findings
    error: str | None = None  # the step could not run: why

    @property
    def found_ids(self) -> list[str]:
        return [] if self.report is None else sorted(set(self.report.ids()))

    @property
    def missing_ids(self) -> list[str]:
        return [i for i in self.expected_ids if i not in self.found_ids]

    @property
    def passed(self) -> bool:
        if self.report is None:
            return False
        if self.kind == "healthy":
            worst = self.report.worst()
            return worst is None or worst < Severity.ERROR
        return not self.missing_ids


_KIND_LABELS = {"healthy": "healthy step: no error findings expected",
                "saga": "fault planted: the expected check IDs must be named"}


def _step_view(step: DemoStep, index_dir: Path) -> dict:
    """What the template shows for one step (all strings are escaped by the template)."""
    counts = step.report.summary() if step.report is not None else {}
    links = [(label, Path(os.path.relpath(path, index_dir)).as_posix())
             for label, path in (("HTML report", step.html_path), ("JSON", step.json_path)) if path is not None]
    return {
        "kind": step.kind, "title": step.title, "story": step.story, "passed": step.passed,
        "label": _KIND_LABELS[step.kind], "error": step.error,
        "verdict_items": [item for item in step.verdict.split(" | ") if item],
        "has_report": step.report is not None, "found_ids": step.found_ids, "expected_ids": step.expected_ids,
        "missing_ids": step.missing_ids,
        "count_text": ", ".join(f"{counts[s.label]} {s.label}" for s in reversed(Severity)) if counts else "",
        "links": links,
    }


def write_index(path: Path, steps: list[DemoStep], *, intro: str, facts: list[str]) -> Path:
    path = Path(path)
    page = render_page("demo_index.html.j2", title="codecdoctor demo: the negative-SNR saga, measured",
                       steps=[_step_view(step, path.parent) for step in steps],
                       passed=sum(step.passed for step in steps), intro=intro, facts=facts)
    atomic_write_text(path, page)
    return path
