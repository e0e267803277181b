"""Mixed precision in a live run: the GradScaler's own state per step (T606) and optimizer steps
that bypass it (T614).

T606 reads two tensors the scaler keeps on the device, copied into the step's row without a host
sync: `_scale` and `_growth_tracker`. `update()` sets the tracker to 0 on a step whose gradients
held inf/NaN (the step was skipped) and counts it up on a good step (back to 0 only when the scale
grows, which the scale column shows). So a skipped step is known from the scaler itself, also
when the scale no longer falls: stuck at a floor, or at 0 after float32 underflow.

A step whose row the non-finite alarm already read back (at its forward, before its optimizer
step) keeps its scaler reading in `LateScalerReadings`: the run is non-finite by then, a host read
per step costs nothing that matters, and T606 still sees every skip - also when the weights are
already non-finite and every later step is read back early.

T614 needs the steps themselves: `GradScaler.step` is wrapped (entered / left) and the model's
optimizer step pre-hook asks whether it runs inside it while a scaler has scaled the loss since its
last `update()`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from codecdoctor.measure.training import ScalerBypass, StepWindow


def scaler_state(scaler: Any) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(scale, growth tracker) device tensors of an enabled GradScaler, else None."""
    if scaler is None or (hasattr(scaler, "is_enabled") and not scaler.is_enabled()):
        return None
    scale = getattr(scaler, "_scale", None)
    if not isinstance(scale, torch.Tensor):
        return None
    tracker = getattr(scaler, "_growth_tracker", None)
    return scale, tracker if isinstance(tracker, torch.Tensor) else None


class ScalerStepWatch:
    """Counts the model optimizer's steps taken inside `GradScaler.step` and outside it while a
    scaler is active (it scaled a loss since its last update)."""

    def __init__(self) -> None:
        self.depth = 0
        self.active = False
        self.scaler_steps = 0
        self.bypassed = 0
        self.first_step: int | None = None
        self.optimizer = ""

    def wrap_step(self, original: Callable) -> Callable:
        watch = self

        def step(scaler, optimizer, *args, **kwargs):
            watch.depth += 1
            try:
                return original(scaler, optimizer, *args, **kwargs)
            finally:
                watch.depth -= 1

        step.__doc__ = original.__doc__
        return step

    def on_scale(self, scaler: Any) -> None:
        if scaler.is_enabled():
            self.active = True

    def on_update(self) -> None:
        self.active = False

    def before_model_step(self, optimizer: Any, step: int) -> ScalerBypass | None:
        """Called from the model optimizer's step pre-hook; returns the measurement on the first
        bypass (later ones are counted into it)."""
        if self.depth:
            self.scaler_steps += 1
            return None
        if not self.active:
            return None
        self.bypassed += 1
        if self.first_step is None:
            self.first_step, self.optimizer = step, type(optimizer).__name__
            return self.measurement()
        return None

    def measurement(self) -> ScalerBypass:
        return ScalerBypass(optimizer=self.optimizer, bypassed_steps=self.bypassed, scaler_steps=self.scaler_steps,
                            first_step=self.first_step)


class LateScalerReadings:
    """Scaler readings of steps whose row was already read back; judged as a window of their own."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.scales: list[float] = []
        self.growth: list[float] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        scale, tracker = state
        self.steps.append(int(step))
        self.scales.append(float(scale))
        self.growth.append(float(tracker) if tracker is not None else math.nan)

    def take_window(self) -> StepWindow:
        n = len(self.steps)
        window = StepWindow(steps=self.steps, columns={"scale": self.scales, "scaler_growth": self.growth,
                                                       "grad_norm": [math.nan] * n, "grad_nonfinite": [0.0] * n},
                            losses={}, in_samples=[0] * n, out_samples=[0] * n)
        self.steps, self.scales, self.growth = [], [], []
        return window
