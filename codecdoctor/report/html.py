"""Self-contained HTML view: inline CSS, images as data: URIs, no script, no network request.

Pages are jinja2 templates (report/templates/) with autoescaping on, so every string that can come
from the outside (file names, tensor names, config values, messages) is escaped by default: a file
called `<script>alert(1)</script>.wav` is shown, never run. The first screen carries what a user
looks for first: the verdict, the command's key numbers, the top finding with its what-if numbers
and the command's main figure.
"""
from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from pathlib import Path
from typing import Any

from codecdoctor.core.findings import Report, Severity, explained_earlier

TEMPLATES = Path(__file__).parent / "templates"
WHAT_IF_LABELS = (("snr_raw_db", "nothing"), ("snr_gain_db", "gain"), ("snr_aligned_db", "alignment"),
                  ("snr_polarity_db", "polarity"), ("snr_all_db", "all"))


def _what_if_rows(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    if not evidence or "snr_all_db" not in evidence:
        return []
    return [(label, evidence[key]) for key, label in WHAT_IF_LABELS if key in evidence]


def _db2(value: Any) -> str:
    """dB with two decimals, the precision the findings' prose uses."""
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number or number in (float("inf"), float("-inf")):
        return str(number)
    return f"{number:.2f}"


@lru_cache(maxsize=1)
def environment():
    """The jinja2 environment: autoescape on for every template, numbers through format_number."""
    import jinja2

    from codecdoctor.report.terminal import format_number

    try:  # compiled templates kept in the user's own temp folder: compiling them costs ~0.1 s a run
        cache = jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):  # no writable private temp folder: compile every time
        cache = None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                             bytecode_cache=cache)
    env.filters["num"] = format_number
    env.filters["what_if_rows"] = _what_if_rows
    env.filters["db2"] = _db2
    env.globals["css"] = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return env


def render_page(template: str, **context: Any) -> str:
    """Render any page template (the report, the demo index) with the shared CSS."""
    context.setdefault("generated", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return environment().get_template(template).render(**context)


def _verdict(report: Report) -> tuple[str, str]:
    worst = report.worst()
    counts = report.summary()
    if worst is None or worst == Severity.INFO:
        return "ok", "No problems found"
    n = counts[worst.label]
    return worst.label, f"{n} {worst.label} finding{'s' if n != 1 else ''} at the top"


def _docs(report: Report) -> dict[str, Any]:
    """Catalog entries of the checks this report names. The checks that ran here are registered
    already, so other scopes' check modules (and what they import) are not loaded for them."""
    from codecdoctor.core import registry

    docs = {}
    for check_id in sorted({f.id for f in report.findings} | set(report.checks_run)):
        try:
            docs[check_id] = registry.get(check_id)
        except KeyError:  # an ID this version does not know (a report from another version)
            pass
    return docs


def render(report: Report, title: str | None = None) -> str:
    from codecdoctor.report.figures import first_screen, sections_for

    verdict_class, verdict_text = _verdict(report)
    sections = sections_for(report, figures=True)
    key_numbers, main_figure = first_screen(report, sections)
    findings = report.sorted_findings()
    shown = [f for f in findings if f.evidence.get("resolved_at_step") is None]
    folded = [f for f in findings if f.evidence.get("resolved_at_step") is not None]
    return render_page(
        "report.html.j2",
        title=title or f"codecdoctor {report.command}",
        args=", ".join(f"{k}={v}" for k, v in report.args.items() if v not in (None, "", [], False)),
        verdict_class=verdict_class, verdict_text=verdict_text,
        counts=[(s.label, report.summary()[s.label]) for s in reversed(Severity)],
        key_numbers=key_numbers, top=shown[0] if shown else None, main_figure=main_figure,
        findings=shown, repeats=explained_earlier(shown), folded=folded, sections=[s for s in sections if s is not main_figure],
        notes=report.notes, checks_run=report.checks_run,
        docs=_docs(report),
    )


def write(report: Report, path: Path, title: str | None = None) -> None:
    from codecdoctor.core.io import atomic_write_text

    atomic_write_text(Path(path), render(report, title))
