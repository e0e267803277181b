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
from typing import Any, Callable

from codecdoctor.core.errors import InputError
from codecdoctor.measure.checkpoint import CheckpointInfo


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


# --- building a model ---------------------------------------------------------------------------

def _own_adapter(info: CheckpointInfo):
    from codecdoctor_model.checkpoint import build_codec

    return OwnCodecAdapter(build_codec(info.raw))


def _encodec_adapter(info: CheckpointInfo):
    import encodec
    import torch

    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    model.load_state_dict(info.weights)
    model.set_target_bandwidth(max(model.target_bandwidths))
    model.eval()

    class EncodecAdapter(CodecAdapter):
        def encode(self, audio):
            frames = self.module.encode(audio)
            return torch.cat([codes for codes, _ in frames], dim=-1)

        def decode(self, codes):
            return self.module.decode([(codes, None)])

    return EncodecAdapter(model, model.sample_rate, codebook_size=model.quantizer.bins, channels=model.channels)


def _dac_adapter(info: CheckpointInfo):
    import dac

    model = dac.DAC(**(info.config or {}))
    model.load_state_dict(info.weights)
    model.eval()

    class DacAdapter(CodecAdapter):
        def encode(self, audio):
            length = audio.shape[-1]
            padded = self.module.preprocess(audio, self.sample_rate)
            self._length = length
            return self.module.encode(padded)[1]

        def decode(self, codes):
            z = self.module.quantizer.from_codes(codes)[0]
            return self.module.decode(z)

    return DacAdapter(model, model.sample_rate, codebook_size=model.codebook_size)


def build_adapter(info: CheckpointInfo, model_spec: str | None = None) -> tuple[Any, str]:
    """(adapter or None, a sentence saying what was built or why not)."""
    if model_spec:
        factory = load_factory(model_spec)
        try:
            _, adapter = build_from_factory(factory, info.weights)
        except Exception as exc:  # noqa: BLE001 - the user's factory: report, static checks still run
            if isinstance(exc, InputError):
                raise
            return None, f"--model {model_spec} failed: {type(exc).__name__}: {exc}; static checks only"
        return adapter, f"model built by {model_spec}"
    builders: dict[str, Callable[[CheckpointInfo], Any]] = {"codecdoctor-codec": _own_adapter}
    if info.architecture == "encodec":
        builders["encodec"] = _encodec_adapter
    if info.architecture == "dac" and info.config:
        builders["dac"] = _dac_adapter
    builder = builders.get(info.architecture)
    if builder is None or (info.architecture == "codecdoctor-codec" and info.format != "codecdoctor-codec/1"):
        what = "an unknown architecture" if info.architecture == "unknown" else f"{info.architecture} weights"
        why = " without the config needed to build it" if info.architecture in ("codecdoctor-codec", "dac") else ""
        return None, (f"{what}{why}: static checks only; pass --model pkg.module:factory to run probes, "
                      "reconstruction and code histograms")
    try:
        return builder(info), f"{info.architecture} model built from the checkpoint"
    except Exception as exc:  # noqa: BLE001 - weights that do not fit: static checks still run
        return None, f"could not build the {info.architecture} model ({type(exc).__name__}: " \
                     f"{str(exc).splitlines()[0][:160]}): static checks only"


# --- data crops -------------------------------------------------------------------------------
