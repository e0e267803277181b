"""The live training display: a rich progress bar (step, ETA, loss terms, learning rate, last
validation SNR) with a status line of the monitor's newest read-back: input/output peak, output/input
RMS ratio, gradient norm, codebook perplexity per level, grad-scaler scale and the newest finding."""
from __future__ import annotations

import math
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from codecdoctor.report.terminal import printable


class _ProgressWithStatus(Progress):
    """A progress bar with one free status line under it (no second Live display needed)."""

    status = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.status:
            yield Text(self.status, style="dim", overflow="ellipsis", no_wrap=True)


def _fmt(value: Any, spec: str = ".3g") -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, spec)
    return None


def monitor_status(latest: dict) -> str:
    """One line from `Monitor.latest` (values of the newest read-back)."""
    parts = []
    for key, label in (("input_peak", "in peak"), ("output_peak", "out peak"), ("rms_ratio_db", "out/in RMS dB"),
                       ("grad_norm", "grad")):
        text = _fmt(latest.get(key))
        if text is not None:
            parts.append(f"{label} {text}")
    perplexity = [p for p in (latest.get("perplexity") or []) if _fmt(p) is not None]
    if perplexity:
        parts.append("perplexity " + "/".join(f"{p:.0f}" for p in perplexity))
    scale = _fmt(latest.get("scale"))
    if scale is not None:
        parts.append(f"scaler {scale}")
    if latest.get("newest_finding"):
        parts.append("| newest: " + printable(latest["newest_finding"])[:90])
    return ("monitor: " + "  ".join(parts)) if parts else ""


class TrainDisplay:
    """Trainer callback (`on_log`, `on_epoch`) that drives the progress bar and status line."""

    def __init__(self, console, total_steps: int, monitor):
        self.monitor = monitor
        self.console = console
        self.progress = _ProgressWithStatus(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                            console=console, transient=False)
        self.task = self.progress.add_task("train", total=total_steps, info="")
        self.val = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_log(self, step: int, stats: dict) -> None:
        parts = [f"{k} {stats[k]:.4g}" for k in ("total", "mel", "l1", "nsr", "commit", "adv") if k in stats]
        parts.append(f"lr {stats['lr']:.2g}")
        self.progress.status = monitor_status(getattr(self.monitor, "latest", None) or {})
        self.progress.update(self.task, completed=step, info=" ".join(parts) + self.val)

    def on_epoch(self, entry: dict) -> None:
        self.val = f" | val SNR {entry['val_snr_db']:.2f} dB"
        self.progress.update(self.task, completed=entry["step"])
        self.progress.console.print(
            f"epoch {entry['epoch']} step {entry['step']}: train loss {entry['train_loss']:.4f}, "
            f"val SNR {entry['val_snr_db']:.2f} dB, SI-SNR {entry['val_si_snr_db']:.2f} dB, "
            f"mel {entry['val_mel_distance']:.3f}", markup=False)


class progress_bar:  # noqa: N801 - used as a context manager like `open`
    """`with progress_bar("audit", console) as on_progress:` yields a callback
    `on_progress(completed, total, detail)` for a library call, or None when disabled or the console
    is not a terminal. The bar starts on the first callback, so worker processes the library forks
    before its first result never inherit the bar's refresh thread."""

    def __init__(self, label: str, console: Any, *, enabled: bool = True) -> None:
        self.label = label
        self.console = console
        self.enabled = enabled and bool(getattr(console, "is_terminal", False))
        self.bar: Progress | None = None
        self.task = None

    def _update(self, completed: float, total: float, detail: str = "") -> None:
        if self.bar is None:
            from rich.progress import TimeElapsedColumn

            self.bar = Progress(TextColumn(self.label), BarColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console, transient=True)
            self.task = self.bar.add_task("", total=total or None)
            self.bar.start()
        self.bar.update(self.task, completed=completed, total=total or None, description=printable(detail)[-60:])

    def __enter__(self):
        return self._update if self.enabled else None

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
