"""Report sections for audit-data: corpus summary, per-file table, and the HTML plots.

Figures (inline SVG, report/svg.py): per-file peak vs RMS scatter, duration histogram, pooled
amplitude histogram (log counts, ±1.0 marked), silence-fraction histogram, and a level-over-time
strip per flagged file (from the bounded envelope each file's accumulator keeps). Everything is
read from measurements, so a merged report draws the same figures as a single run.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from codecdoctor.core.findings import Report, Severity
from codecdoctor.measure.audio.file import FileMeasurement
from codecdoctor.report.figures import view
from codecdoctor.report.sections import Figure, Table, Text
from codecdoctor.report.svg import SEVERITY_COLORS, Axis, Chart

MAX_TABLE_ROWS = 2000  # the HTML table lists flagged files first; the JSON always has every row
MAX_STRIPS = 8


def _num(value: Any, digits: int = 4) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "-inf" if value < 0 else "inf"
        return float(f"{value:.{digits}g}")
    return value


def key_numbers(report: Report) -> list[tuple[str, str]]:
    corpus = report.measurements["corpus"]
    keys = [("audio files", f"{corpus['audio_files']:,} of {corpus['files']:,}"), ("hours", f"{corpus['hours']:.3f}")]
    if corpus.get("max_abs") is not None:
        keys.append(("max |x|", f"{corpus['max_abs']:.5g}"))
    keys.append(("samples beyond ±1", f"{corpus['overs']:,}"))
    if corpus.get("unreadable_files"):
        keys.append(("unreadable files", f"{corpus['unreadable_files']:,}"))
    return keys


def build(report: Report, *, figures: bool) -> list[Any]:
    corpus = report.measurements["corpus"]
    rows = [FileMeasurement.from_json(r) if isinstance(r, dict) else r for r in report.measurements.get("files", [])]
    thresholds = view(report.measurements.get("thresholds", {}))
    sections: list[Any] = []
    lines = [
        f"files: {corpus['files']} (audio {corpus['audio_files']}, unreadable {corpus['unreadable_files']}, "
        f"skipped {corpus['skipped_entries']})",
        f"audio: {corpus['hours']:.3f} h, {corpus['samples']} samples, {corpus['bytes'] / 1e6:.1f} MB",
        "sample rates: " + ", ".join(f"{k} Hz × {v}" for k, v in corpus["sample_rates"].items()),
        "channels: " + ", ".join(f"{k} × {v}" for k, v in corpus["channels"].items()),
        "formats: " + ", ".join(f"{k} × {v}" for k, v in corpus["formats"].items()),
        f"max |x|: {_num(corpus['max_abs'], 6) if corpus['max_abs'] is not None else 'n/a'}; "
        f"overs: {corpus['overs']}; clipped: {corpus['clipped_samples']}; "
        f"non-finite: {corpus['nonfinite']}; silence: "
        + (f"{100 * corpus['silence_fraction']:.1f}% of 20 ms frames" if corpus["silence_fraction"] is not None else "n/a"),
    ]
    sections.append(Text("Corpus", "\n".join(lines)))

    flagged = {f.subject for f in report.findings if f.subject and f.severity >= Severity.WARNING}
    ordered = sorted(rows, key=lambda r: (r.path not in flagged, r.path))[:MAX_TABLE_ROWS]
    table_rows = [[r.path, _num(r.duration_s), _num(r.peak_db), _num(r.rms_db), _num(r.dc_offset, 2),
                   _num(100 * r.silence_fraction if r.silence_fraction is not None else None, 3), _num(r.overs),
                   _num(r.clipped_samples), _num(r.nonfinite), _num(r.bandwidth_hz), r.error or ""] for r in ordered]
    caption = "Flagged files first." + (f" Showing {len(ordered)} of {len(rows)} rows; the JSON lists all."
                                        if len(ordered) < len(rows) else "")
    sections.append(Table("Files", ["path", "dur s", "peak dB", "RMS dB", "DC", "sil %", "overs",
                                           "clip", "NaN/Inf", "bw Hz", "error"], table_rows,
                                 caption=caption, terminal_rows=20))
    if figures:
        sections[1:1] = _figures(report, rows, thresholds, flagged)  # the main figure leads the page
    return sections


BLUE = "#2f6f9f"
AMBER = "#b7791f"
SLATE = "#5a6475"


def _figure(chart: Any, title: str, caption: str) -> Figure:
    svg = chart.render()  # first: drawing counts the points it had to leave out
    if chart.dropped_points:
        caption += f" ({chart.dropped_points} overlapping points not drawn.)"
    return Figure(title=title, svg=svg, caption=caption, alt=title)


def _figures(report: Report, rows: list[Any], thresholds: Any, flagged: set) -> list:
    """The audit's figures as inline SVG (codecdoctor.report.svg)."""
    audio = [r for r in rows if r.kind == "audio" and r.frames and r.peak]
    silent = sum(1 for r in rows if r.kind == "audio" and r.frames and not r.peak)
    out = []
    if audio:
        chart = Chart(Axis("RMS (dBFS)"), Axis("peak (dBFS)"), height_px=360, description="Peak vs RMS per file")
        ok = [r for r in audio if r.path not in flagged]
        bad = [r for r in audio if r.path in flagged]
        for group, color, label in ((ok, BLUE, "no warning"), (bad, SEVERITY_COLORS["error"], "flagged")):
            if group:
                chart.scatter([r.rms_db for r in group], [r.peak_db for r in group], color=color, label=label)
        chart.hline(0.0, color=SEVERITY_COLORS["critical"], label="0 dBFS", dash="dashed")
        caption = ("Dashed: 0 dBFS (|x| = 1). Above it: overs (D103); far right/low crest: hot or limited files (D106)."
                   + (f" {silent} all-zero file{'s' if silent != 1 else ''} not drawn (no level)." if silent else ""))
        out.append(_figure(chart, "Peak vs RMS per file", caption))

        durations = np.array([r.duration_s for r in audio], np.float64)
        low, high = max(float(durations.min()), 1e-3), max(float(durations.max()), 1e-3)
        log_bins = high > 10 * low
        if log_bins:
            edges = np.logspace(np.log10(low), np.log10(high * 1.001), 31)
        elif high > low:
            edges = np.linspace(low, high, 31)
        else:  # one length for every file: one bar in the middle, a thirtieth of the axis wide
            half_width = max(0.5, 0.05 * low)
            edges = np.linspace(low - half_width, low + half_width, 32)  # 31 bins: the middle one centred
        counts, _ = np.histogram(durations, bins=edges)
        chart = Chart(Axis("duration (s)", log=log_bins), Axis("files", integer=True), height_px=300,
                      description="Duration histogram")
        chart.stairs(counts, edges, color=BLUE)
        out.append(_figure(chart, "Duration histogram", f"{len(audio)} audio file{'s' if len(audio) != 1 else ''}."))

        silence = np.array([100 * r.silence_fraction for r in audio if r.silence_fraction is not None])
        edges = np.linspace(0, 100, 41)
        counts, _ = np.histogram(silence, bins=edges)
        chart = Chart(Axis(f"silence (% of 20 ms frames below {thresholds.silence_threshold_db:g} dBFS)",
                           limits=(0.0, 100.0)), Axis("files", integer=True), height_px=300,
                      description="Silence fraction")
        chart.stairs(counts, edges, color=BLUE)
        chart.vline(100 * thresholds.max_silence_fraction, color=SEVERITY_COLORS["warning"], label="D107 limit")
        out.append(_figure(chart, "Silence fraction", "Dashed: the D107 limit."))

    histogram = report.measurements["corpus"]["amplitude_histogram"]
    counts = np.asarray(histogram["counts"], np.float64)
    limit = float(histogram["range"][1])
    if counts.sum() > 0 and counts.size > 2:
        edges = np.linspace(-limit, limit, counts.size - 1)
        chart = Chart(Axis("sample value"), Axis("count (log)", log=True), height_px=320,
                      description="Pooled amplitude histogram")
        if counts[1:-1].sum() > 0:
            chart.stairs(counts[1:-1], edges, color=BLUE)
        for x in (-1.0, 1.0):
            chart.vline(x, color=SEVERITY_COLORS["error"], label="±1.0" if x > 0 else None, width_px=1.2)
        outside = int(counts[0] + counts[-1])
        corpus = report.measurements["corpus"]
        out.append(_figure(chart, "Pooled amplitude histogram",
                           f"All files, every {corpus['amplitude_histogram']['sampled_every_nth_20ms_frame']}th "
                           f"20 ms frame; dashed: ±1.0. Exact count of samples beyond ±1 in the corpus: "
                           f"{corpus['overs']}; beyond ±{limit:g} (not drawn): {outside} sampled."))

    for path, env in list(report.measurements.get("envelopes", {}).items())[:MAX_STRIPS]:
        if not env or not env.get("start_s"):
            continue
        t = np.asarray(env["start_s"], float)
        rms = np.asarray(env["rms_db"], float)
        peak = np.asarray(env["peak"], float)
        with np.errstate(divide="ignore"):
            peak_db = np.where(peak > 0, 20 * np.log10(np.maximum(peak, 1e-12)), -120.0)
        durations = np.asarray(env.get("duration_s") or [], float)
        end = float(t[-1] + durations[-1]) if durations.size == t.size else None
        chart = Chart(Axis("time (s)"), Axis("dBFS"), height_px=240, description=f"Level over time: {path}")
        chart.step(t, np.maximum(rms, -100), end_x=end, color=BLUE, label="RMS")
        chart.step(t, np.maximum(peak_db, -100), end_x=end, color=AMBER, label="peak")
        chart.hline(0.0, color=SEVERITY_COLORS["error"], label="0 dBFS")
        chart.hline(thresholds.silence_threshold_db, color=SLATE, dash="dotted", label="silence threshold")
        ids = sorted({f.id for f in report.findings if f.subject == path})
        out.append(_figure(chart, f"Level over time: {path}",
                           f"Findings: {', '.join(ids) or 'none'}. Dashed: 0 dBFS; dotted: silence threshold."))
    return out
