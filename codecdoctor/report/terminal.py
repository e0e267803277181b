"""Rich terminal view: a one-line verdict, findings grouped by severity with their numbers, extra
tables, and which checks ran."""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table as RichTable
from rich.text import Text as RichText

from codecdoctor.core.findings import Finding, Report, Severity, explained_earlier
from codecdoctor.report.sections import Table, Text

STYLES = {
    Severity.CRITICAL: "bold white on red",
    Severity.ERROR: "bold red",
    Severity.WARNING: "bold yellow",
    Severity.INFO: "cyan",
}


# C0 controls except newline and tab, DEL, and C1 controls: a file or tensor name holding these could
# clear the screen, retitle the terminal or plant a hyperlink (OSC 8) if printed raw.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]}


def printable(value: Any) -> str:
    """`value` as text with control characters shown as visible `\\xNN` escapes."""
    return str(value).translate(_CONTROL)


def format_number(value: Any) -> str:
    """Numbers short enough to read, precise enough to act on (1.0129, 38.2, 1.2e-05)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.3g}"
    if magnitude >= 100:
        return f"{value:.1f}"
    # five significant digits: a peak of 1.0129 must not read as 1.013 (or 1.01), and 0.99997 vs
    # 1.0 is exactly the difference between a rail and a clip
    return f"{value:.5g}"


def verdict_line(report: Report) -> RichText:
    counts = report.summary()
    worst = report.worst()
    ran = len(report.checks_run)
    if worst is None or worst == Severity.INFO:
        head, style = "OK", "bold green"
    elif worst == Severity.WARNING:
        head, style = "WARNINGS", "bold yellow"
    else:
        head, style = "PROBLEMS FOUND", "bold red"
    parts = ", ".join(f"{counts[s.label]} {s.label}" for s in reversed(Severity))
    line = RichText()
    line.append(f"{head} ", style=style)
    line.append(f"codecdoctor {report.command}: {parts}; {ran} checks ran")
    return line


def finding_renderable(finding: Finding, explained: bool = False) -> Group:
    """A finding's header, message and evidence, then its cause and fix; `explained`: a finding of
    the same check with the same cause and fix was printed above, so one line points there (a
    folder of 50 delayed pairs printed the same two paragraphs 50 times)."""
    header = RichText()
    header.append(f"{printable(finding.id)} ", style=STYLES[finding.severity])
    header.append(printable(finding.title), style="bold")
    if finding.subject:
        header.append(f"  [{printable(finding.subject)}]", style="dim")
    lines: list[Any] = [header, RichText("  " + printable(finding.message))]
    if finding.evidence:
        evidence = "  ".join(f"{printable(k)}={printable(format_number(v))}" for k, v in finding.evidence.items())
        lines.append(RichText("  evidence: " + evidence, style="dim"))
    if finding.items:
        lines.extend(item_lines(finding))
    if explained and (finding.cause or finding.fix):
        lines.append(RichText(f"  cause and fix: as for {printable(finding.id)} above", style="dim italic"))
        return Group(*lines)
    if finding.cause:
        label = "  why: " if finding.severity == Severity.INFO else "  cause: "
        lines.append(RichText(label + printable(finding.cause), style="italic"))
    if finding.fix:
        lines.append(RichText("  fix: " + printable(finding.fix), style="green"))
    return Group(*lines)


# A grouped finding lists its first items in the terminal; all of them are in the HTML and JSON.
ITEM_LINES = 6


def item_lines(finding: Finding, limit: int = ITEM_LINES) -> list[RichText]:
    """One line per grouped item (subject, severity where it differs, message), then how many more."""
    lines = [RichText(f"  {len(finding.items)} items:", style="dim")]
    for item in finding.items[:limit]:
        severity = "" if item.severity == finding.severity else f" [{item.severity.label}]"
        # one screen line each: the full message is in the HTML and JSON
        lines.append(RichText(f"    {printable(item.subject)}{severity}: {printable(item.message)}", style="dim",
                              no_wrap=True, overflow="ellipsis"))
    if len(finding.items) > limit:
        lines.append(RichText(f"    ... {len(finding.items) - limit} more in the HTML report and the JSON's "
                              "measurements.grouped", style="dim"))
    return lines


def table_renderable(section: Table) -> RichTable:
    table = RichTable(title=escape(printable(section.title)), title_justify="left", show_lines=False,
                      header_style="bold")
    for column in section.columns:
        table.add_column(escape(printable(column)), overflow="fold")
    rows = section.rows if section.terminal_rows is None else section.rows[: section.terminal_rows]
    for row in rows:
        table.add_row(*(escape(printable(format_number(cell))) for cell in row))
    hidden = len(section.rows) - len(rows)
    if hidden > 0:
        table.caption = f"... {hidden} more rows in the HTML/JSON report"
    elif section.caption:
        table.caption = escape(printable(section.caption))
    return table


def render(report: Report, console: Console, max_per_severity: int = 40) -> None:
    from codecdoctor.report.figures import sections_for

    for section in sections_for(report, figures=False):
        if isinstance(section, Table):
            console.print(table_renderable(section))
        elif isinstance(section, Text):
            console.print(Panel(RichText(printable(section.body)), title=escape(printable(section.title)),
                                title_align="left"))
    findings = report.sorted_findings()
    groups = [(severity, [f for f in findings if f.severity == severity]) for severity in reversed(Severity)]
    printed = [f for _, group in groups for f in group[:max_per_severity]]
    repeats = iter(explained_earlier(printed))
    for severity, group in groups:
        if not group:
            continue
        console.rule(RichText(f"{severity.label.upper()} ({len(group)})", style=STYLES[severity]), align="left")
        for finding in group[:max_per_severity]:
            console.print(finding_renderable(finding, explained=next(repeats) is not None))
        if len(group) > max_per_severity:
            console.print(f"  ... {len(group) - max_per_severity} more {severity.label} findings in the HTML/JSON report")
    for note in report.notes:
        console.print(RichText("note: " + printable(note), style="dim"))
    if report.checks_run:
        console.print(RichText("checks ran: " + " ".join(report.checks_run), style="dim"))
    console.print(verdict_line(report))
