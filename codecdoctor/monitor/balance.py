"""T612's measurement: how much of the gradient at the decoder output each loss term sends.

For each scalar loss term L_i that reaches the output y, ‖∂L_i/∂y‖ (one `autograd.grad` from the
term to y, through the loss graph only, never through the model), the quantity EnCodec's balancer
normalises. It runs on the read-back schedule only (the first step of each window), costs about one
extra loss backward per term there, and stays on the device until the next read-back's one transfer.
"""
from __future__ import annotations

from typing import Any

import torch

# sums of the other terms: their gradient is the others' sum, not a term of its own
TOTAL_NAMES = ("total", "loss", "total_loss", "loss_total", "g_loss", "loss_g", "gen_loss", "generator")


def term_grad_norms(y: Any, losses: dict[str, Any] | None) -> tuple[list[str], torch.Tensor] | None:
    """(term names, `[terms]` float32 norms on y's device), or None when it cannot be measured
    (no graph to y, fewer than two terms, or a forward run without gradients)."""
    if not isinstance(y, torch.Tensor) or not y.requires_grad or not losses or not torch.is_grad_enabled():
        return None
    terms = [(str(name), value) for name, value in losses.items()
             if isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1
             and str(name).lower() not in TOTAL_NAMES]
    if len(terms) < 2:
        return None
    norms = []
    for _, value in terms:
        (grad,) = torch.autograd.grad(value.reshape(()), y, retain_graph=True, allow_unused=True)
        norms.append(torch.linalg.vector_norm(grad.detach().float()) if grad is not None
                     else torch.zeros((), device=y.device))
    return [name for name, _ in terms], torch.stack(norms)
