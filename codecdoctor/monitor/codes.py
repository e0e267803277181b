"""Code usage from the integer codes the quantizer really emits, on training batches (T607's first
opinion; EMA buffers are the second).

On a capture step (the first step after the model is found, then the first step of each read-back
window) the global forward hook hands every output of the model's submodules to `CodeCapture`;
integer tensors with at least two entries per batch item are codes. The innermost emitters are the
levels (an RVQ that also returns its levels' codes stacked is their ancestor); a single emitter of
`[B, n_q, frames]` codes is split along its level axis. `encode()` calls on the model's submodules
during the forward count the same way (the global hook sees `forward` only, so `encode` of a module
whose class name says quant / vq / codebook is wrapped on that instance). A quantizer that returns
no codes at all still picks them with `argmin` over distances: on a capture step `torch.argmin` and
`Tensor.argmin` are wrapped for the length of the forward, and their integer results are taken as
the codes of the innermost module running, when no module returned any (once a capture found codes
in outputs or `encode()` calls, argmin is left alone).

Per level, on the device: a histogram of the codes over the codebook (its size read from the module,
or 65536 bins when unknown), the number of distinct codes and the perplexity exp(entropy). They wait
for the monitor's next read-back, so capturing adds no host sync.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codecdoctor.measure.adapters import _codebook_size_of
from codecdoctor.measure.forward import tensors_in

UNKNOWN_SIZE_BINS = 65536  # codebooks of published codecs hold 1024-16384 codes
QUANTIZER_WORDS = ("quant", "vq", "codebook")


def codebook_size(module: nn.Module) -> int | None:
    """The level's codebook size: what the module says (`_codebook_size_of`), else the length of
    its EMA count buffer or the rows of a tensor named codebook / embed."""
    size = _codebook_size_of(module)
    if size:
        return size
    for name, tensor in list(module.named_buffers()) + list(module.named_parameters()):
        leaf = name.split(".")[-1].lower()
        if leaf == "cluster_size" and tensor.dim() >= 1:
            return int(tensor.shape[-1])
        if ("codebook" in leaf or leaf in ("embed", "embedding")) and tensor.dim() >= 2:
            return int(tensor.shape[-2])
    return None


def _codes_in(output: Any, batch: int) -> torch.Tensor | None:
    """The first integer tensor with at least two entries per batch item (one entry per item is a
    length or a label, not a frame's code)."""
    for t in tensors_in(output):
        if not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool and t.numel() >= 2 * batch > 0:
            return t
    return None


def _per_level(codes: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """`[B, frames]` (or flat `[B*frames]`) is one level; `[B, n_q, frames]` / `[n_q, B, frames]`
    are n_q levels (the level axis is the short one that is not the batch)."""
    if codes.dim() == 1 and codes.numel() % batch == 0:
        return [codes.reshape(batch, -1)]
    if codes.dim() == 2:
        return [codes]
    if codes.dim() == 3:
        if codes.shape[0] == batch and codes.shape[1] <= codes.shape[2]:
            return list(codes.unbind(1))
        if codes.shape[1] == batch:
            return list(codes.unbind(0))
        if codes.shape[0] == batch:
            return list(codes.unbind(2))  # [B, frames, n_q] (vector-quantize-pytorch)
    return []


def level_usage(codes: torch.Tensor, bins: int) -> torch.Tensor:
    """`[distinct codes, perplexity]` of one level's codes, float32 on their device (no host read:
    the histogram has a fixed size, unlike `unique` or `bincount`)."""
    flat = codes.detach().reshape(-1).long().clamp(0, bins - 1)
    counts = torch.zeros(bins, dtype=torch.float32, device=flat.device)
    counts.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(p * p.clamp_min(1e-30).log()).sum()
    return torch.stack([(counts > 0).sum().float(), entropy.exp()])


class CodeCapture:
    """Collects the codes of one forward of the model and measures each level on the device."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): name for name, m in model.named_modules() if name}
        self.active = False
        self.batch = 0
        self.quantizer: str | None = None
        self.levels: list[str] = []  # the level modules of the newest capture, in level order
        self._seen: list[tuple[str, nn.Module, torch.Tensor]] = []
        self._argmins: list[tuple[str, nn.Module, torch.Tensor]] = []
        self._running: list[nn.Module] = []
        self._argmin_originals: list[tuple[Any, Any]] = []
        # argmin is wrapped only while no capture has found codes another way, and never around a
        # compiled model (a changed torch.argmin would fail its guards and recompile it)
        self._argmin_needed = "Optimized" not in type(model).__name__
        self._wrapped = self._wrap_encoders(model)

    def _wrap_encoders(self, model: nn.Module) -> list[nn.Module]:
        wrapped = []
        for name, module in model.named_modules():
            encode = getattr(type(module), "encode", None)
            if not name or encode is None or not any(w in type(module).__name__.lower() for w in QUANTIZER_WORDS):
                continue

            def capturing_encode(*args, _module=module, _encode=encode, **kwargs):
                result = _encode(_module, *args, **kwargs)
                self._record(_module, result)
                return result
            try:
                module.encode = capturing_encode  # on this instance only: its class is left as it is
            except (AttributeError, RuntimeError, TypeError):  # a scripted module refuses new attributes
                continue
            wrapped.append(module)
        return wrapped

    def start(self, batch: int) -> None:
        self.active, self.batch = True, int(batch)
        self._seen.clear()
        self._argmins.clear()
        self._running.clear()
        if self._argmin_needed:
            self._wrap_argmin()

    def enter(self, module: nn.Module) -> None:
        self._running.append(module)

    def module_output(self, module: nn.Module, output: Any) -> None:
        """A submodule's forward returned (the global forward hook)."""
        if not self.active:
            return
        if self._running and self._running[-1] is module:
            self._running.pop()
        self._record(module, output)

    def _record(self, module: nn.Module, output: Any) -> None:
        if not self.active:
            return
        codes = _codes_in(output, self.batch)
        name = self.names.get(id(module))
        if codes is not None and name is not None:
            self._seen.append((name, module, codes))

    def _argmin_taken(self, result: Any) -> None:
        if self.active and self._running and isinstance(result, torch.Tensor) and result.numel() >= self.batch:
            module = self._running[-1]
            name = self.names.get(id(module))
            if name is not None:
                self._argmins.append((name, module, result))

    def _wrap_argmin(self) -> None:
        capture = self

        def wrap(original):
            def argmin(*args, **kwargs):
                result = original(*args, **kwargs)
                capture._argmin_taken(result)
                return result
            return argmin

        for owner in (torch, torch.Tensor):
            # Tensor.argmin lives on its C base class: the wrapper shadows it and is deleted after
            self._argmin_originals.append((owner, owner.__dict__.get("argmin")))
            owner.argmin = wrap(owner.argmin)

    def _unwrap_argmin(self) -> None:
        for owner, original in reversed(self._argmin_originals):
            if original is None:
                del owner.argmin
            else:
                owner.argmin = original
        self._argmin_originals.clear()

    def finish(self) -> tuple[list[str], list[int], list[int], torch.Tensor] | None:
        """(level names, codebook sizes, frames per level, `[levels, 2]` device stats) of the
        forward just captured, or None when it emitted no codes."""
        self.active = False
        self._unwrap_argmin()
        if self._seen:
            self._argmin_needed = False  # the codes come from outputs or encode() calls
        seen, self._seen = self._seen or self._argmins, []
        self._argmins, self._running = [], []
        firsts: dict[str, tuple[str, nn.Module, torch.Tensor]] = {}
        for entry in seen:  # a forward that calls its own encode() emits the same codes twice
            firsts.setdefault(entry[0], entry)
        seen = list(firsts.values())
        emitting = {name for name, _, _ in seen}
        inner = [(n, m, t) for n, m, t in seen if not any(o != n and o.startswith(n + ".") for o in emitting)]
        names, sizes, frames, stats, owners = [], [], [], [], []
        for name, module, codes in inner:
            levels = _per_level(codes, self.batch)
            size = codebook_size(module)
            for index, level in enumerate(levels):
                names.append(name if len(levels) == 1 else f"{name}[{index}]")
                sizes.append(size or 0)
                frames.append(level.numel())
                stats.append(level_usage(level, size or UNKNOWN_SIZE_BINS))
                owners.append(name)
        if not stats:
            return None
        self.quantizer, self.levels = common_parent(owners), names
        return names, sizes, frames, torch.stack(stats)

    def remove(self) -> None:
        self.active = False
        self._unwrap_argmin()
        for module in self._wrapped:
            module.__dict__.pop("encode", None)
        self._wrapped.clear()


def common_parent(names: list[str]) -> str:
    """The module that holds all levels: 'quantizer' for quantizer.layers.0 ... quantizer.layers.7."""
    if len(set(names)) == 1:
        return names[0]
    parts = [n.split(".") for n in names]
    common = []
    for pieces in zip(*parts):
        if len(set(pieces)) > 1:
            break
        common.append(pieces[0])
    while common and common[-1].isdigit():
        common.pop()  # the ModuleList of the levels, not one of them
    if len(common) > 1 and common[-1] in ("layers", "levels", "quantizers"):
        common.pop()
    return ".".join(common) or names[0]
