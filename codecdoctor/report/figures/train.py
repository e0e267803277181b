"""The monitor's end-of-run report: findings plus curves (one point per read-back window).

Curves: loss terms, validation SNR, input/output peak, output/input RMS ratio, perplexity per
codebook level, gradient norm (and the grad-scaler scale when AMP is used).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from codecdoctor.core.findings import Report
from codecdoctor.report.sections import Table

if TYPE_CHECKING:
    from codecdoctor.monitor.monitor import Monitor


def _finite(values):
    return [v if isinstance(v, (int, float)) and v is not None and math.isfinite(v) else math.nan for v in values]


def build_report(monitor: "Monitor") -> Report:
    report = Report(command="monitor", args={"mode": monitor.mode, "read_every": monitor.read_every,
                                             "output_bound": monitor.output_bound,
                                             "sample_rate": monitor.sample_rate})
    report.add(monitor.findings, monitor.checks_run)
    report.measurements = {
        "steps": monitor.state.steps_seen,
        "read_backs": monitor.read_backs,
        "event_log": str(monitor.event_log) if monitor.event_log else None,
        "curves": monitor.curves,
        "validation": monitor.validations,
        "latest": monitor.latest,
        "input_snr_ceiling_db": _ceiling(monitor),
    }
    if not monitor.curves:
        report.notes.append("no training step was read back: the monitor saw no batch")
        return report
    try:
        report.sections.extend(_figures(monitor.curves, monitor.validations))
    except Exception as exc:  # plotting must never cost the user the findings
        report.notes.append(f"curves could not be drawn: {type(exc).__name__}: {exc}")
    report.sections.append(_summary_table(monitor.curves))
    return report


def _ceiling(monitor: "Monitor") -> float | None:
    s = monitor.state
    if s.input_clip_error_energy > 0 and s.input_energy > 0:
        return 10 * math.log10(s.input_energy / s.input_clip_error_energy)
    return None


def _figures(curves: list[dict[str, Any]], validations: list[dict[str, Any]]) -> list:
    from codecdoctor.report.plots import figure_section, new_figure

    steps = [c["step"] for c in curves]
    sections = []
    fig, axes = new_figure(9.0, 6.0, nrows=2, ncols=2)
    ax = axes[0, 0]
    terms = sorted({k for c in curves for k in c["loss"]})
    for term in terms:
        ax.plot(steps, _finite([c["loss"].get(term, math.nan) for c in curves]), label=term)
    ax.set_title("loss terms (window median)")
    ax.set_xlabel("step")
    if terms:
        ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(steps, _finite([c["input_peak"] for c in curves]), label="input peak")
    ax.plot(steps, _finite([c["output_peak"] for c in curves]), label="output peak")
    ax.axhline(1.0, color="#888", linewidth=0.8, linestyle="--")
    ax.set_title("peak |x| per window")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    ax.plot(steps, _finite([c["rms_ratio_db"] for c in curves]), label="train")
    if validations:
        ax.plot([v["step"] for v in validations], _finite([v["rms_ratio_db"] for v in validations]), "o-",
                label="validation")
    ax.axhspan(-6, 6, color="#2f855a", alpha=0.08)
    ax.set_title("output/input RMS ratio (dB)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    ax.plot(steps, _finite([c["grad_norm"] for c in curves]), label="median")
    ax.plot(steps, _finite([c["grad_norm_max"] for c in curves]), label="max", alpha=0.6)
    if any(math.isfinite(v) for v in _finite([c.get("scale") for c in curves])):
        ax.plot(steps, _finite([c.get("scale") for c in curves]), label="scaler scale", alpha=0.6)
    if any(v > 0 for v in _finite([c["grad_norm_max"] for c in curves]) if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_title("gradient norm")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    sections.append(figure_section(fig, "Training curves", "one point per read-back window"))

    levels = max((len(c["perplexity"]) for c in curves), default=0)
    if levels or validations:
        fig, axes = new_figure(9.0, 3.2, nrows=1, ncols=2)
        ax = axes[0]
        for level in range(levels):
            ax.plot(steps, _finite([c["perplexity"][level] if level < len(c["perplexity"]) else math.nan
                                    for c in curves]), label=f"level {level}")
        ax.set_title("codebook perplexity per level")
        ax.set_xlabel("step")
        if levels:
            ax.legend(fontsize=7, ncol=2)
        ax = axes[1]
        if validations:
            ax.plot([v["step"] for v in validations], _finite([v["snr_db"] for v in validations]), "o-")
        ax.axhline(0.0, color="#c53030", linewidth=0.8, linestyle="--")
        ax.set_title("validation SNR (dB)")
        ax.set_xlabel("step")
        sections.append(figure_section(fig, "Codebooks and validation"))
    return sections


def _summary_table(curves: list[dict[str, Any]]) -> Table:
    rows = []
    stride = max(1, len(curves) // 20)
    for c in curves[::stride] + ([curves[-1]] if (len(curves) - 1) % stride else []):
        rows.append([c["step"], c["loss"].get("total", next(iter(c["loss"].values()), math.nan)) if c["loss"] else None,
                     c["input_peak"], c["output_peak"], c["rms_ratio_db"], c["grad_norm"],
                     min(c["perplexity"]) if c["perplexity"] else None])
    return Table("Read-back windows", ["step", "loss", "input peak", "output peak", "RMS ratio dB", "grad norm",
                                        "min perplexity"], rows, caption="a sample of the windows; all are in the JSON")
