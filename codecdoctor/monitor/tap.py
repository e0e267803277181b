"""Hooks that attach the live monitor to a training loop it does not own (`watch`, the Lightning
callback), through PyTorch's global hooks instead of calls in the loop.

* Forward hooks on every module (`torch.nn.modules.module.register_module_forward_pre_hook` and
  `register_module_forward_hook`) find the model: the outermost module called with an audio-shaped
  tensor (`[B, C<=2, T]` or `[B, T]`, T >= 1024 samples) whose output holds a floating tensor of the
  same length within one hop (a codec's output may be a few frames short or long). Once found, the
  hooks return at once for every other module.
* A training forward of the model (grad enabled, `model.training`; or grad enabled in eval mode
  and followed by a backward before the next forward) is one monitored step:
  `Monitor.on_batch(x, y)` on the device.
* The run's structure (`structure.py`): the discriminator (a module outside the model called with
  its output or its input), the optimizers' roles, and the generator's loss: `torch.autograd.backward`
  (which `Tensor.backward` calls) and `torch.autograd.grad` are wrapped, and tensor hooks tell a
  backward that reaches the model from one that reaches only the discriminator. Through
  `GradScaler.scale` the unscaled value is taken.
* Codes (`codes.py`): on the first step and the first step of each read-back window, the integer
  codes the model's submodules emit are measured per level (T607).
* An eval-mode or no-grad forward of the model is a validation pair (input = reference, output =
  estimate), kept on the device (at most 64 pairs); an eval-mode round is judged together
  (T603/T608 with the R3xx diagnosis) when training resumes or the run ends; no-grad forwards in
  training mode are judged at most once per read-back window.
* Optimizer step hooks (`torch.optim.optimizer.register_optimizer_step_pre_hook` / `post_hook`):
  for the generator's optimizer the gradients before the step (T605) and the learning rate (T609);
  for the discriminator's its gradient norm and parameter change (T613).
* A GradScaler wrapper (`torch.amp.GradScaler.scale` / `step` / `update`): the scale and growth
  tracker after each update (T606), the model optimizer's steps taken outside `scaler.step` (T614;
  `amp.py`).
* Codebooks: the Monitor finds EMA / usage buffers in the model (T607).
* The output bound: a final `nn.Tanh` / `nn.Hardtanh` / `nn.Softsign` or a module whose class name
  says clamp / clip, seen as the last leaf module of the model's first forward (or given).

Nothing here reads a tensor's value on the host during training: shapes, dtypes and flags only.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable

import torch
from torch import nn

from codecdoctor.core.errors import CheckFailed
from codecdoctor.core.findings import Finding, Report
from codecdoctor.measure.bound import module_bound
from codecdoctor.measure.forward import first_audio_output
from codecdoctor.monitor.amp import ScalerStepWatch
from codecdoctor.monitor.codes import CodeCapture
from codecdoctor.monitor.structure import DISCRIMINATOR, GENERATOR, RunStructure

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


class ScriptStopped(BaseException):
    """A live check stopped a script that `watch` runs (`ModelTap(stop_script=True)`). A BaseException,
    like KeyboardInterrupt, so the script's `except Exception` and frameworks that print a caught
    exception's traceback themselves (hydra) let it through to watch, which prints one line naming the
    finding. `.failed` is the CheckFailed, `.findings` its findings."""

    def __init__(self, failed: CheckFailed):
        super().__init__(str(failed))
        self.failed = failed
        self.findings = failed.findings


class ModelTap:
    """Finds the model among all module calls and feeds a `Monitor` it builds for it.

    `make_monitor(model, output_bound)` builds the monitor once the model is known. `scope`, when
    given, limits the search to that module's own submodules (the Lightning callback's LightningModule).
    A stop is raised as CheckFailed, or as ScriptStopped with `stop_script=True` (watch).
    """

    def __init__(self, make_monitor: Callable[[nn.Module, float | None], Any], *, output_bound: float | None = None,
                 scope: nn.Module | None = None, optimizer_hooks: bool = True, backward_hook: bool = True,
                 stop_script: bool = False):
        self.make_monitor = make_monitor
        self.stop_script = stop_script
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
        self._scaler: Any = None
        self.amp = ScalerStepWatch()  # T614: steps of the model's optimizer outside GradScaler.step
        self.structure: RunStructure | None = None
        self.codes: CodeCapture | None = None
        self._in_monitor = False
        self._in_backward = False
        self._half_output = False  # the model's latest training output was float16 (autocast)
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
            # Tensor.backward calls torch.autograd.backward: one wrapper sees both
            self._patch(torch.autograd, "backward", self._wrapped_backward(torch.autograd.backward))
            self._patch(torch.autograd, "grad", self._wrapped_grad(torch.autograd.grad))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        for part in (self.structure, self.codes):
            if part is not None:
                part.remove()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patched.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def _wrapped_backward(self, original):
        tap = self

        def backward(tensors, *args, **kwargs):
            structure = tap.structure
            # a backward inside a backward (reentrant activation checkpointing re-runs a segment's
            # backward from the engine) belongs to the outer one
            if structure is None or tap._in_monitor or tap._in_backward:
                return original(tensors, *args, **kwargs)
            if tap._undecided is not None:  # a backward after a grad-enabled eval-mode forward: training
                tap._settle_undecided(trained=True)
            tap._nonfinite_loss_before_backward(tensors)
            structure.before_backward()
            tap._in_backward = True
            try:
                result = original(tensors, *args, **kwargs)
            finally:
                tap._in_backward = False
            grad_tensors = args[0] if args else kwargs.get("grad_tensors")
            tap._guard(structure.after_backward, tensors, grad_tensors)
            return result

        backward.__doc__ = original.__doc__
        return backward

    def _nonfinite_loss_before_backward(self, tensors: Any) -> None:
        """A non-finite scalar loss on the CPU goes to the monitor before its backward runs, while
        its autograd graph still holds the saved tensors S502 reads (a half-precision log of exact
        zeros). Only on the CPU, where reading a value is no device sync; on a GPU the alarm reads
        the step back after the backward, and S502 falls back to T604's trace."""
        if self.monitor is None or not self._half_output or self.structure is None:
            return   # only a float16 run's loss can hold a half-precision log of zeros
        roots = tensors if isinstance(tensors, (list, tuple)) else [tensors]
        for root in roots:
            if not (isinstance(root, torch.Tensor) and root.numel() == 1 and root.is_floating_point()
                    and root.device.type == "cpu" and root.grad_fn is not None):
                continue
            # a GradScaler's scaled loss may overflow while the loss itself is finite (the scaler
            # then skips the step: T606's business): judge the unscaled value
            value = self.structure.unscaled(root)
            if not bool(torch.isfinite(value).all()):
                self._guard(self.monitor.on_loss, {"loss": root})
                return

    def _wrapped_grad(self, original):
        tap = self

        def grad(outputs, inputs, *args, **kwargs):
            result = original(outputs, inputs, *args, **kwargs)
            if tap.structure is not None and not tap._in_monitor:
                tap.structure.gradient_taken(outputs, inputs, result, sys._getframe(1))
            return result

        grad.__doc__ = original.__doc__
        return grad

    def _wrap_scaler(self) -> None:
        try:
            from torch.amp.grad_scaler import GradScaler
        except ImportError:  # pragma: no cover - torch without amp
            return
        tap = self
        original_scale, original_update = GradScaler.scale, GradScaler.update

        def scale(scaler, outputs):
            result = original_scale(scaler, outputs)
            tap.amp.on_scale(scaler)
            if isinstance(outputs, torch.Tensor) and outputs.numel() == 1 and scaler.is_enabled():
                tap._scaler = scaler
                if tap.structure is not None and isinstance(result, torch.Tensor):
                    tap.structure.scaled(result, outputs)
            return result

        def update(scaler, new_scale=None):
            result = original_update(scaler, new_scale)
            tap.amp.on_update()
            if scaler is tap._scaler and tap.monitor is not None and scaler.is_enabled():
                tap._on_step(scaler)
            return result

        self._patch(GradScaler, "scale", scale)
        self._patch(GradScaler, "update", update)
        self._patch(GradScaler, "step", self.amp.wrap_step(GradScaler.step))

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
                    self._raise_stop(self.stopped)  # the run was stopped: a script that caught it must not go on
                if not self._busy():
                    x = args[0] if args else None
                    frame = _Frame(module, x if audio_shaped(x) else None, module.training, torch.is_grad_enabled())
                    self._stack.append(frame)
                    if frame.x is not None and frame.grad and frame.training and self._codes_due():
                        self.codes.start(frame.x.shape[0])
            elif self._stack:
                if self.codes.active:
                    self.codes.enter(module)
            elif self.structure.discriminator is None and torch.is_grad_enabled():
                self.structure.outside_model_call(module, args)
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
                if self.codes.active:
                    self._emitted_codes()
            elif self._stack:
                self.codes.module_output(module, output)
            elif module is self.structure.discriminator and torch.is_grad_enabled():
                self.structure.discriminator_output(output)
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
        self.structure = RunStructure(model, self._write_loss)
        self.codes = CodeCapture(model)

    def _write_loss(self, name: str, value: torch.Tensor) -> None:
        self._guard(self.monitor.on_loss, {name: value})

    def _codes_due(self) -> bool:
        """Codes are measured on the first step after the model is found (the model's first
        forward found it, too late to capture), then on the first step of each read-back window."""
        return self.training_forwards == 1 or self.monitor.step_scheduled()

    def _emitted_codes(self) -> None:
        found = self.codes.finish()
        if found is not None:
            self._guard(self.monitor.on_codes, *found)

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
        self._half_output = y.dtype == torch.float16
        # an eval-mode validation loop ends when training resumes; no-grad forwards in training
        # mode (a metric, an audio sample for a logger) are judged at most once per read-back
        # window, so they never cost a host copy per step
        if self._val_refs and (self._val_from_eval or
                               self.training_forwards - self._val_flushed_at >= self.monitor.read_every):
            self._flush_validation()
        self.training_forwards += 1
        self._loss_seen = False
        self.structure.begin_step(frame.x, y)
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
        return self.structure is not None and self.structure.optimizer_role(optimizer) == GENERATOR

    def _is_discriminator_optimizer(self, optimizer: Any) -> bool:
        return self.structure is not None and self.structure.optimizer_role(optimizer) == DISCRIMINATOR

    def _before_step(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        self.before_optimizer_step(optimizer)

    def _after_step(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self.monitor is not None and self._is_model_optimizer(optimizer):
            self.optimizer_steps += 1
            if self._scaler is None:  # with a scaler, its update() reports the step with the new scale
                self._on_step(None)
        elif self.monitor is not None and self._is_discriminator_optimizer(optimizer):
            self._guard(self.monitor.on_discriminator_step)

    def before_optimizer_step(self, optimizer: Any) -> None:
        """Gradients are final (and unscaled): T605 reads their norm, T609 the learning rate."""
        if self.monitor is not None and self._is_model_optimizer(optimizer):
            if self._undecided is not None:  # a step of the model's optimizer: that forward was training
                self._settle_undecided(trained=True)
            self.monitor.optimizer = optimizer
            self._guard(self.monitor.on_backward, self.model)
            bypass = self.amp.before_model_step(optimizer, self.training_forwards - 1)
            if bypass is not None:
                self._guard(self.monitor.on_scaler_bypass, bypass)
        elif self.monitor is not None and self._is_discriminator_optimizer(optimizer):
            self._guard(self.monitor.on_discriminator_backward, self.structure.discriminator)

    def after_optimizer_step(self, scaler: Any = None) -> None:
        """For a caller that sees the step itself (the Lightning callback)."""
        if self.monitor is not None:
            self.optimizer_steps += 1
            self._on_step(scaler)

    def _on_step(self, scaler: Any) -> None:
        self._guard(self.monitor.on_step, scaler)

    def _guard(self, hook: Callable, *args: Any) -> None:
        self._in_monitor = True  # the monitor's own autograd calls (T612) are not the script's
        try:
            hook(*args)
        except CheckFailed as exc:
            self.stopped = exc
            self._raise_stop(exc)
        finally:
            self._in_monitor = False

    def _raise_stop(self, failed: CheckFailed) -> None:
        if self.stop_script:
            raise ScriptStopped(failed) from None
        raise failed

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
        report.measurements["structure"] = self.structure.describe(self.codes.quantizer or self.monitor.quantizer_name(),
                                                                   self.codes.levels)
        return report

    def stop_findings(self) -> list[Finding]:
        return list(self.stopped.findings) if self.stopped is not None else []
