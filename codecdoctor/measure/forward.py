"""Reading a model's forward output without knowing its type: the one place that walks an output
for its tensors and picks the reconstruction. Shared by the forward-driven adapter (check-ckpt,
probe with `--model Class`) and the global hooks of `watch` / the Lightning callback."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

MAX_DEPTH = 4  # outputs nest a few levels (tuple of dataclass of dict); deeper is not an output
MAX_ATTRIBUTES = 16  # a plain output object holds a handful of fields, not a whole module's state


def tensors_in(value: Any, depth: int = 0) -> Iterator[Any]:
    """Tensors inside a forward's output, in order: tensors, tuples/lists, dicts, dataclasses,
    namedtuples and plain output objects (never a module's parameters)."""
    import torch

    if depth > MAX_DEPTH:
        return
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from tensors_in(getattr(value, f.name, None), depth + 1)
    elif hasattr(value, "__dict__") and not callable(value) and not isinstance(value, (torch.nn.Module, type)):
        for item in list(vars(value).values())[:MAX_ATTRIBUTES]:
            yield from tensors_in(item, depth + 1)


def first_audio_output(output: Any, batch: int, length: int, *, tolerance: int, max_channels: int) -> Any | None:
    """The first floating tensor in `output` shaped like audio for this input: `[B, T]` or
    `[B, C, T]` with the input's batch size, at most `max_channels` channels (a `[B, D, frames]`
    latent has many) and a time axis within `tolerance` samples of the input's length."""
    for tensor in tensors_in(output):
        if not tensor.is_floating_point() or tensor.dim() not in (2, 3) or tensor.shape[0] != batch:
            continue
        if tensor.dim() == 3 and tensor.shape[1] > max_channels:
            continue
        if abs(tensor.shape[-1] - length) <= tolerance:
            return tensor
    return None
