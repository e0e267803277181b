"""The demo's `index.html`: one card per step with its verdict paragraph and links to its reports."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from codecdoctor.core.findings import Report, Severity
from codecdoctor.core.io import atomic_write_text
from codecdoctor.report.html import PAGE_TAIL, esc, page_head

INDEX_CSS = """
.step{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:14px 0}
.step h2{border:0;margin:.1em 0 .3em}
.step.saga{border-left:6px solid var(--warning)}.step.healthy{border-left:6px solid var(--ok)}
.ids{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:.8em;font-weight:700;color:#fff;margin-right:6px}
.tag.pass{background:var(--ok)}.tag.fail{background:var(--error)}
.links a{margin-right:12px}
"""


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


def _step_html(step: DemoStep, index_dir: Path) -> str:
    status = "pass" if step.passed else "fail"
    label = {"healthy": "healthy step: no error findings expected",
             "saga": "fault planted: the expected check IDs must be named"}[step.kind]
    parts = [f'<section class="step {esc(step.kind)}">',
             f'<h2><span class="tag {status}">{"as expected" if step.passed else "unexpected"}</span>{esc(step.title)}</h2>',
             f'<p class="meta">{esc(label)}</p><p>{esc(step.story)}</p>']
    if step.error:
        parts.append(f"<p><strong>This step could not run:</strong> {esc(step.error)}</p>")
    if step.verdict:
        items = [item for item in step.verdict.split(" | ") if item]
        if len(items) == 1:
            parts.append(f"<p><strong>Verdict:</strong> {esc(items[0])}</p>")
        else:
            parts.append("<p><strong>Verdict:</strong></p><ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
    if step.report is not None:
        counts = step.report.summary()
        count_text = ", ".join(f"{counts[s.label]} {s.label}" for s in reversed(Severity))
        parts.append(f'<p class="ids">findings: {esc(" ".join(step.found_ids) or "none")} ({esc(count_text)})')
        if step.expected_ids:
            parts.append(f'<br>expected: {esc(" ".join(step.expected_ids))}')
            if step.missing_ids:
                parts.append(f' - <strong>missing: {esc(" ".join(step.missing_ids))}</strong>')
        parts.append("</p>")
    links = []
    for label_text, path in (("HTML report", step.html_path), ("JSON", step.json_path)):
        if path is not None:
            href = Path(os.path.relpath(path, index_dir)).as_posix()
            links.append(f'<a href="{esc(href)}">{esc(label_text)}</a>')
    if links:
        parts.append(f'<p class="links">{"".join(links)}</p>')
    parts.append("</section>")
    return "".join(parts)


def write_index(path: Path, steps: list[DemoStep], *, intro: str, facts: list[str]) -> Path:
    path = Path(path)
    passed = sum(step.passed for step in steps)
    verdict_class = "ok" if passed == len(steps) else "error"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        page_head("codecdoctor demo: the negative-SNR saga, measured", INDEX_CSS),
        "<h1>codecdoctor demo: the negative-SNR saga, measured</h1>",
        f'<div class="meta">generated {esc(generated)}</div>',
        f'<div class="verdict {verdict_class}">{passed} of {len(steps)} steps diagnosed as expected</div>',
        f"<p>{esc(intro)}</p>",
        "<ul>" + "".join(f"<li>{esc(fact)}</li>" for fact in facts) + "</ul>",
    ]
    body += [_step_html(step, path.parent) for step in steps]
    body.append(PAGE_TAIL)
    atomic_write_text(path, "\n".join(body))
    return path
