"""Self-contained HTML view: inline CSS, images as data: URIs, no script, no network request.

Every string that can come from the outside (file names, tensor names, config values, messages)
goes through `esc`, so a file called `<script>alert(1)</script>.wav` is shown, never run.
"""
from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path
from typing import Any

from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.report.sections import Figure, Table, Text
from codecdoctor.report.terminal import format_number

CSS = """
:root{--fg:#1a202c;--muted:#5a6475;--bg:#f7f8fa;--card:#fff;--line:#e2e6ec;
--info:#2f6f9f;--warning:#b7791f;--error:#c53030;--critical:#822727;--ok:#2f855a}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .5em;border-bottom:1px solid var(--line);padding-bottom:.2em}
.meta{color:var(--muted);font-size:.9em;word-break:break-all}
.verdict{border-radius:8px;padding:12px 16px;margin:12px 0;color:#fff;font-weight:600}
.verdict.ok{background:var(--ok)}.verdict.warning{background:var(--warning)}
.verdict.error{background:var(--error)}.verdict.critical{background:var(--critical)}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.count{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:4px 10px}
.finding{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--info);
border-radius:6px;padding:10px 14px;margin:10px 0;overflow-wrap:anywhere}
.finding.warning{border-left-color:var(--warning)}.finding.error{border-left-color:var(--error)}
.finding.critical{border-left-color:var(--critical)}
.badge{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:.8em;font-weight:700;margin-right:6px}
.badge.info{background:var(--info)}.badge.warning{background:var(--warning)}
.badge.error{background:var(--error)}.badge.critical{background:var(--critical)}
.subject{color:var(--muted);font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
.label{font-weight:600}
dl.evidence{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0;font-size:.9em}
dl.evidence dt{font-family:ui-monospace,Menlo,Consolas,monospace;color:var(--muted)}
dl.evidence dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace}
details{margin-top:4px}summary{cursor:pointer;color:var(--muted)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;background:var(--card);font-size:.88em;min-width:100%}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:12px 0;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:var(--muted);font-size:.88em;margin-top:4px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--card);border:1px solid var(--line);padding:8px;border-radius:6px}
.checks{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;color:var(--muted)}
@media (max-width:600px){body{font-size:14px}main{padding:8px}dl.evidence{grid-template-columns:1fr}}
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page_head(title: str, extra_css: str = "") -> str:
    """Everything up to and including `<main>`: charset, viewport, CSP, title, inline CSS."""
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        # No script, no external resource: forbid both even if a string ever slipped through.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{esc(title)}</title><style>{CSS}{extra_css}</style></head><body><main>",
    ])


PAGE_TAIL = "</main></body></html>"


def _verdict(report: Report) -> tuple[str, str]:
    worst = report.worst()
    counts = report.summary()
    if worst is None or worst == Severity.INFO:
        return "ok", "No problems found"
    n = counts[worst.label]
    return worst.label, f"{n} {worst.label} finding{'s' if n != 1 else ''} at the top"


def _finding_html(finding: Finding, docs: dict[str, Any]) -> str:
    sev = finding.severity.label
    parts = [f'<div class="finding {sev}" id="finding-{esc(finding.id)}">']
    parts.append(f'<div><span class="badge {sev}">{esc(finding.id)}</span><strong>{esc(finding.title)}</strong>')
    if finding.subject:
        parts.append(f' <span class="subject">{esc(finding.subject)}</span>')
    parts.append("</div>")
    parts.append(f"<p>{esc(finding.message)}</p>")
    if finding.evidence:
        rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(format_number(v))}</dd>" for k, v in finding.evidence.items())
        parts.append(f'<dl class="evidence">{rows}</dl>')
    if finding.cause:
        label = "Why it matters" if finding.severity == Severity.INFO else "Likely cause"
        parts.append(f'<p><span class="label">{label}:</span> {esc(finding.cause)}</p>')
    if finding.fix:
        parts.append(f'<p><span class="label">Fix:</span> {esc(finding.fix)}</p>')
    doc = docs.get(finding.id)
    if doc is not None:
        parts.append(f"<details><summary>About {esc(finding.id)}</summary>"
                     f"<p><span class=\"label\">What:</span> {esc(doc.what)}</p>"
                     f"<p><span class=\"label\">Why:</span> {esc(doc.why)}</p></details>")
    parts.append("</div>")
    return "".join(parts)


def _cell(value: Any) -> str:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = ' class="num"' if is_number else ""
    return f"<td{cls}>{esc(format_number(value))}</td>"


def _table_html(section: Table) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in section.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in section.rows)
    caption = f"<figcaption>{esc(section.caption)}</figcaption>" if section.caption else ""
    return (f"<h2>{esc(section.title)}</h2><div class=\"scroll\"><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>{caption}")


def _figure_html(section: Figure) -> str:
    # Only our own data: URIs are embedded; anything else would be a network request.
    if not section.data_uri.startswith("data:image/"):
        return f"<p>figure {esc(section.title)} omitted: not an embedded image</p>"
    return (f"<figure><img src=\"{esc(section.data_uri)}\" alt=\"{esc(section.alt or section.title)}\">"
            f"<figcaption><strong>{esc(section.title)}</strong>{(' - ' + esc(section.caption)) if section.caption else ''}"
            f"</figcaption></figure>")


def _section_html(section: Any) -> str:
    if isinstance(section, Table):
        return _table_html(section)
    if isinstance(section, Figure):
        return _figure_html(section)
    if isinstance(section, Text):
        return f"<h2>{esc(section.title)}</h2><pre>{esc(section.body)}</pre>"
    return ""


def render(report: Report, title: str | None = None) -> str:
    from codecdoctor.core import registry

    docs = {info.id: info for info in registry.all_checks()}
    verdict_class, verdict_text = _verdict(report)
    counts = report.summary()
    page_title = title or f"codecdoctor {report.command}"
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    args = ", ".join(f"{k}={v}" for k, v in report.args.items() if v not in (None, "", [], False))
    out = [
        page_head(page_title),
        f"<h1>{esc(page_title)}</h1>",
        f"<div class=\"meta\">generated {esc(generated)}{' &middot; ' + esc(args) if args else ''}</div>",
        f"<div class=\"verdict {verdict_class}\">{esc(verdict_text)}</div>",
        "<div class=\"counts\">" + "".join(
            f"<span class=\"count\"><span class=\"badge {s.label}\">{esc(s.label)}</span>{counts[s.label]}</span>"
            for s in reversed(Severity)) + f"<span class=\"count\">{len(report.checks_run)} checks ran</span></div>",
    ]
    findings = report.sorted_findings()
    out.append(f"<h2>Findings ({len(findings)})</h2>")
    if not findings:
        out.append("<p>No findings.</p>")
    out.append("<div id=\"findings\">" + "".join(_finding_html(f, docs) for f in findings) + "</div>")
    for section in report.sections:
        out.append(_section_html(section))
    if report.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>")
    checks = " ".join(f"<span title=\"{esc(docs[c].title) if c in docs else ''}\">{esc(c)}</span>" for c in report.checks_run)
    out.append(f"<h2>Checks that ran ({len(report.checks_run)})</h2><p class=\"checks\">{checks or 'none'}</p>")
    out.append(PAGE_TAIL)
    return "\n".join(out)


def write(report: Report, path: Path, title: str | None = None) -> None:
    from codecdoctor.core.io import atomic_write_text

    atomic_write_text(Path(path), render(report, title))
