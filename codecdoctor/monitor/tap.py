"""Hooks that attach the live monitor to a training loop it does not own (`watch`, the Lightning
callback), through PyTorch's global hooks instead of calls in the loop.

* Forward hooks on every module (`torch.nn.modules.module.register_module_forward_pre_hook` and
  `register_module_forward_hook`) find the model: the outermost module called with an audio-shaped
  tensor (`[B, C<=2, T]` or `[B, T]`, T >= 1024 samples) whose output holds a floating tensor of the
  same length within one hop (a codec's output may be a few frames short or long). Once found, the
  hooks return at once for every other module.
* A training forward of the model (grad enabled, `model.training`; or grad enabled in eval mode
  and followed by a backward before the next forward) is one monitored step:
  `Monitor.on_batch(x, y)` on the device. The loss arrives when `.backward()` is called on a scalar
  (a thin wrapper on `torch.Tensor.backward`; through `GradScaler.scale` its unscaled value).
* An eval-mode or no-grad forward of the model is a validation pair (input = reference, output =
  estimate), kept on the device (at most 64 pairs); an eval-mode round is judged together
  (T603/T608 with the R3xx diagnosis) when training resumes or the run ends; no-grad forwards in
  training mode are judged at most once per read-back window.
* Optimizer step hooks (`torch.optim.optimizer.register_optimizer_step_pre_hook` / `post_hook`):
  the gradients before the step (T605), the learning rate (T609). Only optimizers that hold the
  model's parameters count (a discriminator's does not).
* A GradScaler wrapper (`torch.amp.GradScaler.scale` / `update`): the scale after each update (T606).
* Codebooks: the Monitor finds EMA / usage buffers in the model (T607).
* The output bound: a final `nn.Tanh` / `nn.Hardtanh` / `nn.Softsign` or a module whose class name
  says clamp / clip, seen as the last leaf module of the model's first forward (or given).

Nothing here reads a tensor's value on the host during training: shapes, dtypes and flags only.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from codecdoctor.core.errors import CheckFailed
from codecdoctor.core.findings import Finding, Report
from codecdoctor.measure.bound import module_bound
from codecdoctor.measure.forward import first_audio_output

AUDIO_MIN_SAMPLES = 1024  # the shortest time axis taken for audio: 64 ms at 16 kHz
AUDIO_MAX_CHANNELS = 2
# a codec's output length differs from its input's by less than one hop; hops of published codecs
# are 320 (EnCodec, SoundStream) to 512 (DAC), so a quarter of the input or 1024 samples bounds it
LENGTH_TOLERANCE_SAMPLES = 1024
VALIDATION_MAX_PAIRS = 64


def audio_shaped(value: Any) -> bool:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.shape[-1:] == ():
        return False
    if value.dim() == 3:
        return value.shape[1] <= AUDIO_MAX_CHANNELS and value.shape[2] >= AUDIO_MIN_SAMPLES and value.shape[0] > 0
    return value.dim() == 2 and value.shape[1] >= AUDIO_MIN_SAMPLES and value.shape[0] > 0


def audio_output(output: Any, x: torch.Tensor) -> torch.Tensor | None:
    """The first floating tensor in `output` with x's batch size, at most x's channels and x's
    length within the tolerance: the reconstruction."""
    length = x.shape[-1]
    return first_audio_output(output, x.shape[0], length, tolerance=min(LENGTH_TOLERANCE_SAMPLES, length // 4),
                              max_channels=AUDIO_MAX_CHANNELS)


def bound_of(module: nn.Module | None) -> tuple[float | None, str]:
    """(bound, how it was found) from the model's last leaf module."""
    if module is None:
        return None, "no final module seen"
    bound = module_bound(module)
    return bound.value, bound.source


@dataclasses.dataclass
class _Frame:
    module: nn.Module
    x: torch.Tensor | None
    training: bool
    grad: bool


