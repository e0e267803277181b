"""Figures and tables for a probe report: level sweep, magnitude response, latency and idle output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from codecdoctor.measure.probes import IDLE_MARGIN_DB
from codecdoctor.report.figures import db_text, view
from codecdoctor.report.sections import Table


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
    """Level in/out curve, magnitude response, impulse response (HTML only); and a table."""
    sections: list[Any] = [_table(m)]
    if not figures:
        return sections
    from codecdoctor.report.plots import figure_section, new_figure

    fig, ax = new_figure(5.6, 3.4)
    ax.plot(m.rms_in_db, m.rms_out_db, "o-", label="codec")
    gain = m.low_level_gain_db or 0.0
    ax.plot(m.rms_in_db, [v + gain for v in m.rms_in_db], "--", color="grey", label="slope 1 (scale kept)")
    ax.set_xlabel("input RMS (dBFS)")
    ax.set_ylabel("output RMS (dBFS)")
    ax.legend(loc="lower right", fontsize=8)
    slope = (f"slope {m.level_slope_db_per_db:.3f} dB/dB over {m.level_fit_points} levels above the idle output"
             if m.level_slope_db_per_db is not None else
             f"slope not measured: fewer than 3 levels stand {IDLE_MARGIN_DB:g} dB above the idle output "
             f"({m.idle_rms_dbfs:.1f} dBFS)")
    sections.append(figure_section(fig, "Level in/out", f"{slope}; "
                                   f"saturation {m.saturation_dbfs if m.saturation_dbfs is not None else 'none'}"))
    fig, ax = new_figure(5.6, 3.2)
    ax.semilogx(m.sweep_freqs_hz, m.sweep_gain_db, "o-")
    if m.passband_gain_db is not None:
        ax.axhline(m.passband_gain_db - 3.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("gain (dB)")
    sections.append(figure_section(fig, "Magnitude response", f"-3 dB bandwidth {m.bandwidth_3db_hz} Hz"))
    fig, ax = new_figure(5.6, 3.0)
    lags = np.arange(len(m.impulse_response)) + m.impulse_window_start
    ax.plot(lags, m.impulse_response)
    ax.axvline(0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("samples after the impulse")
    ax.set_ylabel("output")
    sections.append(figure_section(fig, "Impulse response", f"latency {m.latency_samples} samples (chirp), "
                                   f"{m.impulse_latency_samples} (impulse peak)"))
    return sections


def _table(m: Any) -> Table:
    return Table("Probe measurements", ["measurement", "value"], [
        ["level slope (dB/dB)", m.level_slope_db_per_db], ["low-level gain (dB)", m.low_level_gain_db],
        ["saturation point (dBFS)", m.saturation_dbfs], ["max output peak", m.max_output_peak],
        ["latency, chirp (samples)", m.latency_samples], ["latency, impulse (samples)", m.impulse_latency_samples],
        ["-3 dB bandwidth (Hz)", m.bandwidth_3db_hz], ["passband gain (dB)", m.passband_gain_db],
        ["idle output (dBFS RMS)", m.idle_rms_dbfs], ["polarity", m.polarity],
    ])
