"""The encode/decode adapter through which codecdoctor drives any codec (probes, reconstruction,
code histograms), and the `--model pkg.module:factory` loader.

Adapter protocol (duck-typed; only `sample_rate` and one way to reconstruct are required):

    class MyAdapter:
        sample_rate: int                     # Hz the codec expects
        channels: int = 1                    # optional
        codebook_size: int | list[int]       # optional: per level, for code histograms
        def encode(self, audio):             # torch.Tensor [B, C, T] float -> codes [B, n_q, frames] long
        def decode(self, codes):             # codes [B, n_q, frames] -> audio [B, C, T'] float
        def reconstruct(self, audio):        # optional; default decode(encode(audio)) cropped to T

`decode` may accept fewer levels than the codec has (codes[:, :k]); when it does, check-ckpt
measures what each RVQ level adds (Q405). A codec without discrete codes may provide only
`reconstruct`.

Factory: `--model pkg.module:factory` imports `pkg.module` and calls `factory(state_dict)` (or
`factory()` when it takes no argument). `state_dict` is the checkpoint's flat weights (container
prefixes such as Lightning's `model.` stripped). It returns `(module, adapter)`; the module is
the `nn.Module` (used for `.eval()` and parameter counts), the adapter follows the protocol above.
Returning only an adapter that has a `.module` attribute also works.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from codecdoctor.errors import InputError


class CodecAdapter:
    """Base adapter wrapping an nn.Module with `encode` / `decode` methods."""

    channels = 1

    def __init__(self, module: Any, sample_rate: int, *, codebook_size: Any = None, channels: int = 1):
        self.module = module
        self.sample_rate = int(sample_rate)
        self.codebook_size = codebook_size
        self.channels = channels

    def encode(self, audio):
        return self.module.encode(audio)

    def decode(self, codes):
        return self.module.decode(codes)


class OwnCodecAdapter(CodecAdapter):
    """This project's `model.codec.Codec`."""

    def __init__(self, codec: Any):
        super().__init__(codec, codec.config.sample_rate, codebook_size=codec.config.codebook_size,
                         channels=codec.config.channels)

    def decode(self, codes):
        return self.module.decode(codes)


def reconstruct(adapter: Any, audio) -> Any:
    """Run audio [B, C, T] through the codec; the result has exactly T samples (cropped or
    zero-padded: a length mismatch is measured by R310 on real files, not here)."""
    import torch

    with torch.inference_mode():
        if hasattr(adapter, "reconstruct"):
            out = adapter.reconstruct(audio)
        else:
            out = adapter.decode(adapter.encode(audio))
        out = torch.as_tensor(out).float()
        if out.dim() == 2:
            out = out[:, None, :]
        length = audio.shape[-1]
        if out.shape[-1] >= length:
            return out[..., :length]
        return torch.nn.functional.pad(out, (0, length - out.shape[-1]))


def load_factory(spec: str):
    """`pkg.module:callable` -> the callable. The current directory is importable, so a user's
    own `my_codec.py` works without installing it."""
    if ":" not in spec:
        raise InputError(f"--model must look like pkg.module:factory, got {spec!r}")
    module_name, _, attr = spec.partition(":")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module: say what failed, in one line
        raise InputError(f"--model: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(f"--model: {module_name} has no callable {attr!r}")
    return factory


def build_from_factory(factory: Any, weights: dict[str, Any]) -> tuple[Any, Any]:
    """Call the factory; returns (module, adapter)."""
    try:
        takes_argument = bool(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        takes_argument = True
    result = factory(weights) if takes_argument else factory()
    if isinstance(result, tuple) and len(result) == 2:
        module, adapter = result
    else:
        adapter = result
        module = getattr(result, "module", None)
    if not hasattr(adapter, "sample_rate") or not (hasattr(adapter, "reconstruct")
                                                   or (hasattr(adapter, "encode") and hasattr(adapter, "decode"))):
        raise InputError("--model factory must return (module, adapter) with adapter.sample_rate and "
                         "encode/decode (or reconstruct)")
    if module is not None and hasattr(module, "eval"):
        module.eval()
    return module, adapter
