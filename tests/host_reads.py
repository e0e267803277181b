"""A test double that counts device-to-host reads, to prove code does not sync the host per step.

On a GPU every read of a tensor's value by the host (`.item()`, `bool(t)`, `float(t)`, `.tolist()`,
`.numpy()`, `.cpu()`, a copy to CPU) waits for the device to finish all queued work. On the CPU those
calls are cheap, so timing cannot reveal them; counting can. `HostReadCounter` counts both the
dispatcher-level reads (`aten::_local_scalar_dense`, behind item/bool/float/int, and copies to a CPU
tensor from another device) and the Python-level conversions that bypass the dispatcher.

    with HostReadCounter() as reads:
        monitor.on_batch(x, y, losses)
    assert reads.total == 0
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_PATCHED = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__")


class _DispatchCounter(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket.__name__)
        if name == "_local_scalar_dense":
            self.counts["aten._local_scalar_dense"] += 1
        elif name in ("_to_copy", "copy_") and args:
            src = args[1] if name == "copy_" and len(args) > 1 else args[0]
            dst_device = kwargs.get("device") if name == "_to_copy" else getattr(args[0], "device", None)
            if isinstance(src, torch.Tensor) and src.device.type != "cpu" and dst_device is not None \
                    and torch.device(dst_device).type == "cpu":
                self.counts[f"aten.{name} to cpu"] += 1
        return func(*args, **kwargs)


class HostReadCounter:
    """Context manager; `.total` and `.counts` after (or during) the block."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._saved: dict[str, Any] = {}
        self._mode: _DispatchCounter | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _wrap(self, name: str, original):
        counts = self.counts

        def wrapper(tensor, *args, **kwargs):
            # only count the outermost call (bool() on a tensor may call item internally)
            counts[f"Tensor.{name}"] += 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def __enter__(self) -> "HostReadCounter":
        for name in _PATCHED:
            original = getattr(torch.Tensor, name, None)
            if original is None:
                continue
            self._saved[name] = original
            setattr(torch.Tensor, name, self._wrap(name, original))
        self._mode = _DispatchCounter(self.counts)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved.clear()
