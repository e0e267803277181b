"""Plotting on matplotlib's Agg backend, returning images that embed in a self-contained HTML file.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot global state), so plotting is
safe from worker threads and never opens a window.
"""
from __future__ import annotations

import base64
import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from codecdoctor.report.sections import Figure
from codecdoctor.report.svg import SEVERITY_COLORS  # noqa: F401 - one palette for PNG and SVG figures


def new_figure(width_in: float = 6.4, height_in: float = 3.2, nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """A figure and its axes, styled for the report."""
    fig = MplFigure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    for ax in (axes.flat if hasattr(axes, "flat") else [axes]):
        ax.grid(True, alpha=0.3, linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def to_png_bytes(fig: MplFigure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def to_data_uri(fig: MplFigure, dpi: int = 110) -> str:
    """PNG as a data: URI, so the HTML makes no request to load it."""
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(fig, dpi)).decode("ascii")


def figure_section(fig: MplFigure, title: str, caption: str = "", alt: str = "") -> Figure:
    return Figure(title=title, data_uri=to_data_uri(fig), caption=caption, alt=alt or title)
