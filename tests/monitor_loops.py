"""Tiny training loops for the monitor tests: the built-in codec at test size, on synthetic speech.

Each loop calls the monitor hooks exactly where a user's loop would; faults are injected by small
callables so every test states its cause in one line.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from codecdoctor.measure.stimuli import speech_like

SAMPLE_RATE = 16000
# The test machine's cores are shared: two intra-op threads on a busy 2-core box run the tiny codec
# ~10x slower than one (measured: 6.5 s vs 0.5 s for 6 steps).
torch.set_num_threads(1)


@functools.lru_cache(maxsize=16)
def speech_bank(seconds: float = 6.0, seed: int = 0, peak: float = 0.5) -> torch.Tensor:
    """Synthetic speech (cached: generating it costs more than the tiny codec's steps; never edit it in place)."""
    return torch.from_numpy(np.asarray(speech_like(seconds, SAMPLE_RATE, seed=seed, peak=peak), dtype=np.float32).reshape(-1))


def crops(bank: torch.Tensor, step: int, batch: int = 4, samples: int = 4000, seed: int = 0) -> torch.Tensor:
    """Deterministic random crops `[batch, 1, samples]` for one step."""
    g = torch.Generator().manual_seed(seed * 100003 + step)
    starts = torch.randint(0, bank.numel() - samples, (batch,), generator=g)
    return torch.stack([bank[s: s + samples] for s in starts.tolist()]).unsqueeze(1)


class PassThroughCodec(torch.nn.Module):
    """A trainable 1x1-conv 'codec' that starts as the identity: for faults that live in the data
    pipeline, where the codec's own (in)ability to reconstruct would only blur the measurement."""

    def __init__(self, tanh: bool = False, gain: float = 1.0):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(gain)
            self.conv.bias.zero_()
        self.tanh = torch.nn.Tanh() if tanh else torch.nn.Identity()

    def forward(self, x):
        return self.tanh(self.conv(x))


def tiny_codec(output_bound: str = "tanh", seed: int = 0):
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    torch.manual_seed(seed)
    config = CodecConfig.tiny().replace(output_bound=output_bound)
    return Codec(config), ReconstructionLoss(config)


def run_codec(monitor, model, loss_fn, steps: int, make_batch: Callable[[int], torch.Tensor], *, lr: float = 1e-3,
              optimizer=None, before_forward: Callable | None = None, edit_losses: Callable | None = None,
              edit_grads: Callable | None = None, scaler=None, target: Callable | None = None) -> int:
    """Train `steps` steps with the monitor hooked in; returns the number of optimizer steps taken."""
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    if getattr(monitor, "optimizer", None) is None:
        monitor.optimizer = optimizer
    taken = 0
    for step in range(steps):
        x = make_batch(step)
        if before_forward:
            before_forward(step, model)
        out = model(x)
        ref = target(step, x) if target else x
        losses = loss_fn(out.audio, ref, out.commit_loss)
        if edit_losses:
            losses = edit_losses(step, losses)
        monitor.on_batch(x, out.audio, losses)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(optimizer)
        else:
            losses["total"].backward()
        if edit_grads:
            edit_grads(step, model)
        monitor.on_backward(model)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
            monitor.on_step(scaler)
        else:
            optimizer.step()
            monitor.on_step()
        taken += 1
    return taken


def host_reads_per_step(monitor, model, bank: torch.Tensor, steps: int) -> list[int]:
    """Train a model that returns a tensor for `steps` steps on crops of `bank` (L1 loss, Adam),
    the monitor's three hooks in their documented places; the reads the hooks make from the device, per step."""
    from host_reads import HostReadCounter

    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    monitor.optimizer = optimizer
    per_step = []
    for step in range(steps):
        x = crops(bank, step)
        y = model(x)
        losses = {"l1": (y - x).abs().mean()}
        with HostReadCounter() as on_batch:
            monitor.on_batch(x, y, losses)
        optimizer.zero_grad()
        losses["l1"].backward()
        with HostReadCounter() as on_backward:   # the hooks' reads only, not autograd's or Adam's
            monitor.on_backward(model)
        optimizer.step()
        with HostReadCounter() as on_step:
            monitor.on_step()
        per_step.append(on_batch.total + on_backward.total + on_step.total)
    return per_step
