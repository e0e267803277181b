"""Options and the finishing step shared by every command that produces a report."""
from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

from codecdoctor.core.findings import Report

DEFAULT_REPORT_DIR = Path("reports")


class FailOn(str, enum.Enum):
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


def html_option() -> Optional[Path]:
    return typer.Option(None, "--html", metavar="PATH",
                        help="Write the HTML report here (default: reports/<command>.html; 'none' to skip).")


def json_option() -> Optional[str]:
    return typer.Option(None, "--json", metavar="PATH",
                        help="Write the JSON report here ('-' = stdout; default: reports/<command>.json; 'none' to skip).")


def fail_on_option() -> FailOn:
    return typer.Option(FailOn.error, "--fail-on", case_sensitive=False,
                        help="Exit 1 when any finding is at or above this severity.")


def console_for(json_target: str | None) -> Console:
    """Terminal output goes to stderr when JSON goes to stdout, so `--json -` pipes clean JSON."""
    return Console(stderr=(json_target == "-"), highlight=False, soft_wrap=False)


def _target(value: str | Path | None, default: Path) -> Path | None:
    if value is None:
        return default
    if str(value).lower() == "none":
        return None
    return Path(value)


def write_outputs(report: Report, *, html: Path | str | None, json: str | None, name: str,
                  console: Console | None = None, title: str | None = None) -> list[Path]:
    """Write the HTML and JSON views; returns the files written."""
    from codecdoctor.report import html as html_view
    from codecdoctor.report import json as json_out

    console = console or console_for(json)
    written: list[Path] = []
    html_path = _target(html, DEFAULT_REPORT_DIR / f"{name}.html")
    if html_path is not None:
        html_view.write(report, html_path, title=title)
        written.append(html_path)
    if json == "-":
        sys.stdout.write(json_out.dumps(report) + "\n")
        sys.stdout.flush()
    else:
        json_path = _target(json, DEFAULT_REPORT_DIR / f"{name}.json")
        if json_path is not None:
            json_out.write(report, json_path)
            written.append(json_path)
    if written:
        console.print("reports: " + "  ".join(str(p) for p in written), style="dim", markup=False)
    return written


def finish(report: Report, *, html: Path | str | None, json: str | None, fail_on: FailOn, name: str,
           title: str | None = None) -> NoReturn:
    """Render to the terminal, write the HTML/JSON views, exit 0 or 1 according to --fail-on."""
    from codecdoctor.report import terminal

    console = console_for(json)
    terminal.render(report, console)
    write_outputs(report, html=html, json=json, name=name, console=console, title=title)
    raise typer.Exit(report.exit_code(fail_on.value))


def not_built(command: str) -> NoReturn:
    from codecdoctor.core.errors import InputError

    raise InputError(f"'{command}' is not built yet in this version")
