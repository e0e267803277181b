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
from codecdoctor.report.sections import Table, Text


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


def _figures(report: Report, curves: list[dict[str, Any]], validations: list[dict[str, Any]]) -> list:
    from codecdoctor.report.plots import figure_section, new_figure

    sections = []
    points = _validation_points(report)
    # the trainer's per-epoch history (watch's history has validations only, no epochs or loss)
    history = [h for h in (report.measurements or {}).get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if points or curves:
        fig, (ax1, ax2) = new_figure(9.0, 3.0, ncols=2)
        if points:
            ax1.plot([p[0] for p in points], _finite([p[1] for p in points]), "o-", label="SNR")
        si = [(h.get("step"), h.get("val_si_snr_db")) for h in history if isinstance(h, dict)]
        if si:
            ax1.plot([s for s, _ in si], _finite([v for _, v in si]), ".-", label="SI-SNR")
        ax1.axhline(0.0, color="#c53030", linewidth=0.8, linestyle="--")
        ax1.set_title("validation SNR (dB)")
        ax1.set_xlabel("step")
        if si:
            ax1.legend(fontsize=7)
        if history:
            ax2.plot([h.get("step") for h in history], _finite([h.get("train_loss") for h in history]), "o-")
            ax2.set_title("training loss (epoch mean)")
        elif curves:
            terms = sorted({k for c in curves for k in c["loss"]})
            for term in terms:
                ax2.plot([c["step"] for c in curves], _finite([c["loss"].get(term) for c in curves]), label=term)
            ax2.set_title("loss terms (window median)")
            if terms:
                ax2.legend(fontsize=7)
        ax2.set_xlabel("step")
        sections.append(figure_section(fig, "Validation SNR and loss"))
    if not curves:
        return sections
    steps = [c["step"] for c in curves]
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
    scales = _finite([c.get("scale") for c in curves])
    if any(math.isfinite(v) for v in scales):
        ax.plot(steps, scales, label="scaler scale", alpha=0.6)
    if any(v > 0 for v in _finite([c["grad_norm_max"] for c in curves]) if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_title("gradient norm")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    sections.append(figure_section(fig, "Training curves", "one point per read-back window"))

    levels = max((len(c["perplexity"]) for c in curves), default=0)
    if levels:
        fig, ax = new_figure(9.0, 3.0)
        for level in range(levels):
            ax.plot(steps, _finite([c["perplexity"][level] if level < len(c["perplexity"]) else math.nan
                                    for c in curves]), label=f"level {level}")
        ax.set_title("codebook perplexity per level")
        ax.set_xlabel("step")
        ax.legend(fontsize=7, ncol=2)
        sections.append(figure_section(fig, "Codebooks"))
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
