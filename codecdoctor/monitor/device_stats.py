"""On-device accumulators for the live monitor: nothing here reads a value back to the host.

Every per-step statistic is computed with tensor ops on the batch's own device and written into one
row of a preallocated `[read_every, columns]` buffer. The monitor copies that buffer to the host in
one transfer per read-back. A cheap "alarm" scalar (count of non-finite values seen since the last
read-back) lets the monitor read back early without blocking the device:

* CPU: the alarm tensor already lives in host memory; a NumPy view created once at construction
  reads it with no copy and no dispatcher call.
* CUDA: the alarm is copied non-blocking into pinned host memory after each step and an event is
  recorded; the host reads the pinned value only once `event.query()` says the copy landed, so it
  never waits for the device (`torch.cuda.set_sync_debug_mode("error")` stays quiet).
* Other devices: no peek; the schedule alone bounds the delay (at most `read_every` steps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

# Per-signal columns (input "in_", output "out_"). Kept as names so the host side never depends on
# positions written in two places.
SIGNAL_FIELDS = ("peak", "min", "max", "energy", "nonfinite", "nonfinite_item", "peak_item", "over",
                 "clip_error_energy")
# disc_*: the discriminator's gradient norm at its optimizer step, and the relative change of its
# parameters across one step per read-back window (T613); NaN where it did not step
STEP_FIELDS = ("grad_norm", "grad_nonfinite", "scale", "scaler_growth", "disc_grad_norm", "disc_param_change")


class ColumnLayout:
    """Names -> column indices of the per-step buffer; loss terms get columns as they appear."""

    def __init__(self, max_loss_terms: int = 24):
        names = [f"in_{f}" for f in SIGNAL_FIELDS] + [f"out_{f}" for f in SIGNAL_FIELDS] + list(STEP_FIELDS)
        self.fixed = {name: i for i, name in enumerate(names)}
        self.loss_start = len(names)
        self.max_loss_terms = max_loss_terms
        self.loss_terms: list[str] = []

    @property
    def width(self) -> int:
        return self.loss_start + self.max_loss_terms

    def loss_columns(self, names: Iterable[str]) -> list[int] | None:
        """Column of each loss term, registering new ones; None when there is no room left."""
        cols = []
        for name in names:
            if name not in self.loss_terms:
                if len(self.loss_terms) >= self.max_loss_terms:
                    return None
                self.loss_terms.append(name)
            cols.append(self.loss_start + self.loss_terms.index(name))
        return cols


def _const(value: float, device: torch.device) -> torch.Tensor:
    """A 0-d float32 constant made by a fill kernel on `device` (torch.tensor(...) would copy from
    host memory, which on CUDA can block)."""
    return torch.full((), value, dtype=torch.float32, device=device)


def signal_stats(t: torch.Tensor, bound: float) -> torch.Tensor:
    """The SIGNAL_FIELDS of a batch `[B, ...]` as one float32 vector on t's device.

    `bound` is the level beyond which a sample counts as "over" (the decoder's output bound, or full
    scale 1.0); `clip_error_energy` = Σ(x − clip(x, −bound, bound))², the error a bounded decoder
    cannot avoid."""
    flat = t.detach().reshape(t.shape[0], -1).float()
    mag = flat.abs()
    finite = torch.isfinite(flat)
    nonfinite_per_item = (~finite).sum(1)
    # NaN would poison max/argmax and the energies; measure the finite part, count the rest.
    clean = torch.where(finite, flat, torch.zeros((), device=flat.device))
    clean_mag = torch.where(finite, mag, torch.zeros((), device=flat.device))
    per_item_peak = clean_mag.amax(1)
    lo, hi = torch.aminmax(clean)
    excess = (clean_mag - bound).clamp_min(0)
    any_bad = nonfinite_per_item > 0
    first_bad_item = torch.where(any_bad.any(), any_bad.float().argmax(), _const(-1.0, flat.device))
    return torch.stack([
        per_item_peak.max(),
        lo,
        hi,
        clean.square().sum(),
        nonfinite_per_item.sum().float(),
        first_bad_item.float(),
        per_item_peak.argmax().float(),
        (clean_mag > bound).sum().float(),
        excess.square().sum(),
    ])


def loss_vector(losses: dict[str, Any], device: torch.device) -> tuple[list[str], torch.Tensor]:
    """Loss terms as one float32 vector (multi-element terms are summed, as a loop would add them)."""
    names, values = [], []
    for name, value in losses.items():
        if isinstance(value, torch.Tensor):
            v = value.detach()
            v = v.float().sum() if v.numel() != 1 else v.float().reshape(())
            values.append(v.to(device, non_blocking=True))
        elif isinstance(value, (int, float)):
            values.append(_const(float(value), device))
        else:
            continue
        names.append(str(name))
    if not values:
        return [], torch.zeros(0, device=device)
    return names, torch.stack(values)


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """(total L2 norm, non-finite flag, number of gradient elements) of the gradients, on device."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None and not p.grad.is_sparse]
    if not grads:
        return None
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    first_device = grads[0].device
    parts = []
    for group in by_device.values():
        norms = torch._foreach_norm(group)
        parts.append(torch.linalg.vector_norm(torch.stack([n.float() for n in norms])).to(first_device))
    total = torch.linalg.vector_norm(torch.stack(parts)) if len(parts) > 1 else parts[0]
    return total, (~torch.isfinite(total)).float(), sum(g.numel() for g in grads)


