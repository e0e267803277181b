"""Per-command tables and figures, drawn at render time from `Report.measurements` only.

Each module here exposes `build(report, *, figures: bool) -> list[Section]` (tables and text always,
figures, inline SVG from codecdoctor.report.svg, only when `figures` is true, i.e. for the HTML
view) and optionally
`key_numbers(report) -> list[(label, text)]`, the numbers the HTML report shows in its first screen.
Library calls never draw: a report re-loaded from JSON renders the same page.
"""
from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

_MODULES = {"audit-data": "audit", "compare": "compare", "probe": "probe", "check-ckpt": "check_ckpt", "env": "env",
            "train": "train", "monitor": "train", "watch": "train"}


def _module(report: Any):
    name = _MODULES.get(report.command)
    return import_module(f"{__name__}.{name}") if name else None


def sections_for(report: Any, *, figures: bool) -> list[Any]:
    """The command's standard sections followed by any extra `report.sections`. A drawing failure
    costs the figures, never the report: it becomes a note."""
    module = _module(report)
    built: list[Any] = []
    if module is not None and hasattr(module, "build"):
        try:
            built = list(module.build(report, figures=figures))
        except Exception as exc:  # noqa: BLE001 - a view must never lose the findings
            report.notes.append(f"{report.command} sections not drawn: {type(exc).__name__}: {exc}")
    return built + list(report.sections)


def first_screen(report: Any, sections: list[Any]) -> tuple[list[tuple[str, str]], Any]:
    """(key numbers, main figure) for the top of the HTML page."""
    module = _module(report)
    keys: list[tuple[str, str]] = []
    if module is not None and hasattr(module, "key_numbers"):
        try:
            keys = list(module.key_numbers(report))
        except Exception as exc:  # noqa: BLE001
            report.notes.append(f"key numbers not computed: {type(exc).__name__}: {exc}")
    main = next((s for s in sections if getattr(s, "kind", "") == "figure"), None)
    return keys, main


def view(value: Any) -> Any:
    """Attribute access over a measurement that may be a dataclass (fresh run) or a dict (a report
    re-loaded from JSON), recursively for dicts."""
    if isinstance(value, dict):
        return SimpleNamespace(**{str(k): view(v) for k, v in value.items()})
    return value


def db_text(value: Any, unit: str = "dB") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if number != number:
        return "n/a"
    if number in (float("inf"), float("-inf")):
        return ("+" if number > 0 else "-") + "inf " + unit
    return f"{number:.2f} {unit}"
