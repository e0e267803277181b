"""Library side of `codecdoctor train`: build the codec's Trainer, plug in the live monitor, run it,
and return a `Report` with the training history, the event log path and any findings.

`train(...)` never calls `sys.exit`; the command wraps it. Errors the user caused (missing data,
unwritable checkpoint folder, bad option) raise `InputError` before any training step.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from codecdoctor.core.errors import CheckFailed, InputError
from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.monitor.config import CHECK_LEVELS
from codecdoctor_model.options import TrainOptions

# nonfinite: stop on NaN/Inf (the run is lost), report drift and keep training (the default);
# strict: stop on any error finding; warn: never stop; off: no monitor (the trainer's own NaN stop stays)
CHECK_MODES = (*CHECK_LEVELS, "off")


@dataclass
class TrainRequest(TrainOptions):
    """Everything `codecdoctor train` accepts: the codec's TrainOptions (declared once, in
    model/options.py) plus what codecdoctor adds around it, the codec's size and the live checks.
    The command line is generated from the fields that carry a `help`, with the user's original
    underscore flags and their dashed forms."""

    sample_rate: int = field(default=16000, metadata={"help": "Sample rate the codec runs at (files are resampled)."})
    config: str = field(default="default", metadata={"help": "Codec size preset.", "choices": ("default", "tiny")})
    codebooks: int | None = field(default=None, metadata={"help": "Number of RVQ codebooks (bitrate)."})
    codebook_size: int | None = field(default=None, metadata={"help": "Codes per codebook."})
    base_channels: int | None = field(default=None, metadata={"help": "Width of the first conv layer."})
    latent_dim: int | None = field(default=None, metadata={"help": "Dimension of the quantized latent."})
    output_bound: str | None = field(default=None, metadata={
        "help": "The decoder's last layer.", "choices": ("tanh", "none")})
    checks: str = field(default="nonfinite", metadata={
        "help": "Live checks: nonfinite (stop on NaN/Inf, report drift), strict (stop on any error finding), "
                "warn (never stop), off.", "choices": CHECK_MODES})
    tensorboard: str | None = field(default=None, metadata={
        "help": "Log the live monitor's read-back statistics (peaks, RMS ratio, gradient norm, codebook "
                "perplexity, validation SNR and what-if) as TensorBoard scalars in this folder."})

    def trainer_options(self) -> TrainOptions:
        return TrainOptions(**{f.name: getattr(self, f.name) for f in fields(TrainOptions)})

    def config_overrides(self) -> dict[str, Any]:
        return {"n_codebooks": self.codebooks, "codebook_size": self.codebook_size,
                "base_channels": self.base_channels, "latent_dim": self.latent_dim,
                "output_bound": self.output_bound}


def _finding(check_id: str, message: str, severity: Severity, title: str, **kw: Any) -> Finding:
    """A registered check's finding when the check exists, else a plain one with the same ID (the
    trainer's own safety stops must be reported even when the monitor's checks are not installed)."""
    try:
        from codecdoctor.core import registry

        registry.load_all()
        return registry.finding(check_id, message, severity=severity, **kw)
    except Exception:
        return Finding(id=check_id, severity=severity, title=title, message=message, **kw)


def _stop_finding(exc: Any) -> Finding:
    reason = getattr(exc, "reason", "")
    subject = f"step {exc.step}"
    if reason == "nonfinite_loss":
        return _finding("T604", str(exc), Severity.CRITICAL, "Non-finite loss term", subject=subject,
                        evidence={"step": exc.step, "terms": ", ".join(exc.details.get("terms", []))})
    if reason == "nonfinite_output":
        return _finding("T602", str(exc), Severity.CRITICAL, "Output out of range or non-finite", subject=subject,
                        evidence={"step": exc.step})
    return _finding("T601", str(exc), Severity.CRITICAL, "Input batch out of range or non-finite", subject=subject,
                    evidence={"step": exc.step, **{k: v for k, v in exc.details.items() if isinstance(v, (int, float))}})


def build_config(request: TrainRequest):
    from codecdoctor_model.config import CodecConfig

    try:
        config = CodecConfig.preset(request.config)
        changes = {"sample_rate": request.sample_rate,
                   **{k: v for k, v in request.config_overrides().items() if v is not None}}
        return config.replace(**changes)
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad codec configuration: {exc}") from None


def _load_monitor(trainer, request: TrainRequest, event_log: Path | None, notes: list[str]):
    if request.checks == "off":
        notes.append("live checks off (--checks off): only the trainer's own non-finite / range stops were active")
        return None
    try:
        from codecdoctor.measure.bound import bound_value
        from codecdoctor.monitor import Monitor, MonitorConfig
    except ImportError as exc:
        notes.append(f"live monitor not available ({exc}); trained with the trainer's own non-finite / range stops only")
        return None
    codec = trainer.config
    writer = None
    if request.tensorboard and trainer.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InputError(f"--tensorboard needs the tensorboard package ({exc}): pip install tensorboard") from None
        writer = SummaryWriter(request.tensorboard)
    # "nonfinite" (the default): stop on NaN/Inf only, report drift; "strict": stop on any error
    config = MonitorConfig.for_checks(request.checks, output_bound=bound_value(codec.output_bound),
                                      event_log=str(event_log) if event_log is not None else None)
    # every DDP rank gets a monitor: its T611 read-backs all-reduce codebook buffers across ranks
    return Monitor(trainer.model, codec.sample_rate, config=config,
                   optimizer=trainer.optimizer, start_step=trainer.step, writer=writer)


def train(request: TrainRequest, *, callbacks: list[Any] | None = None,
          progress_factory: Callable[[int, Any], Any] | None = None) -> Report:
    """Train the built-in codec; returns the training report (history in measurements.history).

    `progress_factory(total_steps, monitor)` may return a display callback (with `on_log` /
    `on_epoch`) and is used as a context manager when it has `__enter__`.
    """
    from codecdoctor_model.dataset import DataError
    from codecdoctor_model.trainer import Trainer, TrainSetupError

    _validate(request)
    config = build_config(request)
    options = request.trainer_options()
    try:
        trainer = Trainer(config, options, callbacks=list(callbacks or []))
    except (DataError, TrainSetupError) as exc:
        raise InputError(str(exc)) from None

    report = Report(command="train", args={f.name: getattr(request, f.name) for f in fields(request)})
    report.notes.extend(f"data: {w}" for w in trainer.source.warnings)
    report.notes.append(f"validation: {trainer.source.split.get('description', 'unknown')}")
    event_log = trainer.exp_dir / "events.jsonl"
    monitor = _load_monitor(trainer, request, event_log if trainer.is_main else None, report.notes)
    if monitor is not None:
        trainer.callbacks.append(monitor)
    stop_at = trainer.total_steps if request.max_steps is None else min(trainer.total_steps, request.max_steps)
    display = progress_factory(stop_at, monitor) if (progress_factory and trainer.is_main) else None
    if display is not None:
        trainer.callbacks.append(display)

    result, stopped, write_failure = _fit(trainer, display, report.notes)
    monitor_measurements = _close_monitor(monitor, report)
    known = {(f.id, f.message) for f in report.findings}
    report.add([f for f in stopped if (f.id, f.message) not in known])
    report.measurements = _training_measurements(trainer, result, event_log, write_failure, monitor_measurements)
    report.fatal = write_failure  # the run could not go on: the report is kept, the command exits 2
    return report  # its history table and curves are drawn from the measurements (report/figures/train.py)


def _validate(request: TrainRequest) -> None:
    """The user's mistakes, caught before any training step (InputError, exit 2)."""
    if request.checks not in CHECK_MODES:
        raise InputError(f"--checks must be one of {', '.join(CHECK_MODES)}, got {request.checks!r}")
    if not Path(request.data_dir).exists():  # a folder, a WebDataset .tar shard or a lhotse manifest
        raise InputError(f"data folder not found: {request.data_dir}")
    if request.val_dir and not Path(request.val_dir).exists():
        raise InputError(f"--val_dir: validation folder not found: {request.val_dir}")
    for name in ("batch_size", "num_epochs"):
        if getattr(request, name) < 1:
            raise InputError(f"--{name} must be at least 1")
    if not (request.learning_rate > 0 and math.isfinite(request.learning_rate)):
        raise InputError("--learning_rate must be a positive number")


