"""What every report-producing command shares: the output options and the one finishing step.

A command parses its options, calls one library function, then `finish()`: render the terminal
report, write HTML and JSON, and pick the exit code (0, 1 by --fail-on, 2 when the command could not
do its job; the report is still written first).
"""
from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, NoReturn, Optional

import typer

from codecdoctor.core.findings import Report

DEFAULT_REPORT_DIR = Path("reports")


class FailOn(str, enum.Enum):
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"


HtmlOption = Annotated[Optional[str], typer.Option(
    "--html", metavar="PATH", help="Write the HTML report here (default: reports/<command>.html; 'none' to skip).")]
JsonOption = Annotated[Optional[str], typer.Option(
    "--json", metavar="PATH", help="Write the JSON report here ('-' = stdout; default: reports/<command>.json; "
                                   "'none' to skip).")]
FailOnOption = Annotated[FailOn, typer.Option(
    "--fail-on", case_sensitive=False, help="Exit 1 when any finding is at or above this severity.")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where a command's report goes, and which severity fails the run."""

    html: str | None = None
    json: str | None = None
    fail_on: FailOn = FailOn.error

    @property
    def wants_html(self) -> bool:
        return self.html is None or str(self.html).lower() != "none"


def console_for(json_target: str | None):
    """Terminal output goes to stderr when JSON goes to stdout, so `--json -` pipes clean JSON."""
    from rich.console import Console

    return Console(stderr=(json_target == "-"), highlight=False, soft_wrap=False)


def _target(value: str | Path | None, default: Path) -> Path | None:
    if value is None:
        return default
    if str(value).lower() == "none":
        return None
    return Path(value)


def write_outputs(report: Report, outputs: Outputs, *, name: str, console: Any = None,
                  title: str | None = None) -> list[Path]:
    """Write the HTML and JSON views; returns the files written."""
    from codecdoctor.report import html as html_view
    from codecdoctor.report import json as json_view

    console = console or console_for(outputs.json)
    written: list[Path] = []
    html_path = _target(outputs.html, DEFAULT_REPORT_DIR / f"{name}.html")
    if html_path is not None:
        html_view.write(report, html_path, title=title)
        written.append(html_path)
    if outputs.json == "-":
        sys.stdout.write(json_view.dumps(report) + "\n")
        sys.stdout.flush()
    else:
        json_path = _target(outputs.json, DEFAULT_REPORT_DIR / f"{name}.json")
        if json_path is not None:
            json_view.write(report, json_path)
            written.append(json_path)
    if written:
        console.print("reports: " + "  ".join(str(p) for p in written), style="dim", markup=False)
    return written


def finish(report: Report, outputs: Outputs, *, name: str, title: str | None = None,
           console: Any = None) -> NoReturn:
    """Render to the terminal, write the HTML/JSON views, then exit: 2 with one line when the report
    says the command could not do its job (`report.fatal`), else 0 or 1 according to --fail-on."""
    from codecdoctor.core.errors import InputError
    from codecdoctor.report import terminal

    console = console or console_for(outputs.json)
    terminal.render(report, console)
    write_outputs(report, outputs, name=name, console=console, title=title)
    if report.fatal:
        raise InputError(report.fatal)
    raise typer.Exit(report.exit_code(outputs.fail_on.value))


# --- command lines generated from dataclasses ---------------------------------------------------

def _optional_inner(annotation: Any) -> tuple[Any, bool]:
    """(T, True) for `T | None` / Optional[T], else (annotation, False)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def options_from_dataclass(cls: type) -> list[inspect.Parameter]:
    """One typer option per dataclass field that carries a `help` in its metadata: the flag is the
    field name with underscores (the user's original spelling) and with dashes; `choices` become an
    Enum; fields without a default are required."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help")
        if help_text is None:
            continue
        inner, optional = _optional_inner(hints[f.name])
        choices = f.metadata.get("choices")
        if choices:
            inner = enum.Enum(f"{f.name.title().replace('_', '')}Choice", {c: c for c in choices}, type=str)
        annotation = Optional[inner] if optional else inner
        dashed = f.name.replace("_", "-")
        flags = [f"--{f.name}"] + ([f"--{dashed}"] if dashed != f.name else [])
        if inner is bool:
            flags = [f"--{dashed}/--no-{dashed}"] + ([f"--{f.name}"] if dashed != f.name else [])
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        if choices and default not in (None, inspect.Parameter.empty):
            default = inner(default)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[annotation, typer.Option(*flags, help=help_text,
                                                                                      case_sensitive=False)]))
    return params


def plain_values(values: dict[str, Any]) -> dict[str, Any]:
    """Enum choices back to their strings, for the dataclass."""
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in values.items()}


def with_signature(func: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    """Give `func(**kwargs)` the generated signature typer reads its options from."""
    ordered = sorted(params, key=lambda p: p.default is not inspect.Parameter.empty)
    func.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in ordered}
    return func
