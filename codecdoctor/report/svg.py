"""The report's one plotting stack: small charts drawn as inline SVG. Linear or log axes with
readable ticks, scatter points, lines (with or without markers), filled histogram stairs, step
lines, shaded bands, dashed reference lines, a legend, axis labels; several charts side by side
as panels. Every command's figures use it (audit-data, compare, probe, check-ckpt, train, watch);
a spectrogram is a PNG heat map from report/raster.py stretched over these axes.

Why hand-written and not matplotlib (docs/ARCHITECTURE.md has the numbers): the figures are points,
bars and lines; as SVG they take milliseconds to draw, stay sharp at any zoom and are searchable
as text, while importing matplotlib's Agg backend alone costs over a second and ~56 MB, more than
a whole audit's or compare's report takes to render, and more than `sox FILE -n stats` takes to
read an hour of audio.

Safety: every text (a label, a legend entry, a file name in a title) is escaped here, and the
result is handed to the template as `markupsafe.Markup`; anything else in that slot would be
escaped by the template. No script, no link, no external reference, no id (several charts share
one page).

Size: coordinates are rounded to 0.1 px; scatter points that fall on the same half pixel are drawn
once (at most MAX_POINTS per series, evenly chosen, the number dropped kept in `dropped_points`);
a step line or stairs with more steps than pixel columns is drawn as each column's range.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

import numpy as np

SEVERITY_COLORS = {"info": "#2f6f9f", "warning": "#b7791f", "error": "#c53030", "critical": "#822727"}
INK = "#1a202c"
MUTED = "#5a6475"
GRID = "#e2e6ec"
FONT_PX = 12.0
CHAR_WIDTH_EM = 0.6  # a conservative average advance of digits and lower-case letters in sans-serif
MAX_POINTS = 4000
DASHES = {None: None, "solid": None, "dashed": "6 4", "dotted": "1.5 3"}
# series colours in order (distinct in hue and in lightness, so also in grey scale)
PALETTE = ("#2f6f9f", "#c05621", "#2f855a", "#c53030", "#6b46c1", "#8c5a2b", "#b83280", "#5a6475",
           "#97a52b", "#0e8a9c")
LEGEND_ROW_PX = 20.0


def _floats(values: Any) -> np.ndarray:
    """A float array; None (a JSON null) as NaN."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def _esc(text: Any) -> str:
    return escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate to 0.1 px, without a trailing '.0'."""
    text = "%.1f" % float(value)  # a numpy scalar's own __format__ costs ~20x more
    if text.endswith(".0"):
        text = text[:-2]
    return "0" if text == "-0" else text


def text_width_px(text: str, size_px: float = FONT_PX) -> float:
    return len(text) * size_px * CHAR_WIDTH_EM


# --------------------------------------------------------------------------------------------------
# Axes: limits, ticks, labels
# --------------------------------------------------------------------------------------------------

def nice_step(span: float, target_ticks: int) -> float:
    """1, 2 or 5 times a power of ten: the smallest giving at most 1.5 x `target_ticks` intervals
    over `span` (so a span of 1.02 in 5 gets steps of 0.2, not 0.5 with only two ticks)."""
    raw = span / max(target_ticks, 1) / 1.5
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        if raw <= multiple * power * (1 + 1e-9):
            return multiple * power
    return 10.0 * power


def linear_ticks(lo: float, hi: float, target_ticks: int, *, integer: bool = False) -> list[float]:
    step = nice_step(hi - lo, target_ticks)
    if integer:
        step = max(step, 1.0)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def log_ticks(lo: float, hi: float, target_ticks: int) -> list[float]:
    """Decades inside [lo, hi]; every n-th decade when there are too many; 2x and 5x added when the
    axis spans less than two decades."""
    first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
    decades = list(range(first, last + 1))
    if len(decades) > target_ticks:
        every = math.ceil(len(decades) / target_ticks)
        decades = [d for d in decades if d % every == 0]
    ticks = [10.0 ** d for d in decades]
    if len(ticks) < 3:
        more = [m * 10.0 ** d for d in range(first - 1, last + 1) for m in (1.0, 2.0, 5.0)]
        ticks = sorted(t for t in more if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9))
    if len(ticks) < 3:  # less than a factor of ~5 in range: evenly spaced round numbers read best
        ticks = [t for t in linear_ticks(lo, hi, 3) if t > 0]
    return ticks


def _plain(value: float, decimals: int) -> str:
    text = "%.*f" % (decimals, float(value))
    return "0" if text.strip("-0.") == "" else text


@dataclass
class Axis:
    label: str
    log: bool = False
    limits: tuple[float, float] | None = None  # fixed limits; else from the data with a margin
    integer: bool = False  # counts: no ticks between whole numbers
    lo: float = 0.0
    hi: float = 1.0

    def fit(self, values: Sequence[float], margin: float, include: Sequence[float] = ()) -> None:
        """Set the limits from the data (finite values; positive ones on a log axis)."""
        if self.limits is not None:
            self.lo, self.hi = self.limits
            return
        data = np.asarray([*values, *include], dtype=np.float64)
        data = data[np.isfinite(data)]
        if self.log:
            data = data[data > 0]
        if data.size == 0:
            self.lo, self.hi = (1.0, 10.0) if self.log else (0.0, 1.0)
            return
        lo, hi = float(data.min()), float(data.max())
        if self.log:
            a, b = math.log10(lo), math.log10(hi)
            if b - a < 1e-9:
                a, b = a - 0.5, b + 0.5
            pad = (b - a) * margin
            self.lo, self.hi = 10.0 ** (a - pad), 10.0 ** (b + pad)
            return
        if hi - lo < 1e-12 * max(1.0, abs(lo)):
            half = max(abs(lo) * 0.1, 1.0 if self.integer else 0.5)
            lo, hi = lo - half, hi + half
        pad = (hi - lo) * margin
        self.lo, self.hi = lo - pad, hi + pad

    def to_unit(self, values: Any) -> np.ndarray:
        """0 at `lo`, 1 at `hi` (log axes: in log10); non-positive values on a log axis go below 0."""
        v = np.asarray(values, dtype=np.float64)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                lv = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), -np.inf)
            return (lv - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)

    def ticks(self, length_px: float, spacing_px: float) -> list[tuple[float, str]]:
        target = max(2, int(length_px // spacing_px))
        if self.log:
            values = log_ticks(self.lo, self.hi, target)
            powers = any(not 1e-3 <= v < 1e5 for v in values)  # then every label as 10^k, for one look
            return [(v, self._log_label(v, powers)) for v in values]
        values = linear_ticks(self.lo, self.hi, target, integer=self.integer)
        step = values[1] - values[0] if len(values) > 1 else 1.0
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        biggest = max(abs(v) for v in values) if values else 0.0
        if biggest >= 1e6:
            return [(v, f"{v:.3g}") for v in values]
        return [(v, _plain(v, decimals)) for v in values]

    @staticmethod
    def _log_label(value: float, powers: bool) -> str:
        """Plain digits (0.001 to 10 000: durations, counts), or 10^k on an axis that reaches beyond."""
        exponent = math.log10(value)
        if not powers or abs(exponent - round(exponent)) > 1e-9:
            return f"{value:g}"
        return "1" if round(exponent) == 0 else f"10^{round(exponent)}"


def _tick_text(label: str, x: float, y: float, anchor: str) -> str:
    """A tick label; '10^k' is written with a raised exponent."""
    if "^" in label:
        base, exponent = label.split("^", 1)
        body = f'{_esc(base)}<tspan dy="-5" font-size="9">{_esc(exponent)}</tspan>'
    else:
        body = _esc(label)
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}">{body}</text>'


def _label_width(label: str) -> float:
    if "^" in label:
        base, exponent = label.split("^", 1)
        return text_width_px(base) + text_width_px(exponent, 9.0)
    return text_width_px(label)


# --------------------------------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------------------------------

@dataclass
class _Series:
    kind: str  # "scatter" | "line" | "stairs" | "step" | "band" | "hline" | "vline" | "image"
    color: str
    label: str | None
    data: dict[str, Any]
    dash: str | None = None
    width: float = 1.0
    opacity: float = 1.0


@dataclass
class Chart:
    """One chart. Add series, then `render()` returns the <svg> element as Markup."""

    x: Axis
    y: Axis
    width_px: int = 640
    height_px: int = 320
    description: str = ""  # the accessible name (role=img)
    series: list[_Series] = field(default_factory=list)
    dropped_points: int = 0

    def scatter(self, x: Sequence[float], y: Sequence[float], *, color: str, label: str | None = None,
                radius_px: float = 2.8, opacity: float = 0.75) -> None:
        xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
        keep = np.isfinite(xs) & np.isfinite(ys)
        self.series.append(_Series("scatter", color, label, {"x": xs[keep], "y": ys[keep], "r": radius_px},
                                   opacity=opacity))

    def line(self, x: Sequence[float], y: Sequence[float], *, color: str, label: str | None = None,
             markers: bool = False, width_px: float = 1.5, dash: str | None = None) -> None:
        """Points joined in order. A missing or non-finite point (or one at or below zero on a log
        axis) breaks the line, so a gap in the data stays a gap. `markers`: a dot on every point,
        for a few measured points (a level sweep, per-epoch validations)."""
        xs, ys = _floats(x), _floats(y)
        if xs.size != ys.size:
            raise ValueError(f"line: {xs.size} x values for {ys.size} y values")
        self.series.append(_Series("line", color, label, {"x": xs, "y": ys, "markers": markers},
                                   dash=dash, width=width_px))

    def stairs(self, counts: Sequence[float], edges: Sequence[float], *, color: str, label: str | None = None,
               fill: bool = True, opacity: float = 1.0) -> None:
        """A histogram: counts[i] over [edges[i], edges[i + 1]), filled down to the axis floor."""
        c, e = np.asarray(counts, np.float64), np.asarray(edges, np.float64)
        if e.size != c.size + 1:
            raise ValueError(f"stairs: {c.size} counts need {c.size + 1} edges, got {e.size}")
        self.series.append(_Series("stairs", color, label, {"counts": c, "edges": e, "fill": fill},
                                   opacity=opacity))

    def step(self, x: Sequence[float], y: Sequence[float], *, end_x: float | None = None, color: str,
             label: str | None = None, width_px: float = 1.2, dash: str | None = None) -> None:
        """A step line that holds y[i] from x[i] to x[i + 1] (the last one to `end_x`)."""
        xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
        last = float(end_x) if end_x is not None else (float(xs[-1]) if xs.size else 0.0)
        self.series.append(_Series("step", color, label, {"x": xs, "y": ys, "end": last}, dash=dash, width=width_px))

    def image(self, png_data_uri: str) -> None:
        """A raster (report/raster.py's heat map) stretched over the whole plot area: give both axes
        fixed limits, the image's edges. Only a PNG data URI is accepted (no external reference)."""
        if not png_data_uri.startswith("data:image/png;base64,") or any(c in png_data_uri for c in "\"'<> "):
            raise ValueError("Chart.image takes a PNG data URI")
        self.series.append(_Series("image", "none", None, {"href": png_data_uri}))

    def band(self, lo: float, hi: float, *, color: str, opacity: float = 0.1, label: str | None = None) -> None:
        """A shaded horizontal band from y = lo to y = hi over the whole width, behind the data."""
        self.series.append(_Series("band", color, label, {"lo": float(lo), "hi": float(hi)}, opacity=opacity))

    def hline(self, y: float, *, color: str, label: str | None = None, dash: str | None = "dashed",
              width_px: float = 1.0) -> None:
        self.series.append(_Series("hline", color, label, {"y": float(y)}, dash=dash, width=width_px))

    def vline(self, x: float, *, color: str, label: str | None = None, dash: str | None = "dashed",
              width_px: float = 1.0) -> None:
        self.series.append(_Series("vline", color, label, {"x": float(x)}, dash=dash, width=width_px))

    # -- layout --------------------------------------------------------------------------------
    def _fit_axes(self) -> None:
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        x_include: list[float] = []
        y_include: list[float] = []
        x_margin, y_margin = 0.0, 0.05
        for s in self.series:
            if s.kind == "scatter":
                xs.append(s.data["x"])
                ys.append(s.data["y"])
                x_margin = 0.05
            elif s.kind == "stairs":
                xs.append(s.data["edges"])
                counts = s.data["counts"]
                ys.append(counts)
                if self.y.log:  # the floor: half the smallest count, so a bin of one is visible
                    positive = counts[counts > 0]
                    if positive.size:
                        y_include.append(float(positive.min()) * 0.5)
                else:
                    y_include.append(0.0)
            elif s.kind == "step":
                xs.append(np.append(s.data["x"], s.data["end"]))
                ys.append(s.data["y"])
            elif s.kind == "line":
                xs.append(s.data["x"])
                ys.append(s.data["y"])
                if s.data["markers"]:
                    x_margin = 0.05
            elif s.kind == "band":
                y_include.extend((s.data["lo"], s.data["hi"]))
            elif s.kind == "hline":
                y_include.append(s.data["y"])
            elif s.kind == "vline":
                x_include.append(s.data["x"])
        self.x.fit(np.concatenate(xs) if xs else [], x_margin, x_include)
        y_values = np.concatenate(ys) if ys else np.zeros(0)
        self.y.fit(y_values, y_margin, y_include)
        if not self.y.log and any(s.kind == "stairs" for s in self.series) and self.y.limits is None:
            self.y.lo = max(self.y.lo, 0.0) if float(np.nanmin(y_values, initial=0.0)) >= 0 else self.y.lo
        if self.y.log and any(s.kind == "stairs" for s in self.series) and self.y.limits is None and y_include:
            self.y.lo = min(y_include)

    def render(self) -> Any:
        from markupsafe import Markup

        self._fit_axes()
        width, height = float(self.width_px), float(self.height_px)
        legend_rows = _legend_rows([s for s in self.series if s.label], width - 16.0)
        top = 12.0 + LEGEND_ROW_PX * len(legend_rows)
        bottom = 44.0
        plot_h = height - top - bottom
        y_ticks = self.y.ticks(plot_h, 42.0)
        left = 30.0 + max((_label_width(t) for _, t in y_ticks), default=10.0)
        x_ticks_all = self.x.ticks(width - left - 20.0, 90.0)
        last_label = x_ticks_all[-1][1] if x_ticks_all else ""
        right = max(14.0, _label_width(last_label) / 2 + 4.0)
        plot_w = width - left - right
        x_ticks = self._thin(self.x.ticks(plot_w, 90.0), plot_w)

        def px(values: Any) -> np.ndarray:
            return left + np.clip(self.x.to_unit(values), -0.02, 1.02) * plot_w

        def py(values: Any) -> np.ndarray:
            return top + plot_h - np.clip(self.y.to_unit(values), 0.0, 1.02) * plot_h

        out = [f'<svg class="chart" viewBox="0 0 {int(width)} {int(height)}" width="{int(width)}" '
               f'height="{int(height)}" role="img" aria-label="{_esc(self.description)}" '
               f'font-size="{FONT_PX:g}" fill="{INK}">']
        if self.description:
            out.append(f"<title>{_esc(self.description)}</title>")
        # grid and ticks
        grid = []
        for value, _ in x_ticks:
            x = float(px([value])[0])
            grid.append(f"M{_n(x)} {_n(top)}V{_n(top + plot_h)}")
        for value, _ in y_ticks:
            y = float(py([value])[0])
            grid.append(f"M{_n(left)} {_n(y)}H{_n(left + plot_w)}")
        if grid:
            out.append(f'<path d="{"".join(grid)}" stroke="{GRID}" stroke-width="1" fill="none"/>')
        out.extend(self._draw_series(px, py, left, top, plot_w, plot_h))
        axis_y = top + plot_h
        out.append(f'<path d="M{_n(left)} {_n(top)}V{_n(axis_y)}H{_n(left + plot_w)}" stroke="{MUTED}" '
                   f'stroke-width="1" fill="none"/>')
        labels = ['<g fill="' + MUTED + '">']
        ticks = []
        for value, text in x_ticks:
            x = float(px([value])[0])
            ticks.append(f"M{_n(x)} {_n(axis_y)}v4")
            labels.append(_tick_text(text, x, axis_y + 17.0, "middle"))
        for value, text in y_ticks:
            y = float(py([value])[0])
            ticks.append(f"M{_n(left)} {_n(y)}h-4")
            labels.append(_tick_text(text, left - 7.0, y + 4.0, "end"))
        labels.append("</g>")
        if ticks:
            out.append(f'<path d="{"".join(ticks)}" stroke="{MUTED}" stroke-width="1"/>')
        out.extend(labels)
        out.append(f'<text x="{_n(left + plot_w / 2)}" y="{_n(height - 8.0)}" text-anchor="middle">'
                   f"{_esc(self.x.label)}</text>")
        cy = top + plot_h / 2
        out.append(f'<text x="14" y="{_n(cy)}" text-anchor="middle" transform="rotate(-90 14 {_n(cy)})">'
                   f"{_esc(self.y.label)}</text>")
        for row, entries in enumerate(legend_rows):
            out.append(self._legend(entries, width - right, 6.0 + LEGEND_ROW_PX * row))
        out.append("</svg>")
        return Markup("".join(out))

    @staticmethod
    def _thin(ticks: list[tuple[float, str]], plot_w: float) -> list[tuple[float, str]]:
        """Every n-th x tick, so that no two labels come closer than 8 px."""
        if len(ticks) < 2:
            return ticks
        widest = max(_label_width(t) for _, t in ticks)
        every = 1
        while len(ticks) > 2 * every and plot_w / max(len(ticks) - 1, 1) * every < widest + 8.0:
            every += 1
        return ticks[::every]

    def _draw_series(self, px: Any, py: Any, left: float, top: float, plot_w: float, plot_h: float) -> list[str]:
        out: list[str] = []
        floor_y = top + plot_h
        # bands behind everything, then the series in the order they were added
        for s in sorted(self.series, key=lambda s: s.kind != "band"):
            dash = DASHES.get(s.dash, s.dash)
            stroke = f' stroke-dasharray="{dash}"' if dash else ""
            if s.kind == "image":
                out.append(f'<image x="{_n(left)}" y="{_n(top)}" width="{_n(plot_w)}" height="{_n(plot_h)}" '
                           f'preserveAspectRatio="none" href="{s.data["href"]}"/>')
            elif s.kind == "scatter":
                x, y = px(s.data["x"]), py(s.data["y"])
                cells = _distinct_cells(x, y)
                if cells.shape[0] > MAX_POINTS:
                    self.dropped_points += cells.shape[0] - MAX_POINTS
                    cells = cells[np.linspace(0, cells.shape[0] - 1, MAX_POINTS).astype(int)]
                # one path of zero-length segments with round caps: a dot each, ~14 bytes per point
                # (a <circle> element costs ~45)
                d = "".join(f"M{_n(cx)} {_n(cy)}h0" for cx, cy in cells.tolist())
                if d:
                    out.append(f'<path d="{d}" stroke="{s.color}" stroke-opacity="{s.opacity:g}" '
                               f'stroke-width="{_n(2 * s.data["r"])}" stroke-linecap="round" fill="none"/>')
            elif s.kind == "band":
                y_hi, y_lo = (float(v) for v in py([s.data["hi"], s.data["lo"]]))
                out.append(f'<rect x="{_n(left)}" y="{_n(y_hi)}" width="{_n(plot_w)}" height="{_n(y_lo - y_hi)}" '
                           f'fill="{s.color}" fill-opacity="{s.opacity:g}"/>')
            elif s.kind == "line":
                out.extend(self._line(s, px, py, plot_w))
            elif s.kind == "stairs":
                edges_px, heights_px = _column_stairs(px(s.data["edges"]), py(s.data["counts"]))
                xs, ys = edges_px.tolist(), heights_px.tolist()
                d = [f"M{_n(xs[0])} {_n(floor_y)}"]
                for i in range(len(ys)):
                    d.append(f"V{_n(ys[i])}H{_n(xs[i + 1])}")
                d.append(f"V{_n(floor_y)}Z")
                if s.data["fill"]:
                    out.append(f'<path d="{"".join(d)}" fill="{s.color}" fill-opacity="{s.opacity:g}" stroke="none"/>')
                else:
                    out.append(f'<path d="{"".join(d)}" fill="none" stroke="{s.color}"/>')
            elif s.kind == "step":
                if s.data["x"].size == 0:
                    continue
                edges = px(np.append(s.data["x"], s.data["end"]))
                out.append(f'<path d="{_step_path(edges, py(s.data["y"]))}" fill="none" stroke="{s.color}" '
                           f'stroke-width="{s.width:g}" stroke-linejoin="round"{stroke}/>')
            elif s.kind == "hline":
                y = float(py([s.data["y"]])[0])
                out.append(f'<path d="M{_n(left)} {_n(y)}H{_n(left + plot_w)}" stroke="{s.color}" '
                           f'stroke-width="{s.width:g}"{stroke}/>')
            elif s.kind == "vline":
                x = float(px([s.data["x"]])[0])
                out.append(f'<path d="M{_n(x)} {_n(top)}V{_n(floor_y)}" stroke="{s.color}" '
                           f'stroke-width="{s.width:g}"{stroke}/>')
        return out

    def _line(self, s: _Series, px: Any, py: Any, plot_w: float) -> list[str]:
        xs, ys = s.data["x"], s.data["y"]
        keep = np.isfinite(xs) & np.isfinite(ys)
        for axis, values in ((self.x, xs), (self.y, ys)):
            if axis.log:
                keep &= np.where(np.isfinite(values), values, 0.0) > 0
        if not keep.any():
            return []
        x_px, y_px = px(np.where(keep, xs, 0.0)), py(np.where(keep, ys, 0.0))
        dash = DASHES.get(s.dash, s.dash)
        out = [f'<path d="{_line_path(x_px, y_px, keep, plot_w)}" fill="none" stroke="{s.color}" '
               f'stroke-width="{s.width:g}" stroke-linejoin="round"'
               + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"]
        if s.data["markers"]:
            cells = _distinct_cells(x_px[keep], y_px[keep])[:MAX_POINTS]
            d = "".join(f"M{_n(cx)} {_n(cy)}h0" for cx, cy in cells.tolist())
            out.append(f'<path d="{d}" stroke="{s.color}" stroke-width="{_n(2.5 + 2 * s.width)}" '
                       f'stroke-linecap="round" fill="none"/>')
        return out

    @staticmethod
    def _legend(entries: list[_Series], right_x: float, top_y: float) -> str:
        """One row of the legend above the plot, right-aligned: it never covers data."""
        parts = []
        x = right_x
        for s in reversed(entries):
            text_w = text_width_px(s.label or "")
            x -= text_w
            parts.append(f'<text x="{_n(x)}" y="{_n(top_y + 11)}">{_esc(s.label)}</text>')
            x -= 22.0
            cy = top_y + 7
            dash = DASHES.get(s.dash, s.dash)
            if s.kind == "scatter":
                parts.append(f'<circle cx="{_n(x + 9)}" cy="{_n(cy)}" r="3.5" fill="{s.color}"/>')
            elif s.kind in ("stairs", "band"):
                parts.append(f'<rect x="{_n(x + 3)}" y="{_n(cy - 5)}" width="12" height="10" fill="{s.color}"/>')
            else:
                parts.append(f'<path d="M{_n(x)} {_n(cy)}h18" stroke="{s.color}" stroke-width="{max(s.width, 1.5):g}"'
                             + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
                if s.kind == "line" and s.data["markers"]:
                    parts.append(f'<circle cx="{_n(x + 9)}" cy="{_n(cy)}" r="3" fill="{s.color}"/>')
            x -= 14.0
        return '<g class="legend">' + "".join(reversed(parts)) + "</g>"


def _legend_rows(entries: list[_Series], width_px: float) -> list[list[_Series]]:
    """The legend entries in rows that fit the chart's width, in their order."""
    rows: list[list[_Series]] = []
    used = width_px
    for s in entries:
        need = text_width_px(s.label or "") + 36.0
        if rows and used + need <= width_px:
            rows[-1].append(s)
            used += need
        else:
            rows.append([s])
            used = need
    return rows


def panels(charts: Sequence[Any]) -> Any:
    """Rendered charts side by side, wrapping onto the next row where the page is narrow."""
    from markupsafe import Markup

    return Markup('<div class="panels">') + Markup("").join(charts) + Markup("</div>")


def _line_path(x_px: np.ndarray, y_px: np.ndarray, keep: np.ndarray, plot_w: float) -> str:
    """Each run of kept points as one polyline; a run with more points than twice its width in
    pixels is drawn as each pixel column's min-max range (what the eye sees of a dense line)."""
    d: list[str] = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        xs, ys = x_px[start:stop], y_px[start:stop]
        if xs.size > 2 * max(float(xs[-1] - xs[0]), 1.0) and bool(np.all(np.diff(xs) >= 0)):
            column = np.floor(xs - xs[0]).astype(np.int64)
            starts = np.flatnonzero(np.diff(column, prepend=-1))
            lows, highs = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
            stops = np.append(starts[1:], xs.size) - 1
            points = []
            for a, b, lo, hi in zip(starts.tolist(), stops.tolist(), lows.tolist(), highs.tolist()):
                points.append(f"{_n(xs[a])} {_n(ys[a])}V{_n(lo)}V{_n(hi)}V{_n(ys[b])}")
            d.append("M" + "L".join(points))
        else:
            d.append("M" + "L".join(f"{_n(x)} {_n(y)}" for x, y in zip(xs.tolist(), ys.tolist())))
    return "".join(d)


def _column_stairs(edges_px: np.ndarray, heights_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of equal height (fewer path commands); bins narrower than a pixel are merged to
    one per column at the column's tallest bin (smallest y), which is what a filled histogram shows."""
    # mean bin width (np.median's first call imports numpy.ma: ~35 ms of start-up)
    if heights_px.size > 1 and float(edges_px[-1] - edges_px[0]) / heights_px.size < 1.0:
        column = np.floor(edges_px[:-1] - edges_px[0]).astype(np.int64)
        starts = np.flatnonzero(np.diff(column, prepend=-1))
        heights_px = np.minimum.reduceat(heights_px, starts)
        edges_px = np.append(edges_px[starts], edges_px[-1])
    rounded = np.round(heights_px, 1)
    keep = np.concatenate(([True], rounded[1:] != rounded[:-1]))
    index = np.flatnonzero(keep)
    return np.append(edges_px[index], edges_px[-1]), heights_px[index]


def _step_path(edges_px: np.ndarray, ys_px: np.ndarray) -> str:
    """A post-step line; with more steps than pixel columns each column shows its min-max range."""
    n = ys_px.size
    width = float(edges_px[-1] - edges_px[0])
    if n > 2 * max(width, 1.0):
        column = np.floor(edges_px[:-1] - edges_px[0]).astype(np.int64)
        starts = np.flatnonzero(np.diff(column, prepend=-1))
        stops = np.append(starts[1:], n) - 1
        lows = np.minimum.reduceat(ys_px, starts)
        highs = np.maximum.reduceat(ys_px, starts)
        edges, ys = edges_px.tolist(), ys_px.tolist()
        d = [f"M{_n(edges[starts[0]])} {_n(ys[starts[0]])}"]
        for a, b, lo, hi in zip(starts.tolist(), stops.tolist(), lows.tolist(), highs.tolist()):
            d.append(f"L{_n(edges[a])} {_n(ys[a])}V{_n(lo)}V{_n(hi)}V{_n(ys[b])}")
        d.append(f"H{_n(edges[-1])}")
        return "".join(d)
    edges_px, ys_px = edges_px.tolist(), ys_px.tolist()  # Python floats format ~20x faster
    d = [f"M{_n(edges_px[0])} {_n(ys_px[0])}"]
    previous = _n(ys_px[0])
    for i in range(n):
        y = _n(ys_px[i])
        if y != previous:
            d.append(f"V{y}")
        elif len(d) > 1 and d[-1].startswith("H"):
            d.pop()  # the same level continues: one horizontal segment
        d.append(f"H{_n(edges_px[i + 1])}")
        previous = y
    return "".join(d)


def _distinct_cells(x_px: np.ndarray, y_px: np.ndarray) -> np.ndarray:
    """Points rounded to half a pixel, each position once, in x order (sorting instead of np.unique,
    whose first call imports numpy.ma: 50-200 ms of start-up)."""
    if x_px.size == 0:
        return np.zeros((0, 2))
    gx, gy = np.round(x_px * 2), np.round(y_px * 2)
    order = np.lexsort((gy, gx))
    gx, gy = gx[order], gy[order]
    keep = np.concatenate(([True], (gx[1:] != gx[:-1]) | (gy[1:] != gy[:-1])))
    return np.stack([gx[keep], gy[keep]], axis=1) / 2