class ModelTap:
    """Finds the model among all module calls and feeds a `Monitor` it builds for it.

    `make_monitor(model, output_bound)` builds the monitor once the model is known. `scope`, when
    given, limits the search to that module's own submodules (the Lightning callback's LightningModule).
    """

    def __init__(self, make_monitor: Callable[[nn.Module, float | None], Any], *, output_bound: float | None = None,
                 scope: nn.Module | None = None, optimizer_hooks: bool = True, backward_hook: bool = True):
        self.make_monitor = make_monitor
        self.given_bound = output_bound
        self.scope = scope
        self.optimizer_hooks = optimizer_hooks
        self.backward_hook = backward_hook
        self.model: nn.Module | None = None
        self.monitor: Any = None
        self.bound_source = "given" if output_bound is not None else ""
        self.stopped: CheckFailed | None = None
        self.training_forwards = 0
        self.validation_forwards = 0
        self.validation_rounds = 0
        self.optimizer_steps = 0
        self.notes: list[str] = []
        self._stack: list[_Frame] = []
        self._candidates: list[tuple[int, nn.Module, torch.Tensor, Any, _Frame, nn.Module | None]] = []
        self._last_leaf: nn.Module | None = None
        self._in_scope: set[int] | None = None
        self._handles: list[Any] = []
        self._patched: list[tuple[Any, str, Any]] = []
        self._loss_seen = False
        self._scaled_ids: set[int] = set()
        self._scaler: Any = None
        self._model_optimizers: dict[int, bool] = {}
        self._val_refs: list[torch.Tensor] = []
        self._val_ests: list[torch.Tensor] = []
        self._val_from_eval = False
        self._val_flushed_at = 0
        self._undecided: tuple[_Frame, torch.Tensor] | None = None

    # -- install / remove -------------------------------------------------------------------
    def install(self) -> "ModelTap":
        from torch.nn.modules import module as module_hooks

        self._handles.append(module_hooks.register_module_forward_pre_hook(self._pre))
        self._handles.append(module_hooks.register_module_forward_hook(self._post, always_call=True))
        if self.optimizer_hooks:
            from torch.optim import optimizer as optimizer_hooks

            self._handles.append(optimizer_hooks.register_optimizer_step_pre_hook(self._before_step))
            self._handles.append(optimizer_hooks.register_optimizer_step_post_hook(self._after_step))
            self._wrap_scaler()
        if self.backward_hook:
            self._patch(torch.Tensor, "backward", self._wrapped_backward(torch.Tensor.backward))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patched.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def _wrapped_backward(self, original):
        tap = self

        def backward(tensor, *args, **kwargs):
            if tensor.numel() == 1 and id(tensor) not in tap._scaled_ids:
                tap.on_loss(tensor)
            return original(tensor, *args, **kwargs)

        backward.__doc__ = original.__doc__
        return backward

    def _wrap_scaler(self) -> None:
        try:
            from torch.amp.grad_scaler import GradScaler
        except ImportError:  # pragma: no cover - torch without amp
            return
        tap = self
        original_scale, original_update = GradScaler.scale, GradScaler.update

        def scale(scaler, outputs):
            result = original_scale(scaler, outputs)
            if isinstance(outputs, torch.Tensor) and outputs.numel() == 1 and scaler.is_enabled():
                tap._scaler = scaler
                tap.on_loss(outputs)
                tap._scaled_ids = {id(result)}
            return result

        def update(scaler, new_scale=None):
            result = original_update(scaler, new_scale)
            if scaler is tap._scaler and tap.monitor is not None and scaler.is_enabled():
                tap._on_step(scaler)
            return result

        self._patch(GradScaler, "scale", scale)
        self._patch(GradScaler, "update", update)

    # -- forward hooks ------------------------------------------------------------------------
    def _belongs(self, module: nn.Module) -> bool:
        if self.scope is None:
            return True
        if self._in_scope is None:
            self._in_scope = {id(m) for m in self.scope.modules()}
        return id(module) in self._in_scope

    def _busy(self) -> bool:
        monitor = self.monitor
        return monitor is not None and monitor.tracer.running

    def _pre(self, module: nn.Module, args: tuple) -> None:
        if self.model is not None:
            if module is self.model:
                if self.stopped is not None:
                    raise self.stopped  # the run was stopped: a script that caught it must not go on
                if not self._busy():
                    x = args[0] if args else None
                    self._stack.append(_Frame(module, x if audio_shaped(x) else None, module.training,
                                              torch.is_grad_enabled()))
            return
        if not self._belongs(module):
            return
        x = args[0] if args else None
        self._stack.append(_Frame(module, x if audio_shaped(x) else None, module.training, torch.is_grad_enabled()))

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.model is not None:
            if module is self.model and self._stack and self._stack[-1].module is module:
                frame = self._stack.pop()
                if frame.x is not None:
                    y = audio_output(output, frame.x)
                    if y is not None:
                        self._model_call(frame, y)
            return
        if not self._stack or self._stack[-1].module is not module:
            return
        frame = self._stack.pop()
        if next(module.children(), None) is None:
            self._last_leaf = module
        if frame.x is not None and any(p.requires_grad for p in module.parameters()):
            # a module without trainable parameters (an augmentation, a fixed filter) is not the model
            y = audio_output(output, frame.x)
            if y is not None:
                self._candidates.append((len(self._stack), module, frame.x, y, frame, self._last_leaf))
        if not self._stack and self._candidates:
            depth, model, x, y, frame, last_leaf = min(self._candidates, key=lambda c: c[0])
            self._candidates.clear()
            self._identify(model, last_leaf)
            self._model_call(frame, y)

    def _identify(self, model: nn.Module, last_leaf: nn.Module | None) -> None:
        self.model = model
        bound = self.given_bound
        if bound is None:
            bound, self.bound_source = bound_of(last_leaf)
        self.monitor = self.make_monitor(model, bound)

    def _model_call(self, frame: _Frame, y: torch.Tensor) -> None:
        if self.monitor is None:
            return
        self._settle_undecided()
        if frame.grad and not frame.training:
            # grad enabled in eval mode: a training step of a model never switched to train() (some
            # constructors return it in eval mode) or a validation loop without no_grad; a backward
            # before the next forward decides it
            self._undecided = (frame, y)
        elif frame.grad:
            self._training_call(frame, y)
        else:
            self._validation_call(frame, y)

    def _settle_undecided(self, trained: bool = False) -> None:
        if self._undecided is None:
            return
        frame, y = self._undecided
        self._undecided = None
        if trained:
            self._training_call(frame, y)
        else:
            self._validation_call(frame, y)

    def _training_call(self, frame: _Frame, y: torch.Tensor) -> None:
        # an eval-mode validation loop ends when training resumes; no-grad forwards in training
        # mode (a metric, an audio sample for a logger) are judged at most once per read-back
        # window, so they never cost a host copy per step
        if self._val_refs and (self._val_from_eval or
                               self.training_forwards - self._val_flushed_at >= self.monitor.read_every):
            self._flush_validation()
        self.training_forwards += 1
        self._loss_seen = False
        self._guard(self.monitor.on_batch, frame.x, y)

    def _validation_call(self, frame: _Frame, y: torch.Tensor) -> None:
        self.validation_forwards += 1
        held = sum(r.shape[0] for r in self._val_refs)
        if held < VALIDATION_MAX_PAIRS:
            keep = min(VALIDATION_MAX_PAIRS - held, frame.x.shape[0])
            # copies on the device: the host reads them once, when the round is judged
            self._val_refs.append(frame.x[:keep].detach().float().reshape(keep, -1).clone())
            self._val_ests.append(y[:keep].detach().float().reshape(keep, -1).clone())
            self._val_from_eval = self._val_from_eval or not frame.training

    # -- loss, optimizer, scaler --------------------------------------------------------------
    def on_loss(self, loss: torch.Tensor) -> None:
        """The first scalar backpropagated after a training forward of the model is its loss."""
        if self._undecided is not None:
            self._settle_undecided(trained=True)
        if self.monitor is None or self._loss_seen or not loss.is_floating_point():
            return
        self._loss_seen = True
        self._guard(self.monitor.on_loss, {"loss": loss})

    def _is_model_optimizer(self, optimizer: Any) -> bool:
        if self.model is None:
            return False
        known = self._model_optimizers.get(id(optimizer))
        if known is None:
            params = {id(p) for p in self.model.parameters()}
            known = any(id(p) in params for group in optimizer.param_groups for p in group["params"])
            self._model_optimizers[id(optimizer)] = known
        return known

    def _before_step(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        self.before_optimizer_step(optimizer)

    def _after_step(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self.monitor is not None and self._is_model_optimizer(optimizer):
            self.optimizer_steps += 1
            if self._scaler is None:  # with a scaler, its update() reports the step with the new scale
                self._on_step(None)

    def before_optimizer_step(self, optimizer: Any) -> None:
        """Gradients are final (and unscaled): T605 reads their norm, T609 the learning rate."""
        if self.monitor is not None and self._is_model_optimizer(optimizer):
            if self._undecided is not None:  # a step of the model's optimizer: that forward was training
                self._settle_undecided(trained=True)
            self.monitor.optimizer = optimizer
            self._guard(self.monitor.on_backward, self.model)

    def after_optimizer_step(self, scaler: Any = None) -> None:
        """For a caller that sees the step itself (the Lightning callback)."""
        if self.monitor is not None:
            self.optimizer_steps += 1
            self._on_step(scaler)

    def _on_step(self, scaler: Any) -> None:
        self._guard(self.monitor.on_step, scaler)

    def _guard(self, hook: Callable, *args: Any) -> None:
        try:
            hook(*args)
        except CheckFailed as exc:
            self.stopped = exc
            raise

    # -- validation ---------------------------------------------------------------------------
    def _flush_validation(self) -> None:
        if not self._val_refs or self.monitor is None:
            return
        refs, ests = self._val_refs, self._val_ests
        self._val_refs, self._val_ests = [], []
        self._val_from_eval, self._val_flushed_at = False, self.training_forwards
        length = min(min(r.shape[1] for r in refs), min(e.shape[1] for e in ests))
        ref = torch.cat([r[:, :length] for r in refs])
        est = torch.cat([e[:, :length] for e in ests])
        self.validation_rounds += 1
        self._guard(self.monitor.on_validation, ref, est)

    def flush_validation(self) -> None:
        """Judge the validation pairs collected so far (end of a validation loop)."""
        self._flush_validation()

    def discard_validation(self) -> None:
        """Forget the pairs collected so far (a sanity-check pass of an untrained model)."""
        self._val_refs, self._val_ests = [], []
        self._val_from_eval = False

    # -- the end ------------------------------------------------------------------------------
    def finish(self, command: str) -> Report:
        """Judge what is pending and return the monitor's report (a report with a note when no model
        was found). Never raises CheckFailed."""
        if self.monitor is None:
            report = Report(command=command)
            report.notes.append("no module was called with an audio-shaped tensor ([B, C<=2, T] or [B, T], "
                                f"T >= {AUDIO_MIN_SAMPLES}) returning audio of the same length: nothing was monitored")
            report.measurements = {"steps": 0, "read_backs": 0, "curves": [], "validation": []}
            return report
        try:
            self._settle_undecided()
            self._flush_validation()
        except CheckFailed:
            pass
        report = self.monitor.close()
        report.command = command
        report.notes.extend(self.notes)
        return report

    def stop_findings(self) -> list[Finding]:
        return list(self.stopped.findings) if self.stopped is not None else []
