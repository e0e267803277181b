"""T602 / T604: name the first module whose output is non-finite.

When a read-back shows a non-finite loss term or output, the batch of that step (kept by reference
for a step or two) is re-run under forward hooks on every submodule, with the model's buffers and
the RNG state restored afterwards, so the re-run changes nothing the training loop will see. The
first module, in execution order, whose output holds NaN/Inf is the one named.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any, Callable

import torch

from codecdoctor.measure.training import NonfiniteTrace, StepWindow


def has_nonfinite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(has_nonfinite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return any(has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_nonfinite(v) for v in value)
    return False


class _FoundNonfinite(Exception):
    pass


def _append(trace: NonfiniteTrace, note: str) -> None:
    trace.detail = (trace.detail + "; " if trace.detail else "") + note


class NonfiniteTracer:
    """Keeps the newest batches (references, not copies) and re-runs one under hooks on demand."""

    def __init__(self, model: torch.nn.Module, forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None,
                 keep: int = 2):
        self.model = model
        self.forward = forward or (lambda m, x: m(x))
        # the batch stays alive one or two steps longer so that a fault can be re-run; detach()
        # drops the autograd graph
        self.retained: deque[tuple[int, torch.Tensor, torch.Tensor | None]] = deque(maxlen=keep)
        self.running = False  # true while re-running: a global hook (watch) must ignore this forward

    def keep(self, step: int, x: torch.Tensor, y: torch.Tensor | None) -> None:
        self.retained.append((step, x.detach(), y.detach() if y is not None else None))

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        return next(((x, y) for s, x, y in self.retained if s == step), None)

    def trace(self, w: StepWindow) -> NonfiniteTrace | None:
        """The trace of the first step in `w` with a non-finite loss term or output, or None."""
        bad_loss = [s for vals in w.losses.values() for s, v in zip(w.steps, vals) if v is not None and not math.isfinite(v)]
        bad_out = [s for s, v in zip(w.steps, w.columns["out_nonfinite"]) if v > 0]
        if not bad_loss and not bad_out:
            return None
        step = min(bad_loss + bad_out)
        i = w.steps.index(step)
        terms = [name for name, vals in w.losses.items() if vals[i] is not None and not math.isfinite(vals[i])]
        named = [t for t in terms if t != "total"] or terms
        item = None
        if w.columns["out_nonfinite"][i] > 0 and w.columns["out_nonfinite_item"][i] >= 0:
            item = int(w.columns["out_nonfinite_item"][i])
        elif w.columns["in_nonfinite"][i] > 0 and w.columns["in_nonfinite_item"][i] >= 0:
            item = int(w.columns["in_nonfinite_item"][i])
        trace = NonfiniteTrace(step=step, terms=named, term_values={t: w.losses[t][i] for t in named}, module=None,
                               item=item)
        batch = self.batch(step)
        if batch is None:
            trace.detail = "the batch was no longer in memory, so it was not re-run"
            return trace
        if w.columns["in_nonfinite"][i] > 0:
            trace.detail = "the input batch itself holds non-finite samples (see T601)"
        self.rerun(batch[0], trace)
        return trace

    def rerun(self, x: torch.Tensor, trace: NonfiniteTrace) -> None:
        base = getattr(self.model, "module", self.model)
        saved_buffers = {name: b.detach().clone() for name, b in base.named_buffers()}
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        found: list[str] = []

        def hook_for(name: str):
            def hook(module, inputs, output):
                if not found and has_nonfinite(output):
                    found.append(name)
                    raise _FoundNonfinite
            return hook

        handles = [m.register_forward_hook(hook_for(name)) for name, m in base.named_modules() if name]
        dist = torch.distributed
        # Under DDP a training-mode forward may run collectives (this codec all-reduces its EMA
        # statistics); one rank re-running alone would wait forever, so re-run in eval mode there.
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        was_training = base.training
        if distributed:
            base.eval()
            _append(trace, "re-run in eval mode (distributed run)")
        self.running = True
        try:
            with torch.no_grad():
                # the unwrapped module under DDP: the wrapper's forward may broadcast buffers
                self.forward(base if distributed else self.model, x)
        except _FoundNonfinite:
            pass
        except Exception as exc:  # the user's model may need more than model(x): say so, keep training
            _append(trace, f"re-running the batch failed ({type(exc).__name__}: {exc}); pass forward= to Monitor")
        finally:
            self.running = False
            for h in handles:
                h.remove()
            base.train(was_training)
            with torch.no_grad():
                for name, b in base.named_buffers():
                    if name in saved_buffers and saved_buffers[name].shape == b.shape:
                        b.copy_(saved_buffers[name])
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        if found:
            name = found[0]
            # a weight-norm (or other) parametrization fires its hook when its owner reads the
            # weight: name the layer, say that its computed weight is the non-finite output
            owner = name.split(".parametrizations.")[0] if ".parametrizations." in name else None
            trace.module = owner or name
            module = base.get_submodule(trace.module)
            trace.module_params_nonfinite = any(has_nonfinite(p) for p in module.parameters(recurse=owner is not None))
            if owner is not None:
                _append(trace, f"its parametrized weight ({name[len(owner) + 1:]}) is already non-finite")
