"""Renderers: one Report, three views (terminal, HTML, JSON)."""
from codecdoctor.report.sections import Figure, Table, Text

__all__ = ["Figure", "Table", "Text"]
