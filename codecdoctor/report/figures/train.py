"""Sections of a training report (`train`, a `Monitor`'s own report, `watch`), from measurements only.

Order: what a user looks for first. The result (final validation SNR, the best step), then the
curves (validation SNR and loss; peaks, level ratio, gradient norm; codebook perplexity), then the
per-window table. Findings that a later healthy validation resolved are info with
`resolved_at_step` in their evidence; the page folds them below the open ones.

Measurements read: `history[]` (train: one entry per epoch), `monitor` (train: the monitor's own
measurements) or, for `monitor` / `watch` reports, the monitor's measurements at the top level:
`curves[]` (one point per read-back window), `validation[]`, `loss_balance[]`, `final_val_snr_db`,
`best_val_snr_db`, `best_step`.
"""
from __future__ import annotations

import math
from typing import Any

from codecdoctor.core.findings import Report
from codecdoctor.report.figures import db_text
from codecdoctor.report.sections import Figure, Table, Text
from codecdoctor.report.svg import PALETTE, SEVERITY_COLORS, Axis, Chart, panels


def _finite(values):
    return [v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan
            for v in values]


def _monitor_part(report: Report) -> dict[str, Any]:
    m = report.measurements or {}
    if isinstance(m.get("monitor"), dict):
        return m["monitor"]
    return m if "curves" in m else {}


def _validation_points(report: Report) -> list[tuple[int, float]]:
    """(step, validation SNR dB): the trainer's history when there is one (energy-weighted over the
    whole held-out set), else the monitor's validations."""
    history = (report.measurements or {}).get("history") or []
    points = [(h.get("step"), h.get("val_snr_db")) for h in history if isinstance(h, dict)]
    if not points:
        points = [(v.get("step"), v.get("snr_db")) for v in _monitor_part(report).get("validation") or []]
    return [(int(s), float(v)) for s, v in points
            if isinstance(s, (int, float)) and isinstance(v, (int, float)) and not math.isnan(v)]


def _result(report: Report) -> tuple[float | None, tuple[int, float] | None, int | None]:
    points = _validation_points(report)
    final = points[-1][1] if points else None
    finite = [p for p in points if math.isfinite(p[1])]
    best = max(finite, key=lambda p: p[1]) if finite else None
    m = report.measurements or {}
    steps = m.get("steps") if isinstance(m.get("steps"), int) else _monitor_part(report).get("steps")
    return final, best, steps


def key_numbers(report: Report) -> list[tuple[str, str]]:
    final, best, steps = _result(report)
    keys = [("final validation SNR", db_text(final))]
    if best is not None:
        keys.append(("best validation SNR", f"{db_text(best[1])} at step {best[0]}"))
    if steps is not None:
        keys.append(("steps", str(steps)))
    ceiling = _monitor_part(report).get("input_snr_ceiling_db")
    if isinstance(ceiling, (int, float)):
        keys.append(("SNR ceiling of a bounded decoder on all data seen", db_text(ceiling)))
    return keys