# --- codebooks -------------------------------------------------------------------------------

@dataclass
class CodebookBuffers:
    """Where one quantizer level keeps its EMA statistics (names into model.named_buffers())."""

    name: str
    cluster_size: str
    initted: str | None


# usage counters that hand-written quantizers keep next to an nn.Embedding codebook
USAGE_BUFFER_NAMES = ("usage", "code_usage", "codebook_usage", "counts", "code_counts", "usage_count",
                      "usage_counts", "ema_count", "ema_counts")


def find_codebooks(model: torch.nn.Module) -> list[CodebookBuffers]:
    """Per quantizer level, the buffer that counts how often each code is used, in registration
    order (= residual level order): EMA `cluster_size` buffers (this codec, vector-quantize-pytorch,
    encodec), and in hand-written quantizers a usage / count buffer of K entries in the module that
    holds an `nn.Embedding(K, D)` codebook."""
    names = [name for name, _ in model.named_buffers()]
    found = []
    for name in names:
        if name.split(".")[-1] != "cluster_size":
            continue
        prefix = name[: -len("cluster_size")]
        initted = next((prefix + key for key in ("initted", "inited") if prefix + key in names), None)
        found.append(CodebookBuffers(name=prefix.rstrip(".") or "quantizer", cluster_size=name, initted=initted))
    if found:
        return found
    for module_name, module in model.named_modules():
        sizes = {child.num_embeddings for child in module.children() if isinstance(child, torch.nn.Embedding)}
        if not sizes:
            continue
        for leaf, buffer in module.named_buffers(recurse=False):
            if leaf.lower() in USAGE_BUFFER_NAMES and buffer.dim() >= 1 and buffer.shape[-1] in sizes:
                full = f"{module_name}.{leaf}" if module_name else leaf
                found.append(CodebookBuffers(name=module_name or "quantizer", cluster_size=full, initted=None))
                break
    return found


def codebook_stats(buffers: dict[str, torch.Tensor], levels: list[CodebookBuffers], dead_share: float) -> torch.Tensor:
    """Per level `[codebook_size, perplexity, dead_codes, initted]` as a `[L, 4]` float32 tensor.

    Perplexity = exp(entropy) of the EMA usage distribution (equals the codebook size when usage is
    uniform). A code is dead when its EMA count is below `dead_share` × the uniform share."""
    rows = []
    for level in levels:
        counts = buffers[level.cluster_size].detach().float()
        counts = counts.reshape(-1, counts.shape[-1]).clamp_min(0)  # [heads, K]
        size = counts.shape[-1]
        total = counts.sum(-1, keepdim=True)
        p = counts / total.clamp_min(1e-12)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
        dead = (counts < dead_share * total / size).sum(-1).float()
        initted = buffers[level.initted].detach().float().reshape(-1)[:1].sum() if level.initted else _const(1.0, counts.device)
        rows.append(torch.stack([_const(float(size), counts.device), entropy.exp().mean(), dead.mean(), initted]))
    if not rows:
        return torch.zeros(0, 4)
    return torch.stack(rows)


def codebook_checksum(model: torch.nn.Module) -> tuple[list[str], torch.Tensor] | None:
    """Float64 checksums (sum, sum of |x|, position-weighted sum) of every codebook tensor: buffers
    or parameters whose name says `embed`, `embed_avg`, `cluster_size` or `codebook`. The position
    weight makes a swap of two codes visible, which a plain sum would miss."""
    names, sums = [], []
    for name, t in list(model.named_buffers()) + list(model.named_parameters()):
        leaf = name.split(".")[-1]
        if leaf not in ("embed", "embed_avg", "cluster_size") and "codebook" not in name.lower():
            continue
        if not t.is_floating_point():
            continue
        flat = t.detach().reshape(-1)
        dtype = torch.float64 if flat.device.type != "mps" else torch.float32
        flat = flat.to(dtype)
        weight = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=dtype) / flat.numel()
        names.append(name)
        sums.append(torch.stack([flat.sum(), flat.abs().sum(), (flat * weight).sum()]))
    if not sums:
        return None
    return names, torch.stack(sums)


# --- alarm peek ----------------------------------------------------------------------------

class AlarmPeek:
    """Non-blocking look at the on-device alarm counter (see the module docstring)."""

    def __init__(self, alarm: torch.Tensor):
        self.alarm = alarm
        self.kind = alarm.device.type
        if self.kind == "cpu":
            self._view = alarm.numpy()  # shares memory: reading it is a plain load, not a copy
        elif self.kind == "cuda":
            self._host = torch.zeros_like(alarm, device="cpu").pin_memory()
            self._view = self._host.numpy()
            self._event = torch.cuda.Event()
            self._armed = False
        else:
            self._view = None

    def arm(self) -> None:
        """After a step's statistics were queued: start the copy (CUDA) so a later peek can see it."""
        if self.kind == "cuda":
            self._host.copy_(self.alarm, non_blocking=True)
            self._event.record()
            self._armed = True

    def tripped(self) -> bool:
        if self.kind == "cpu":
            return bool(self._view[0] != 0)
        if self.kind == "cuda" and self._armed and self._event.query():
            return bool(self._view[0] != 0)
        return False
