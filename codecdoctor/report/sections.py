"""Report content beyond findings: tables, figures and text blocks.

A command's standard sections are built at render time by codecdoctor.report.figures from
`Report.measurements`; `Report.sections` holds any extra ones. The HTML renderer shows all of them,
the terminal renderer tables and text (figures are HTML only). They are not part of the JSON
contract, whose numbers live in `Report.measurements`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list]
    caption: str = ""
    # The terminal shows at most this many rows (the HTML shows all); None = all.
    terminal_rows: int | None = 30
    kind = "table"


@dataclass
class Figure:
    """A figure: an inline SVG chart (`svg`, markupsafe.Markup from codecdoctor.report.svg; a plain
    string there is escaped, never drawn), or a PNG given as a data URI (`data_uri`), e.g. a figure
    a user adds to `Report.sections`."""

    title: str
    data_uri: str = ""  # "data:image/png;base64,..."
    caption: str = ""
    alt: str = ""
    svg: Any = None
    kind = "figure"


@dataclass
class Text:
    title: str
    body: str
    kind = "text"
