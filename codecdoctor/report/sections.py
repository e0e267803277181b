"""Extra report content beyond findings: tables, figures and text blocks.

Commands attach these to `Report.sections`; the HTML renderer shows all of them, the terminal
renderer shows tables and text (figures are HTML only). They are not part of the JSON contract,
whose numbers live in `Report.measurements`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    # The terminal shows at most this many rows (the HTML shows all); None = all.
    terminal_rows: int | None = 30


@dataclass
class Figure:
    title: str
    data_uri: str  # "data:image/png;base64,..." from codecdoctor.report.plots
    caption: str = ""
    alt: str = ""


@dataclass
class Text:
    title: str
    body: str
    html_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
