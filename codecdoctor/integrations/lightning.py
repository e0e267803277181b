"""`CodecDoctorCallback`: the live monitor for a `lightning.Trainer`, with no change to the
LightningModule.

    from codecdoctor.integrations.lightning import CodecDoctorCallback

    doctor = CodecDoctorCallback(sample_rate=16000, html="reports/monitor.html")
    trainer = lightning.Trainer(callbacks=[doctor], ...)
    trainer.fit(module, train_loader, val_loader)
    doctor.report.findings               # T601-T612, as codecdoctor.Monitor reports them

The codec is found as `watch` finds it (the outermost submodule of the LightningModule called with an
audio-shaped tensor that returns audio of the same length); training forwards are monitored steps,
validation forwards are validation pairs (the sanity-check pass is skipped). Lightning's own hooks
give the loss (`on_before_backward`), the unscaled gradients (`on_before_optimizer_step`) and the
step with its GradScaler (`on_train_batch_end`). `checks="nonfinite"` (default) stops the fit by
raising `codecdoctor.CheckFailed` from the step that produced NaN/Inf; the report is built (and
written, when `html` / `json` are given) at the end of the fit or on that exception.

Lightning is an optional dependency (`pip install codecdoctor[lightning]` or `pip install lightning`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from codecdoctor.monitor.config import CHECK_LEVELS

try:
    from lightning.pytorch import Callback as _Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback as _Callback
    except ImportError:
        _Callback = None

MISSING = ("the Lightning callback needs the lightning package: pip install lightning "
           "(or pip install 'codecdoctor[lightning]')")
CHECK_MODES = tuple(CHECK_LEVELS)


class _MissingBase:
    def __init__(self, *args: Any, **kwargs: Any):
        raise ImportError(MISSING)


class CodecDoctorCallback(_Callback or _MissingBase):  # type: ignore[misc]
    def __init__(self, sample_rate: int = 16000, *, checks: str = "nonfinite", output_bound: float | None = None,
                 read_every: int = 25, html: str | Path | None = None, json: str | Path | None = None,
                 event_log: str | Path | None = None, writer: Any = None):
        if _Callback is None:
            raise ImportError(MISSING)
        if checks not in CHECK_MODES:
            raise ValueError(f"checks must be one of {', '.join(CHECK_MODES)}, got {checks!r}")
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.checks = checks
        self.output_bound = output_bound
        self.read_every = int(read_every)
        self.html, self.json, self.event_log, self.writer = html, json, event_log, writer
        self.tap = None
        self.report = None

    # -- attach / detach ------------------------------------------------------------------------
    def _make_monitor(self, model, bound):
        from codecdoctor.monitor import Monitor, MonitorConfig

        config = MonitorConfig.for_checks(self.checks, output_bound=bound, read_every=self.read_every,
                                          event_log=self.event_log)
        return Monitor(model, self.sample_rate, config=config, writer=self.writer)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.tap is not None:
            return
        from codecdoctor.monitor.tap import ModelTap

        # Lightning's own hooks report the loss, gradients and steps: only the forward hooks are global
        self.tap = ModelTap(self._make_monitor, output_bound=self.output_bound, scope=pl_module,
                            optimizer_hooks=False, backward_hook=False).install()

    def _finish(self) -> None:
        if self.tap is None or self.report is not None:
            return
        self.tap.remove()
        self.report = self.tap.finish("monitor")
        if self.html:
            from codecdoctor.report import html as html_view
            html_view.write(self.report, Path(self.html), title="codecdoctor: Lightning training monitor")
        if self.json:
            from codecdoctor.report import json as json_view
            json_view.write(self.report, Path(self.json))

    # -- Lightning hooks -----------------------------------------------------------------------
    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.tap is not None and hasattr(loss, "numel") and loss.numel() == 1:
            self.tap.on_loss(loss)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.tap is not None:
            self.tap.before_optimizer_step(optimizer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.tap is not None:
            scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
            self.tap.after_optimizer_step(scaler)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.tap is None:
            return
        if getattr(trainer, "sanity_checking", False):
            self.tap.discard_validation()  # the untrained model before the first step
        else:
            self.tap.flush_validation()

    def on_fit_end(self, trainer, pl_module) -> None:
        self._finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._finish()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._finish()
