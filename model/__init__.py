"""The built-in trainable neural audio codec (SEANet encoder/decoder + EMA residual VQ).

It lives in the folder `model/` and installs under the import name `codecdoctor_model`, so a
user's own `model.py` or `model/` can never shadow it. It never imports `codecdoctor`; the toolkit
imports it one-way. Names are loaded on first use, so `codecdoctor_model.options` (what the CLI
reads) does not import torch.
"""
from importlib import import_module
from typing import Any

_EXPORTS = {
    "Codec": ".codec", "CodecOutput": ".codec", "CodecConfig": ".config",
    "FORMAT": ".checkpoint", "build_codec": ".checkpoint", "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