def build(report: Report, *, figures: bool) -> list:
    sections: list = []
    final, best, steps = _result(report)
    monitor = _monitor_part(report)
    lines = [f"final validation SNR: {db_text(final)}"]
    if best is not None:
        lines.append(f"best validation SNR: {db_text(best[1])} at step {best[0]}")
    if steps is not None:
        lines.append(f"steps: {steps}; read-backs: {monitor.get('read_backs', 'n/a')}")
    resolved = [f for f in report.findings if "resolved_at_step" in (f.evidence or {})]
    if resolved:
        lines.append(f"{len(resolved)} early finding(s) resolved by a later healthy validation (kept as info, below)")
    m = report.measurements or {}
    if "script" in m:
        lines.append(f"script: {m['script']} (exit code {m.get('exit_code')})")
    sections.append(Text("Result", "\n".join(lines)))
    curves = monitor.get("curves") or []
    if figures:
        sections.extend(_figures(report, curves, monitor.get("validation") or []))
    history = [h for h in m.get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if history:
        sections.append(_history_table(history))
    balance = monitor.get("loss_balance") or []
    if balance:
        sections.append(_balance_table(balance))
    if curves:
        sections.append(_summary_table(curves))
    return sections


def _panel(y_label: str, *, log_y: bool = False, width_px: int = 460) -> Chart:
    return Chart(Axis("step"), Axis(y_label, log=log_y), width_px=width_px, height_px=300, description=y_label)


def _figure(title: str, charts: list[Chart], caption: str = "") -> Figure:
    rendered = [chart.render() for chart in charts]
    return Figure(title=title, svg=rendered[0] if len(rendered) == 1 else panels(rendered), caption=caption,
                  alt=title)


def _loss_terms_panel(curves: list[dict[str, Any]]) -> Chart:
    chart = _panel("loss terms (window median)")
    steps = [c["step"] for c in curves]
    for i, term in enumerate(sorted({k for c in curves for k in c["loss"]})):
        chart.line(steps, _finite([c["loss"].get(term, math.nan) for c in curves]),
                   color=PALETTE[i % len(PALETTE)], label=term)
    return chart


def _validation_figure(report: Report, curves: list[dict[str, Any]]) -> Figure:
    """Validation SNR (and SI-SNR) beside the training loss: the trainer's per-epoch mean, else the
    monitor's loss terms (watch's history has validations only, no epochs or loss)."""
    points = _validation_points(report)
    history = [h for h in (report.measurements or {}).get("history") or [] if isinstance(h, dict) and "epoch" in h]
    snr = _panel("validation SNR (dB)")
    if points:
        snr.line([p[0] for p in points], _finite([p[1] for p in points]), color=PALETTE[0], label="SNR",
                 markers=True)
    si = [(h.get("step"), h.get("val_si_snr_db")) for h in history]
    if any(v is not None for _, v in si):
        snr.line([s for s, _ in si], _finite([v for _, v in si]), color=PALETTE[1], label="SI-SNR", markers=True)
    snr.hline(0.0, color=SEVERITY_COLORS["error"], width_px=0.8)
    if history:
        loss = _panel("training loss (epoch mean)")
        loss.line([h.get("step") for h in history], _finite([h.get("train_loss") for h in history]),
                  color=PALETTE[0], markers=True)
    else:
        loss = _loss_terms_panel(curves)
    return _figure("Validation SNR and loss", [snr, loss])


def _curves_figure(curves: list[dict[str, Any]], validations: list[dict[str, Any]]) -> Figure:
    """Loss terms, peaks, output/input level and gradient norm per read-back window."""
    steps = [c["step"] for c in curves]
    peaks = _panel("peak |x| per window")
    peaks.line(steps, _finite([c["input_peak"] for c in curves]), color=PALETTE[0], label="input peak")
    peaks.line(steps, _finite([c["output_peak"] for c in curves]), color=PALETTE[1], label="output peak")
    peaks.hline(1.0, color="#888888", width_px=0.8)
    level = _panel("output/input RMS ratio (dB)")
    level.band(-6.0, 6.0, color="#2f855a", opacity=0.08)
    level.line(steps, _finite([c["rms_ratio_db"] for c in curves]), color=PALETTE[0], label="train")
    if validations:
        level.line([v["step"] for v in validations], _finite([v["rms_ratio_db"] for v in validations]),
                   color=PALETTE[1], label="validation", markers=True)
    grad_max = _finite([c["grad_norm_max"] for c in curves])
    grad = _panel("gradient norm", log_y=any(v > 0 for v in grad_max if math.isfinite(v)))
    grad.line(steps, _finite([c["grad_norm"] for c in curves]), color=PALETTE[0], label="median")
    grad.line(steps, grad_max, color=PALETTE[1], label="max", width_px=1.0)
    scales = _finite([c.get("scale") for c in curves])
    if any(math.isfinite(v) for v in scales):
        grad.line(steps, scales, color=PALETTE[2], label="scaler scale", width_px=1.0)
    return _figure("Training curves", [_loss_terms_panel(curves), peaks, level, grad],
                   "one point per read-back window; shaded: output level within ±6 dB of the input")


def _codebook_figure(curves: list[dict[str, Any]], levels: int) -> Figure:
    chart = _panel("codebook perplexity per level", width_px=920)
    steps = [c["step"] for c in curves]
    for level in range(levels):
        chart.line(steps, _finite([c["perplexity"][level] if level < len(c["perplexity"]) else math.nan
                                   for c in curves]), color=PALETTE[level % len(PALETTE)], label=f"level {level}")
    return _figure("Codebooks", [chart])


def _figures(report: Report, curves: list[dict[str, Any]], validations: list[dict[str, Any]]) -> list:
    sections = []
    if _validation_points(report) or curves:
        sections.append(_validation_figure(report, curves))
    if not curves:
        return sections
    sections.append(_curves_figure(curves, validations))
    levels = max((len(c["perplexity"]) for c in curves), default=0)
    if levels:
        sections.append(_codebook_figure(curves, levels))
    return sections


def _history_table(history: list[dict[str, Any]]) -> Table:
    rows = [[h.get("epoch"), h.get("step"), h.get("train_loss"), h.get("val_snr_db"), h.get("val_si_snr_db"),
             h.get("val_mel_distance"), h.get("lr"), "yes" if h.get("partial") else ""] for h in history]
    return Table("Training history", ["epoch", "step", "train loss", "val SNR dB", "val SI-SNR dB",
                                      "val mel distance", "lr", "partial"], rows,
                 caption="Validation SNR from total power over the whole held-out set.")


def _balance_table(balance: list[dict[str, Any]]) -> Table:
    terms = sorted({t for b in balance for t in b.get("terms", [])})
    stride = max(1, len(balance) // 20)
    rows = []
    for b in balance[::stride]:
        shares = dict(zip(b.get("terms", []), b.get("shares", [])))
        rows.append([b.get("step")] + [shares.get(t) for t in terms])
    return Table("Loss balance at the decoder output (T612)", ["step"] + [f"{t} share" for t in terms], rows,
                 caption="each term's share of Σ‖∂L/∂y‖, measured on the read-back schedule")


def _summary_table(curves: list[dict[str, Any]]) -> Table:
    rows = []
    stride = max(1, len(curves) // 20)
    for c in curves[::stride] + ([curves[-1]] if (len(curves) - 1) % stride else []):
        rows.append([c["step"], c["loss"].get("total", next(iter(c["loss"].values()), math.nan)) if c["loss"] else None,
                     c["input_peak"], c["output_peak"], c["rms_ratio_db"], c["grad_norm"],
                     min(c["perplexity"]) if c["perplexity"] else None])
    return Table("Read-back windows", ["step", "loss", "input peak", "output peak", "RMS ratio dB", "grad norm",
                                        "min perplexity"], rows, caption="a sample of the windows; all are in the JSON")
