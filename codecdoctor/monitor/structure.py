"""The run's structure under `watch`, read from the run itself rather than guessed from names.

* **The discriminator** is the outermost module outside the model, with trainable parameters, called
  with the model's training output (or anything sharing its memory: `y.detach()`, a view) or with
  the model's input (the reference). **Optimizer roles**: the optimizer that holds the model's
  parameters is the generator's; one that holds the discriminator's is the discriminator's.
* **Which backward is whose**, seen through tensor hooks, never through values: one hook on the
  model's training output y (it fires when a backward passes through y, also when y is the root,
  as in a loss balancer's `y.backward(gradient)`), one on the model's first trainable parameter (a
  commitment loss reaches the encoder without passing through y) and one on the discriminator's
  first output per call. A backward that reaches the model is the generator's; one that reaches
  only the discriminator is the discriminator's; any other (a probe, an auxiliary model) is neither.
* **The generator's loss**, the watched series: the scalar roots of its backward calls, summed
  over the step (terms backpropagated one by one add up). A non-scalar root (`y.backward(G)` from a
  loss balancer) carries no value of its own. A balancer takes each term's gradient at y first,
  g_k = `torch.autograd.grad(L_k, y)`, and sends a combination G = Σ s_k g_k of them; the scalar
  whose gradient at y is G is its effective loss Σ s_k L_k (what audiocraft's balancer returns and
  trainers log). The monitor sees every g_k and G, so it solves the K × K normal equations for the
  scales (float64, on unit-norm gradients) and records Σ s_k L_k, whatever weights or norms the
  balancer used. The terms are also recorded under
  their dict keys in the balancer (unweighted), so checks that read a term by name (T604's
  non-finite term, T610's adversarial term, T613's collapsing terms) see them.

Everything stays on the device: detached sums that the monitor's buffer reads back on its schedule.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from types import FrameType
from typing import Any, Callable

import torch
from torch import nn

from codecdoctor.measure.forward import tensors_in

GENERATOR, DISCRIMINATOR = "generator", "discriminator"
GENERATOR_SERIES, DISCRIMINATOR_SERIES = "loss", "disc_loss"  # the loss columns watch writes


def _data_ptr(value: Any) -> int | None:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel() > 0:
        return value.data_ptr()
    return None


def _roots(tensors: Any) -> list[torch.Tensor]:
    if isinstance(tensors, torch.Tensor):
        return [tensors]
    return [t for t in tensors if isinstance(t, torch.Tensor)] if isinstance(tensors, (tuple, list)) else []


def _term_name(caller: FrameType | None, term: torch.Tensor) -> str | None:
    """The term's key in a dict among the calling function's locals (a balancer's `losses`)."""
    if caller is None:
        return None
    for value in caller.f_locals.values():
        if isinstance(value, Mapping):
            for name, candidate in value.items():
                if candidate is term:
                    return str(name)
    return None


def effective_loss(terms: list[torch.Tensor], grads: list[torch.Tensor], sent: torch.Tensor) -> torch.Tensor:
    """Σ s_k L_k for the scales s that explain the gradient `sent` as Σ s_k g_k (least squares on the
    device; `solve_ex` does not check for singularity on the host). The gradients are normalised
    first: a balancer scales each term by 1/‖g_k‖, so a term with a tiny gradient carries a large
    scale, which a ridge on the raw Gram matrix would erase."""
    g = torch.stack([grad.reshape(-1) for grad in grads]).double()
    norms = torch.linalg.vector_norm(g, dim=1)
    unit = g / norms.clamp_min(1e-300)[:, None]
    gram = unit @ unit.T + 1e-12 * torch.eye(len(grads), dtype=g.dtype, device=g.device)
    coefficients, _ = torch.linalg.solve_ex(gram, unit @ sent.reshape(-1).double())
    scales = torch.where(norms > 0, coefficients / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return (scales * torch.stack([t.reshape(()) for t in terms]).double()).sum().float()


def _detached_sum(values: list[torch.Tensor]) -> torch.Tensor | None:
    parts = [v.detach().float().reshape(()) for v in values]
    if not parts:
        return None
    return torch.stack(parts).sum() if len(parts) > 1 else parts[0]


class RunStructure:
    """Roles of the modules, optimizers and backward calls of one watched run (see the module doc).

    `write_loss(name, value)` receives the step's generator loss ("loss") and discriminator loss
    ("disc_loss") as device scalars, each time a backward adds to them."""

    def __init__(self, model: nn.Module, write_loss: Callable[[str, torch.Tensor], None]):
        self.model = model
        self.write_loss = write_loss
        self.model_modules = {id(m) for m in model.modules()}
        self.model_params = {id(p) for p in model.parameters()}
        self.discriminator: nn.Module | None = None
        self.disc_params: set[int] = set()
        self.optimizers: dict[int, dict[str, Any]] = {}
        self.backward_counts = {GENERATOR: 0, DISCRIMINATOR: 0, "other": 0}
        self.loss_forms: dict[str, int] = {}  # how the generator's loss arrived: scalar, gradient into y, ...
        self._x_ptr: int | None = None
        self._y_ptr: int | None = None
        self._reached: set[str] = set()
        self._gen_sum: torch.Tensor | None = None
        self._disc_sum: torch.Tensor | None = None
        # balancer terms this step: id -> (name, value, its gradient at y), from autograd.grad(term, y)
        self._terms: dict[int, tuple[str | None, torch.Tensor, torch.Tensor]] = {}
        self._unscaled: dict[int, tuple[Any, torch.Tensor]] = {}  # GradScaler.scale(loss) -> loss
        first = next((p for p in model.parameters() if p.requires_grad), None)
        self._param_hook = first.register_hook(self._reached_model) if first is not None else None

    # -- the step -----------------------------------------------------------------------------
    def begin_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """A training forward of the model: a new step's losses start from nothing."""
        self._x_ptr, self._y_ptr = _data_ptr(x), _data_ptr(y)
        self._gen_sum = self._disc_sum = None
        self._terms.clear()
        self._unscaled.clear()
        if y.requires_grad:
            y.register_hook(self._reached_model)

    def _reached_model(self, grad: torch.Tensor) -> None:
        self._reached.add(GENERATOR)

    def _reached_disc(self, grad: torch.Tensor) -> None:
        self._reached.add(DISCRIMINATOR)

    # -- modules --------------------------------------------------------------------------------
    def outside_model_call(self, module: nn.Module, args: tuple) -> bool:
        """A module call outside the model while no discriminator is known: True when this module
        is taken for it (its outputs then go to `discriminator_output`)."""
        if self._y_ptr is None or id(module) in self.model_modules:
            return False
        ptr = _data_ptr(args[0]) if args else None
        if ptr is None or ptr not in (self._y_ptr, self._x_ptr):
            return False
        if not any(p.requires_grad for p in module.parameters()):
            return False  # a fixed loss module (an STFT, a mel filter bank) is not a discriminator
        self.discriminator = module
        self.disc_params = {id(p) for p in module.parameters()}
        self.optimizers.clear()  # roles are decided again now that the discriminator is known
        return True

    def discriminator_output(self, output: Any) -> None:
        for tensor in tensors_in(output):
            if tensor.requires_grad:
                tensor.register_hook(self._reached_disc)
                return

    # -- optimizers -----------------------------------------------------------------------------
    def optimizer_role(self, optimizer: Any) -> str:
        known = self.optimizers.get(id(optimizer))
        if known is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            role = ("generator" if any(id(p) in self.model_params for p in params) else
                    "discriminator" if any(id(p) in self.disc_params for p in params) else "other")
            known = {"class": type(optimizer).__name__, "role": role, "parameters": sum(p.numel() for p in params)}
            self.optimizers[id(optimizer)] = known
        return known["role"]

    # -- losses -------------------------------------------------------------------------------------
    def scaled(self, scaled: torch.Tensor, loss: torch.Tensor) -> None:
        """`GradScaler.scale(loss)` returned `scaled`: its backward's value is `loss`."""
        self._unscaled[id(scaled)] = (weakref.ref(scaled), loss.detach())

    def gradient_taken(self, outputs: Any, inputs: Any, grads: Any, caller: FrameType | None = None) -> None:
        """`torch.autograd.grad(outputs, inputs)` returned `grads`, called from frame `caller`: a
        scalar output whose gradient at y was taken is a loss term a balancer will send into y."""
        inputs = _roots(inputs)
        at_y = next((i for i, t in enumerate(inputs) if _data_ptr(t) == self._y_ptr), None)
        outputs = _roots(outputs)
        if self._y_ptr is None or at_y is None or len(outputs) != 1 or not isinstance(grads, tuple):
            return
        term, grad = outputs[0], grads[at_y] if at_y < len(grads) else None
        if term.numel() == 1 and term.is_floating_point() and isinstance(grad, torch.Tensor):
            self._terms[id(term)] = (_term_name(caller, term), term.detach(), grad.detach())

    def before_backward(self) -> None:
        self._reached.clear()

    def after_backward(self, tensors: Any, grad_tensors: Any = None) -> None:
        """Classify the backward just run by the hooks it reached, and add its value."""
        reached, self._reached = self._reached, set()
        role = GENERATOR if GENERATOR in reached else DISCRIMINATOR if DISCRIMINATOR in reached else "other"
        self.backward_counts[role] += 1
        if role == "other":
            return
        roots = _roots(tensors)
        scalars = [self._value_of(t) for t in roots if t.numel() == 1]
        form = "scalar backward"
        if role == GENERATOR and len(scalars) < len(roots):
            form = "backward(gradient) into the output"
            balanced = self._balanced(roots, _roots(grad_tensors))
            if balanced is not None:
                scalars.append(balanced)
                form += f": effective loss of {len(self._terms)} terms"
            else:
                form += " (no loss term seen: its value is unknown)"
            self._terms.clear()
        value = _detached_sum(scalars)
        if role == GENERATOR:
            self.loss_forms[form] = self.loss_forms.get(form, 0) + 1
        if value is None:
            return
        if role == GENERATOR:
            self._gen_sum = value if self._gen_sum is None else self._gen_sum + value
            self.write_loss(GENERATOR_SERIES, self._gen_sum)
        else:
            self._disc_sum = value if self._disc_sum is None else self._disc_sum + value
            self.write_loss(DISCRIMINATOR_SERIES, self._disc_sum)

    def _balanced(self, roots: list[torch.Tensor], sent: list[torch.Tensor]) -> torch.Tensor | None:
        """The effective loss of the balancer terms sent into y as one gradient, or None."""
        at_y = next((i for i, t in enumerate(roots) if _data_ptr(t) == self._y_ptr), None)
        terms = [entry for entry in self._terms.values() if entry[2].numel() == roots[at_y].numel()] \
            if at_y is not None and at_y < len(sent) else []
        if not terms:
            return None
        for name, value, _ in terms:  # T604 / T610 / T613 read terms by name
            if name is not None and name not in (GENERATOR_SERIES, DISCRIMINATOR_SERIES):
                self.write_loss(name, value)
        return effective_loss([v for _, v, _ in terms], [g for _, _, g in terms], sent[at_y])

    def unscaled(self, root: torch.Tensor) -> torch.Tensor:
        """A backward root's value before a GradScaler scaled it (the root itself when unscaled)."""
        return self._value_of(root).detach()

    def _value_of(self, root: torch.Tensor) -> torch.Tensor:
        entry = self._unscaled.get(id(root))
        if entry is not None and entry[0]() is root:
            return entry[1]
        return root

    # -- the report -----------------------------------------------------------------------------
    def describe(self, quantizer: str | None, levels: list[str] | None = None) -> dict[str, Any]:
        """The `structure` measurements: which module plays which part, and which loss is watched."""
        # a module fed the model's output or input is the discriminator once another optimizer steps it
        stepped = any(o["role"] == DISCRIMINATOR for o in self.optimizers.values())
        disc = self.discriminator
        forms = sorted(self.loss_forms.items(), key=lambda p: -p[1])
        return {
            "model": type(getattr(self.model, "module", self.model)).__name__,
            "discriminator": type(disc).__name__ if disc is not None and stepped else None,
            "discriminator_candidate": type(disc).__name__ if disc is not None and not stepped else None,
            "quantizer": quantizer,
            "quantizer_levels": list(levels or []),
            "optimizers": list(self.optimizers.values()),
            "watched_loss": {"series": GENERATOR_SERIES, "what": "the generator's total loss (the backward that reaches "
                                                      "the model's parameters)",
                             "form": " + ".join(name for name, _ in forms) or None, "forms": dict(forms)},
            "discriminator_loss": DISCRIMINATOR_SERIES if self.backward_counts[DISCRIMINATOR] else None,
            "backward_calls": dict(self.backward_counts),
        }

    def remove(self) -> None:
        if self._param_hook is not None:
            self._param_hook.remove()
            self._param_hook = None


def structure_line(structure: dict[str, Any], output_bound: str) -> str:
    """One line for the terminal: which module was taken for what, and which loss is watched."""
    def optimizer(role: str) -> str:
        names = [o["class"] for o in structure.get("optimizers", []) if o["role"] == role]
        return f", stepped by {'/'.join(names)}" if names else ""

    disc = structure.get("discriminator")
    candidate = structure.get("discriminator_candidate")
    count = len(structure.get("quantizer_levels") or [])
    levels = f" ({count} level{'s' if count != 1 else ''} emitting codes)" if count else ""
    watched = structure.get("watched_loss") or {}
    form = watched.get("form")
    return (f"structure: model {structure.get('model')} (output bound {output_bound}{optimizer(GENERATOR)}); "
            f"discriminator {disc + optimizer(DISCRIMINATOR) if disc else 'none seen'}"
            + (f" ({candidate} is fed the model's output or input, but no optimizer steps it)" if candidate else "")
            + "; "
            f"quantizer {structure.get('quantizer') or 'none seen'}{levels}; "
            f"watched loss '{watched.get('series')}' = the generator's total"
            + (f" ({form})" if form else " (no backward reached the model)")
            + (f", discriminator loss '{structure['discriminator_loss']}'" if structure.get("discriminator_loss") else ""))