def _fit(trainer, display: Any, notes: list[str]) -> tuple[Any, list[Finding], str | None]:
    """Run the trainer to its end or its stop: (its result or None, the findings that stopped it,
    why a checkpoint could not be written or None). The trainer is closed either way."""
    from codecdoctor_model.trainer import CheckpointWriteError, TrainingStopped

    result = None
    stopped: list[Finding] = []
    write_failure: str | None = None
    try:
        if display is not None and hasattr(display, "__enter__"):
            with display:
                result = trainer.fit()
        else:
            result = trainer.fit()
    except CheckFailed as exc:
        stopped = list(exc.findings)
        notes.append(f"training stopped by a live check at step {trainer.step}; "
                     f"last good checkpoint: {trainer.last_path if trainer.last_path.exists() else 'none'}")
    except CheckpointWriteError as exc:
        write_failure = str(exc)
        notes.append(f"training stopped at step {exc.step}: {exc}")
    except TrainingStopped as exc:
        stopped = [_stop_finding(exc)]
        notes.append(f"training stopped at step {exc.step}: {exc}; last good checkpoint: "
                     f"{trainer.last_path if trainer.last_path.exists() else 'none'}")
    finally:
        trainer.close()
    return result, stopped, write_failure


def _close_monitor(monitor: Any, report: Report) -> dict[str, Any] | None:
    """The live monitor's findings and notes into the report; returns its measurements."""
    if monitor is None:
        return None
    mon_report = monitor.close()
    report.add(mon_report.findings, mon_report.checks_run)
    report.notes.extend(mon_report.notes)
    if monitor.scalars is not None:
        monitor.scalars.writer.close()
    return mon_report.measurements


def _training_measurements(trainer, result: Any, event_log: Path, write_failure: str | None,
                           monitor_measurements: dict[str, Any] | None) -> dict[str, Any]:
    history = result.history if result is not None else list(trainer.history)
    return {
        "history": history,
        "event_log": str(event_log) if event_log.exists() else None,
        "stop_reason": (result.stop_reason if result is not None
                        else "checkpoint_write_failed" if write_failure else "stopped_by_check"),
        "fatal_error": write_failure,
        "monitor": monitor_measurements,
        "steps": trainer.step,
        "seconds": result.seconds if result is not None else None,
        "steps_per_epoch": trainer.steps_per_epoch,
        "checkpoints": {"last": str(trainer.last_path) if trainer.last_path.exists() else None,
                        "best": str(trainer.best_path) if trainer.best_path.exists() else None},
        "bitrate_bps": trainer.config.bitrate_bps,
        "config": trainer.config.to_dict(),
        "quantizer": trainer.model.usage(),
        "data": {"files": len(trainer.source.files), "train_seconds": trainer.source.train_seconds,
                 "validation_crops": int(trainer.validation_set.shape[0]) if trainer.validation_set is not None else 0,
                 "warnings": list(trainer.source.warnings), "validation": dict(trainer.source.split)},
    }


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
