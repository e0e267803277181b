"""Figures and tables for a probe report: level sweep, magnitude response, latency and idle output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from codecdoctor.measure.probes import IDLE_MARGIN_DB
from codecdoctor.report.figures import db_text, view
from codecdoctor.report.sections import Figure, Table
from codecdoctor.report.svg import PALETTE, Axis, Chart

GREY = "#888888"


def build(report: Any, *, figures: bool) -> list[Any]:
    probes = report.measurements.get("probes")
    return probe_sections(view(probes), figures=figures) if probes is not None else []


def key_numbers(report: Any) -> list[tuple[str, str]]:
    probes = report.measurements.get("probes")
    if probes is None:
        return []
    m = view(probes)
    slope = m.level_slope_db_per_db
    return [("level slope (1 = scale kept)", f"{slope:.3f} dB/dB" if slope is not None else "n/a"),
            ("-3 dB bandwidth", f"{m.bandwidth_3db_hz:.0f} Hz" if m.bandwidth_3db_hz is not None else "n/a"),
            ("latency", f"{m.latency_samples} samples" if m.latency_samples is not None else "n/a"),
            ("idle output", db_text(m.idle_rms_dbfs, "dBFS"))]


def probe_sections(m: Any, *, figures: bool = True) -> list[Any]:
    """Level in/out curve, magnitude response, impulse response (HTML only, inline SVG); and a table."""
    sections: list[Any] = [_table(m)]
    if figures:
        sections.extend([_level_figure(m), _magnitude_figure(m), _impulse_figure(m)])
    return sections


def _figure(chart: Any, title: str, caption: str) -> Figure:
    return Figure(title=title, svg=chart.render(), caption=caption, alt=title)


def _level_figure(m: Any) -> Figure:
    chart = Chart(Axis("input RMS (dBFS)"), Axis("output RMS (dBFS)"), width_px=560, height_px=340,
                  description="Level in/out")
    chart.line(m.rms_in_db, m.rms_out_db, color=PALETTE[0], label="codec", markers=True)
    gain = m.low_level_gain_db or 0.0
    chart.line(m.rms_in_db, [v + gain for v in m.rms_in_db], color=GREY, label="slope 1 (scale kept)",
               dash="dashed", width_px=1.2)
    slope = (f"slope {m.level_slope_db_per_db:.3f} dB/dB over {m.level_fit_points} levels above the idle output"
             if m.level_slope_db_per_db is not None else
             f"slope not measured: fewer than 3 levels stand {IDLE_MARGIN_DB:g} dB above the idle output "
             f"({m.idle_rms_dbfs:.1f} dBFS)")
    return _figure(chart, "Level in/out",
                   f"{slope}; saturation {m.saturation_dbfs if m.saturation_dbfs is not None else 'none'}")


def _magnitude_figure(m: Any) -> Figure:
    chart = Chart(Axis("frequency (Hz)", log=True), Axis("gain (dB)"), width_px=560, height_px=320,
                  description="Magnitude response")
    chart.line(m.sweep_freqs_hz, m.sweep_gain_db, color=PALETTE[0], label="sine sweep", markers=True)
    passband = m.passband_gain_db or 0.0
    on_data = [(f, g + passband) for f, g in zip(m.sweep_freqs_hz, m.data_gain_db or []) if g is not None]
    if on_data:   # check-ckpt --data: the response on the user's audio, at the sweep's passband level
        chart.line(*zip(*on_data), color=PALETTE[1], label="on the data", markers=True)
    if m.passband_gain_db is not None:
        chart.hline(m.passband_gain_db - 3.0, color=GREY, label="passband - 3 dB", width_px=0.8)
    caption = f"-3 dB bandwidth {_hz(m.bandwidth_3db_hz)}"
    if m.data_gain_db is not None:
        caption += f" (sines), {_hz(m.data_bandwidth_3db_hz)} on the data"
    return _figure(chart, "Magnitude response", caption)


def _hz(value: float | None) -> str:
    return f"{value:.0f} Hz" if value is not None else "not measured"


def _impulse_figure(m: Any) -> Figure:
    chart = Chart(Axis("samples after the impulse"), Axis("output"), width_px=560, height_px=300,
                  description="Impulse response")
    lags = np.arange(len(m.impulse_response)) + m.impulse_window_start
    chart.line(lags, m.impulse_response, color=PALETTE[0], width_px=1.2)
    chart.vline(0.0, color=GREY, width_px=0.8)
    return _figure(chart, "Impulse response", f"latency {m.latency_samples} samples (chirp), "
                   f"{m.impulse_latency_samples} (impulse peak)")


def _table(m: Any) -> Table:
    return Table("Probe measurements", ["measurement", "value"], [
        ["level slope (dB/dB)", m.level_slope_db_per_db], ["low-level gain (dB)", m.low_level_gain_db],
        ["saturation point (dBFS)", m.saturation_dbfs], ["max output peak", m.max_output_peak],
        ["latency, chirp (samples)", m.latency_samples], ["latency, impulse (samples)", m.impulse_latency_samples],
        ["-3 dB bandwidth (Hz)", m.bandwidth_3db_hz], ["passband gain (dB)", m.passband_gain_db],
        ["idle output (dBFS RMS)", m.idle_rms_dbfs], ["polarity", m.polarity],
    ] + ([["-3 dB bandwidth on the data (Hz)", m.data_bandwidth_3db_hz]] if m.data_gain_db is not None else []))
