"""The monitor under DDP: codebook agreement across ranks (T611) and stopping every rank together.

T611: at scheduled read-backs (the same steps on every rank, since the schedule follows the step
number) each rank checksums its codebook tensors and all-reduces them with max and min.

Stopping: a strict monitor that finds a fault on one rank cannot simply raise there. The other
ranks would go on into the next gradient all-reduce and wait for the stopped rank until the
gloo/NCCL timeout (30 minutes by default). So under DDP a stop is a vote: the rank that found the
fault records it, and every rank takes part in one small all-reduce (MAX of a stop flag) after each
optimizer step, the one point every rank reaches in lockstep. When the vote says stop, the ranks
exchange their findings (`all_gather_object`, only then) and all raise `CheckFailed` at the same
step. On the CPU (gloo) the flag is read at once; on a GPU the all-reduce runs on the device and its
result is read one step later through a pinned copy, so the host never waits for the current step.
"""
from __future__ import annotations

from typing import Any

import torch

from codecdoctor.core.findings import Finding
from codecdoctor.measure.training import DdpMeasurements
from codecdoctor.monitor.device_stats import codebook_checksum


def world() -> tuple[int, int] | None:
    """(rank, world size) under an initialised process group of two or more ranks, else None."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist.get_rank(), dist.get_world_size()


def codebook_agreement(model: torch.nn.Module, step: int) -> DdpMeasurements | None:
    """T611's measurement: relative spread across ranks of each codebook tensor's checksums."""
    if world() is None:
        return None
    dist = torch.distributed
    result = codebook_checksum(getattr(model, "module", model))
    if result is None:
        return None
    names, sums = result
    if dist.get_backend() == "gloo" and sums.device.type != "cpu":
        sums = sums.cpu()
    high, low = sums.clone(), sums.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    scale = torch.maximum(high.abs(), low.abs()).clamp_min(1e-12)
    spread = ((high - low).abs() / scale).amax(1).cpu().tolist()
    return DdpMeasurements(rank=dist.get_rank(), world_size=dist.get_world_size(), step=step, tensors=names,
                           spread=[float(s) for s in spread])


class StopVote:
    """Collects a rank's stop-worthy findings and turns them into one stop for every rank."""

    def __init__(self) -> None:
        self.pending: list[Finding] = []
        self._flag: torch.Tensor | None = None
        self._host: torch.Tensor | None = None
        self._event: Any = None
        self._in_flight = False

    @staticmethod
    def active() -> bool:
        return world() is not None

    def defer(self, findings: list[Finding]) -> None:
        self.pending.extend(findings)

    def vote(self, device: torch.device | None) -> list[Finding] | None:
        """Call on every rank after each optimizer step. Returns every rank's stop findings when
        any rank asked to stop (then all ranks return them at this same call), else None."""
        dist = torch.distributed
        if dist.get_backend() == "gloo":
            backend_device = torch.device("cpu")
        elif device is not None and device.type != "cpu":
            backend_device = device
        else:  # NCCL needs a CUDA tensor even before this rank's monitor saw a batch
            backend_device = torch.device("cuda", torch.cuda.current_device())
        local = 1.0 if self.pending else 0.0
        if backend_device.type == "cpu":
            flag = torch.full((1,), local)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag[0] > 0)
        else:
            # read the previous step's vote (its copy landed long ago: at most one step of waiting),
            # then start this step's on the device
            stop = False
            if self._in_flight:
                self._event.synchronize()
                stop = bool(self._host[0] > 0)
            if self._flag is None:
                self._flag = torch.zeros(1, device=backend_device)
                self._host = torch.zeros(1).pin_memory()
                self._event = torch.cuda.Event()
            self._flag.fill_(local)
            dist.all_reduce(self._flag, op=dist.ReduceOp.MAX)
            self._host.copy_(self._flag, non_blocking=True)
            self._event.record()
            self._in_flight = True
        if not stop:
            return None
        rank = dist.get_rank()
        mine = [f.to_dict() for f in self.pending]
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        out: list[Finding] = list(self.pending)
        for other_rank, items in enumerate(gathered):
            if other_rank == rank:
                continue
            for item in items or []:
                f = Finding.from_dict(item)
                f.subject = f"rank {other_rank}: {f.subject}" if f.subject else f"rank {other_rank}"
                f.evidence["rank"] = other_rank
                out.append(f)
        self.pending = []
        return out
