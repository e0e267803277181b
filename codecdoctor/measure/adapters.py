"""The encode/decode adapter through which codecdoctor drives any codec (probes, reconstruction,
code histograms), and the `--model SPEC` loader.

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

`--model SPEC`: SPEC is `path/to/file.py:Name` or `pkg.module:Name` (the current directory is
importable). Name is
- an `nn.Module` class: built with `--model-kwargs JSON`, else with the checkpoint's saved
  `config` / `args` entries whose names match the constructor's parameters; the weights are found
  in the checkpoint (`model_state_dict`, `state_dict`, `model`, `generator`, `ema`, Lightning's
  `model.` prefix), wrapper prefixes (`module.`, `_orig_mod.`) stripped and old/new weight-norm
  names mapped, then loaded strictly: what does not match is measured (`ModelLoad`, check C217);
- a factory, a function or a static / class method (`model.py:EncodecModel._get_model`): its
  keyword arguments come as a class's do (`--model-kwargs`, then the saved settings that match,
  hydra / OmegaConf `cfg` included); a parameter named `checkpoint` / `ckpt` / `state_dict` (or the
  only parameter of a factory, when nothing else provides it) receives the loaded checkpoint as
  saved (nested: the user guide's `model.load_state_dict(ckpt["model_state_dict"])` works; a raw
  state dict arrives as it is). It returns `(module, adapter)`, an adapter with a `.module`, or a
  bare module; a bare module from a factory that did not get the checkpoint has the checkpoint's
  weights loaded strictly, like a class.
A class or factory that raises is one line: the line of the user's code that failed and the
arguments it uses, with where each came from.
Without an adapter the model's own `forward` is driven (`ForwardAdapter`): the reconstruction is
the first floating output with the input's length (within one hop), the codes are the integer
tensors its submodules return (forward hooks) or that a quantizer's own methods return when the
forward calls them (`quantizer.encode(...)` in an eval path); when neither shows any, the indices
an argmin / argmax computes inside a quantizer's forward (a nearest-code search whose codes are
never returned).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codecdoctor.core.errors import InputError
from codecdoctor.measure.checkpoint import OWN_FORMAT, CheckpointInfo
from codecdoctor.measure.forward import first_audio_output, tensors_in
from codecdoctor.measure.quantizer import QUANTIZER_NAME


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



# --- --model SPEC: import -----------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def load_spec(spec: str) -> Any:
    """`path/to/file.py:Name` or `pkg.module:Name` -> the object (Name may be dotted). The file's
    folder and the current directory are importable, so a user's own `my_codec.py` works without
    installing it."""
    path_part, sep, attr = spec.rpartition(":")
    if not sep or not path_part or not attr:
        raise InputError(f"--model must look like path/to/file.py:Name or pkg.module:Name, got {spec!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        if path_part.endswith(".py") or "/" in path_part or "\\" in path_part:
            file = Path(path_part).expanduser()
            if not file.is_file():
                raise InputError(f"--model: no such file {path_part}")
            folder = str(file.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # so the file's own sibling imports work
            module_name = f"codecdoctor_user_model_{file.stem}"
            loader_spec = importlib.util.spec_from_file_location(module_name, file)
            if loader_spec is None or loader_spec.loader is None:
                raise InputError(f"--model: {path_part} is not an importable Python file")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(path_part)
    except InputError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's module: say what failed, in one line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise InputError(f"--model: cannot import {path_part}: {_first_line(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise InputError(f"--model: {path_part} has no {attr!r}")
    if not callable(obj):
        raise InputError(f"--model: {path_part}:{attr} is neither an nn.Module class nor a factory function")
    return obj


def load_factory(spec: str):
    """Kept for callers of the earlier API: the object `spec` names."""
    return load_spec(spec)


def parse_model_kwargs(text: str | dict | None) -> dict[str, Any]:
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-kwargs must be a JSON object, e.g. '{{\"channels\": 32}}': {exc.msg} "
                         f"at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise InputError(f"--model-kwargs must be a JSON object, got {type(value).__name__}")
    return value


# --- --model SPEC: constructor arguments from the checkpoint ------------------------------------

_SAVED_SETTINGS = ("model_config", "model_args", "model_kwargs", "config", "cfg", "hparams", "hyper_parameters",
                   "args", "train_args", "training_args", "opts")
_WHOLE_CONFIG_PARAMS = ("config", "cfg", "args", "hparams", "opts", "params", "model_config", "hp")


def _as_settings(value: Any) -> dict | None:
    import argparse

    if isinstance(value, dict):
        return value
    if type(value).__module__.startswith("omegaconf"):  # a hydra `cfg` saved as it was (DictConfig)
        import omegaconf

        container = omegaconf.OmegaConf.to_container(value, resolve=True)
        return container if isinstance(container, dict) else None
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return None


def saved_settings(raw: Any) -> list[tuple[str, dict]]:
    """(where, dict) for every saved config / argument set, most model-specific first; a config's
    `model` sub-dict (`config["model"]`) comes before the config itself."""
    out: list[tuple[str, dict]] = []
    if not isinstance(raw, dict):
        return out
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("kwargs"), dict):
        out.append(("metadata['kwargs']", metadata["kwargs"]))  # DAC.save(): the constructor's kwargs
    for key in _SAVED_SETTINGS:
        settings = _as_settings(raw.get(key))
        if settings is None:
            continue
        for sub in ("model", "model_args", "model_config", "codec"):
            inner = _as_settings(settings.get(sub))
            if inner is not None:
                out.append((f"{key}[{sub!r}]", inner))
        out.append((key, settings))
    return out


# A factory parameter with one of these names receives the loaded checkpoint (`build(checkpoint)`).
_CHECKPOINT_PARAMS = ("checkpoint", "ckpt", "state", "state_dict", "checkpoint_dict", "package", "loaded")


@dataclass
class Arguments:
    """What `--model` passes to a class or a factory, and where each value came from."""

    kwargs: dict[str, Any]
    sources: dict[str, str]
    checkpoint_passed: bool = False  # a factory got the checkpoint itself (and loads its weights)


def _parameters(target: Any) -> tuple[dict[str, inspect.Parameter], bool] | None:
    """(named parameters, takes **kwargs), None when the signature cannot be read (a C builtin)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    params = {name: p for name, p in signature.parameters.items()
              if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    return params, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _from_checkpoint(name: str, settings: list[tuple[str, dict]], raw: Any) -> tuple[str, Any] | None:
    """(where, value) for parameter `name` from the checkpoint's saved settings, or None."""
    found = next(((where, d[name]) for where, d in settings if name in d), None)
    if found is not None:
        return f"checkpoint {found[0]}", found[1]
    if name in _WHOLE_CONFIG_PARAMS and isinstance(raw, dict) and raw.get(name) is not None:
        return f"checkpoint {name}", raw[name]  # as saved: a DictConfig keeps its attribute access
    return None


def call_arguments(target: Any, explicit: dict[str, Any], raw: Any, label: str, *,
                   factory: bool = False) -> Arguments:
    """The arguments for `target(**kwargs)`: `--model-kwargs` first, then (for a factory) the
    loaded checkpoint for a parameter named like it, then the checkpoint's saved settings (a
    config's `model` section first, hydra / OmegaConf `cfg` included) whose names match, then a
    whole saved config for a parameter called `config` / `cfg` / `args`. A factory with a single
    parameter that none of these provide gets the checkpoint (`build(checkpoint)`). Raises
    InputError naming an argument the target does not take, or the required ones nothing provides."""
    found = _parameters(target)
    if found is None:
        return Arguments(dict(explicit), {k: "--model-kwargs" for k in explicit})
    params, takes_any = found
    if factory and next(iter(params), None) == "self":
        raise InputError(f"--model: {label} is an instance method; name a static or class method that builds "
                         "the model, or the class itself")
    unknown = [k for k in explicit if k not in params]
    if unknown and not takes_any:
        raise InputError(f"--model-kwargs: {label} takes no argument {unknown[0]!r} "
                         f"(it takes: {', '.join(params) or 'nothing'})")
    out = Arguments(dict(explicit), {k: "--model-kwargs" for k in explicit})
    settings = saved_settings(raw)
    missing = []
    for name, param in params.items():
        if name in out.kwargs:
            continue
        if factory and name.lower() in _CHECKPOINT_PARAMS:
            out.kwargs[name], out.sources[name], out.checkpoint_passed = raw, "the loaded checkpoint", True
            continue
        saved = _from_checkpoint(name, settings, raw)
        if saved is not None:
            out.sources[name], out.kwargs[name] = saved
        elif param.default is inspect.Parameter.empty:
            missing.append(name)
    if factory and len(params) == 1 and missing and not explicit:
        # the documented `factory(checkpoint)` contract, whatever the parameter is called
        out.kwargs[missing[0]], out.sources[missing[0]], out.checkpoint_passed = raw, "the loaded checkpoint", True
        missing = []
    if missing:
        have = ", ".join(where for where, _ in settings) or "no saved config or args"
        factories = _factories_beside(target)
        # a constructor that takes modules (encoder, decoder, quantizer) cannot get them from JSON
        how = (f"name a factory beside it: {', '.join(factories)}" if factories
               else f"pass --model-kwargs '{{\"{missing[0]}\": ...}}'")
        raise InputError(f"--model: {label} needs {', '.join(missing)}, which neither --model-kwargs nor the "
                         f"checkpoint's saved settings ({have}) provide; {how}")
    positional = [n for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_ONLY and n in out.kwargs]
    if positional:
        raise InputError(f"--model: {label} takes {', '.join(positional)} by position only; wrap it in a factory "
                         "that takes keyword arguments")
    return out


def constructor_arguments(cls: Any, explicit: dict[str, Any], raw: Any, label: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(kwargs, where each came from) for `cls(**kwargs)` (see call_arguments)."""
    arguments = call_arguments(cls, explicit, raw, label)
    return arguments.kwargs, arguments.sources


def _factories_beside(target: Any) -> list[str]:
    """The static and class methods a class (defined in the user's module) carries, as `--model`
    names: the factories that build a class whose constructor takes modules."""
    if not isinstance(target, type):
        return []
    names = [name for klass in target.__mro__ if klass.__module__ == target.__module__
             for name, value in vars(klass).items() if isinstance(value, (staticmethod, classmethod))]
    return [f"{target.__name__}.{name}" for name in dict.fromkeys(names)]


def _call_failure(label: str, arguments: Arguments, exc: BaseException, target: Any) -> InputError:
    """One line for a class or factory that raised: the line of the user's code it failed at and
    the arguments that line uses, with where each came from."""
    import traceback

    where = ""
    try:
        own_file = inspect.getsourcefile(target if not isinstance(target, type) else target.__init__)
    except (TypeError, OSError):
        own_file = None
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if own_file and f.filename == own_file]
    if frames and frames[-1].line:
        line = frames[-1].line.strip()
        used = [name for name in arguments.kwargs if re.search(rf"\b{re.escape(name)}\b", line)]
        shown = ", ".join(f"{name} = {_short(arguments.kwargs[name])} from {arguments.sources.get(name, '?')}"
                          for name in used)
        where = f" at line {frames[-1].lineno} `{line[:100]}`" + (f" ({shown})" if shown else "")
    passed = ", ".join(f"{name} from {source}" for name, source in arguments.sources.items())
    return InputError(f"--model: {label}({passed}) failed{where}: {_first_line(exc)}")


def _short(value: Any) -> str:
    text = "the checkpoint" if isinstance(value, dict) and len(value) > 4 else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- --model SPEC: strict load --------------------------------------------------------------------

_WRAPPERS = ("module.", "_orig_mod.")
_CONTAINER_PREFIXES = ("model.", "net.", "generator.", "codec.", "autoencoder.", "network.")
_WEIGHT_NORM = ((".weight_g", ".parametrizations.weight.original0"), (".weight_v", ".parametrizations.weight.original1"))


@dataclass
class ModelLoad:
    """How the checkpoint's weights went into the model (JSON: `measurements.model_load`)."""

    spec: str
    kind: str                                  # "class" | "factory"
    weights_key: str | None = None             # container key the weights came from
    stripped_prefix: str = ""                  # e.g. "module._orig_mod." or Lightning's "model."
    weight_norm_renamed: int = 0               # old <-> new weight-norm names mapped
    loaded: int = 0
    missing: int = 0
    unexpected: int = 0
    shape_mismatch: int = 0
    missing_examples: list[str] = field(default_factory=list)
    unexpected_examples: list[str] = field(default_factory=list)
    shape_mismatch_examples: list[str] = field(default_factory=list)
    kwargs_sources: dict[str, str] = field(default_factory=dict)
    checked: bool = True                       # False: a factory loaded the weights itself

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)


def _map_weight_norm(names: dict[str, Any], target: set[str]) -> tuple[dict[str, Any], int]:
    out, renamed = {}, 0
    dotted_target = {"." + k for k in target}  # a bare conv's names have no module path in front
    for key, value in names.items():
        new = "." + key
        if key not in target:
            for old, param in _WEIGHT_NORM:
                if new.endswith(old) and new[: -len(old)] + param in dotted_target:
                    new = new[: -len(old)] + param
                elif new.endswith(param) and new[: -len(param)] + old in dotted_target:
                    new = new[: -len(param)] + old
        new = new[1:]
        renamed += new != key
        out[new] = value
    return out, renamed


def _best_prefix(keys: list[str], target: set[str]) -> str:
    """The prefix whose removal makes the most checkpoint names match the model's."""
    candidates = {""}
    for first in ("", *_WRAPPERS):
        for second in ("", *_WRAPPERS):
            for container in ("", *_CONTAINER_PREFIXES):
                candidates.add(first + second + container)
    best, best_hits = "", -1
    for prefix in sorted(candidates, key=len):
        hits = sum(1 for k in keys if k.startswith(prefix) and k[len(prefix):] in target)
        # weight-norm names count too: they are mapped afterwards
        hits += sum(1 for k in keys if k.startswith(prefix) and k[len(prefix):] not in target
                    and any(k.endswith(a) or k.endswith(b) for a, b in _WEIGHT_NORM))
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def load_weights_strictly(module: Any, weights: dict[str, Any], load: ModelLoad, *, examples: int = 5) -> None:
    """Load `weights` into `module`, measuring every missing / unexpected / wrong-shape name
    (after stripping the prefix that matches best and mapping weight-norm names). What matches is
    loaded, so the measurement names exactly what stayed random."""
    target_state = module.state_dict()
    target = set(target_state)
    prefix = _best_prefix(list(weights), target)
    stripped = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    outside = [k for k in weights if not k.startswith(prefix)]
    mapped, renamed = _map_weight_norm(stripped, target)
    load.stripped_prefix, load.weight_norm_renamed = prefix, renamed
    # BatchNorm's num_batches_tracked is absent from old checkpoints and PyTorch fills it itself
    missing = [k for k in target_state if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in mapped if k not in target] + outside
    wrong = [k for k in mapped if k in target and tuple(mapped[k].shape) != tuple(target_state[k].shape)]
    load.missing, load.unexpected, load.shape_mismatch = len(missing), len(unexpected), len(wrong)
    load.missing_examples = missing[:examples]
    load.unexpected_examples = unexpected[:examples]
    load.shape_mismatch_examples = [f"{k}: checkpoint {list(mapped[k].shape)}, model {list(target_state[k].shape)}"
                                    for k in wrong[:examples]]
    loadable = {k: v for k, v in mapped.items() if k in target and k not in wrong}
    load.loaded = len(loadable)
    module.load_state_dict(loadable, strict=False)


# --- the forward-driven adapter -------------------------------------------------------------------

def _describe(value: Any) -> str:
    parts = [f"Tensor{list(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in tensors_in(value)]
    return ", ".join(parts[:4]) + (" ..." if len(parts) > 4 else "") if parts else f"{type(value).__name__} (no tensor)"


def _codebook_size_of(module: Any) -> int | None:
    import torch

    for attr in ("codebook_size", "num_embeddings", "n_codes", "bins", "size", "num_codes", "K"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 1:
            return value
    for child in module.modules():
        if isinstance(child, torch.nn.Embedding):
            return int(child.num_embeddings)
    return None


class ForwardAdapter:
    """Drives a model through its own `forward`.

    The reconstruction is the first floating tensor of the output with the input's batch size and
    a length within one hop of the input's (cropped or padded to it); the codes are the integer
    tensors the model's submodules return, captured with forward hooks (the innermost modules that
    return them: one RVQ level each)."""

    # the probes' level sweep runs one level per forward: a user's forward may normalise over the batch
    one_example_per_forward = True

    def __init__(self, module: Any, sample_rate: int, *, channels: int = 1, layout: str = "BCT",
                 hop_samples: int | None = None, pad_multiple: int = 1):
        self.module = module
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.layout = layout                 # "BCT": forward(x[B, C, T]); "BT": forward(x[B, T])
        self.hop_samples = hop_samples
        self.pad_multiple = pad_multiple
        self.codebook_size: list[int] | None = None
        self.code_modules: list[str] = []
        self.output_module: str | None = None  # class of the leaf module whose output is the reconstruction

    @property
    def output_bound(self) -> str | None:
        """"tanh" when the reconstruction comes out of an nn.Tanh / nn.Hardtanh, "none" when it comes
        straight out of a conv or linear layer, None when a functional op (or nothing seen) made it."""
        from codecdoctor.measure.bound import module_name_bound

        bound = module_name_bound(self.output_module)
        return None if bound is None else ("tanh" if bound.bounded else "none")

    def _call(self, audio):
        import torch

        length = audio.shape[-1]
        if self.pad_multiple > 1 and length % self.pad_multiple:
            audio = torch.nn.functional.pad(audio, (0, self.pad_multiple - length % self.pad_multiple))
        x = audio if self.layout == "BCT" else audio[:, 0, :]
        return self.module(x), audio.shape[-1]

    def find_reconstruction(self, output: Any, batch: int, length: int):
        tolerance = self.hop_samples or min(1024, max(length // 10, 1))
        tensor = first_audio_output(output, batch, length, tolerance=tolerance, max_channels=8)
        if tensor is None:
            return None
        return tensor if tensor.dim() == 3 else tensor[:, None, :]

    def reconstruct(self, audio):
        output, padded_length = self._call(audio)
        found = self.find_reconstruction(output, audio.shape[0], padded_length)
        if found is None:
            raise InputError(f"the model's forward returned nothing audio-like for input {list(audio.shape)}: "
                             f"{_describe(output)}")
        return found

    def capture_codes(self, audio) -> list[Any]:
        """Per-level integer codes [B, frames] from one forward, via hooks on every submodule."""
        return self.forward_with_codes(audio)[1]

    def forward_with_codes(self, audio) -> tuple[Any, list[Any]]:
        """(the forward's output, per-level codes) from one forward with hooks on every submodule
        and wrappers on the quantizers' methods; when neither shows an integer code, a second
        forward records the argmin / argmax indices computed inside the quantizers' forwards."""
        batch = audio.shape[0]
        output, padded_length, seen = self._tapped_forward(audio, batch)
        if not seen and any(QUANTIZER_NAME.search(name) for name, _ in self.module.named_modules() if name):
            output, padded_length, seen = self._tapped_forward(audio, batch, argmin=True)
        levels, names, sizes = _levels_from(seen, batch)
        self.code_modules, self.codebook_size = names, sizes
        return output, levels

    def _tapped_forward(self, audio, batch: int, *, argmin: bool = False) -> tuple[Any, int, list[tuple]]:
        """(output, padded length, [(module name, module, integer tensor, codebook size or None)]) of
        one forward; also
        finds the module whose output is the reconstruction (`output_module`)."""
        import torch

        seen: list[tuple] = []
        last_float: dict[int, str] = {}  # data_ptr of a leaf module's float output -> its class name
        handles = []
        for name, sub in self.module.named_modules():
            if not name:
                continue
            is_leaf = next(sub.children(), None) is None

            def hook(mod, _inputs, output, name=name, is_leaf=is_leaf):
                ints = _integer_tensors(output, batch)
                if ints:
                    seen.append((name, mod, ints[0], None))
                if is_leaf and isinstance(output, torch.Tensor) and output.is_floating_point():
                    last_float[output.data_ptr()] = type(mod).__name__
            handles.append(sub.register_forward_hook(hook))
        from_methods: list[tuple] = []
        patched = _watch_quantizer_methods(self.module, batch, from_methods)
        tap = _IndexTap(self.module, batch, from_methods) if argmin else contextlib.nullcontext()
        try:
            with tap:
                output, padded_length = self._call(audio)
        finally:
            for handle in handles:
                handle.remove()
            for sub, method in patched:
                sub.__dict__.pop(method, None)
        # codes a quantizer's encode() returned count where no forward of that module returned any
        hooked = {entry[0] for entry in seen}
        seen += [entry for entry in from_methods if entry[0] not in hooked]
        reconstruction = self.find_reconstruction(output, batch, padded_length)
        if reconstruction is not None:
            # the module that produced the reconstruction: a final Tanh bounds the output to ±1
            self.output_module = last_float.get(reconstruction.data_ptr())
        return output, padded_length, seen


def _levels_from(seen: list[tuple], batch: int) -> tuple[list[Any], list[str], list[int]]:
    """Per-level codes [B, frames], their names and codebook sizes, from the innermost modules that
    emitted integer tensors (an RVQ that returns its levels' codes stacked is an ancestor of them)."""
    emitting = {entry[0] for entry in seen}
    leaves = [entry for entry in seen if not any(o != entry[0] and o.startswith(entry[0] + ".") for o in emitting)]
    levels, names, sizes = [], [], []
    for name, mod, codes, searched_size in leaves:
        codes = codes.detach().long().cpu()
        if codes.dim() == 1 and codes.numel() % batch == 0:
            codes = codes.reshape(batch, -1)
        if codes.dim() == 2 and codes.shape[0] == batch:
            per_level = [codes]
        elif codes.dim() == 3 and codes.shape[0] == batch:
            per_level = [codes[:, i] for i in range(codes.shape[1])]
        elif codes.dim() == 3 and codes.shape[1] == batch:  # EnCodec's RVQ encode: [n_q, B, frames]
            per_level = [codes[i] for i in range(codes.shape[0])]
        else:
            continue
        size = searched_size or _codebook_size_of(mod)
        for index, level in enumerate(per_level):
            levels.append(level)
            names.append(name if len(per_level) == 1 else f"{name}[{index}]")
            sizes.append(size or int(level.max()) + 1)
    if len(set(names)) < len(names):  # one module computed several levels' argmins
        names = [f"{name} #{names[:i].count(name)}" if names.count(name) > 1 else name for i, name in enumerate(names)]
    return levels, names, sizes


def _searched_size(args: tuple, kwargs: dict) -> int | None:
    """The length of the dimension an argmin / argmax / min / max searched: the codebook size when
    the search runs over distances to every code."""
    tensor = args[0] if args else kwargs.get("input")
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if isinstance(dim, int) and hasattr(tensor, "shape") and -tensor.dim() <= dim < tensor.dim():
        return int(tensor.shape[dim])
    return None


class _IndexTap:
    """While a quantizer-like module's forward runs, record the integer indices that argmin /
    argmax / min / max over a dimension return (nearest-code search done inline, codes never
    returned): a TorchFunctionMode for the duration of one forward, with a module stack kept by
    forward pre- and post-hooks. The innermost quantizer on the stack owns each record."""

    def __init__(self, model: Any, batch: int, seen: list[tuple]):
        import torch
        from torch.overrides import TorchFunctionMode

        stack: list[tuple[str, Any]] = []
        searches = {torch.argmin, torch.argmax, torch.min, torch.max, torch.Tensor.argmin, torch.Tensor.argmax,
                    torch.Tensor.min, torch.Tensor.max}

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                if stack and func in searches:
                    ints = _integer_tensors(result, batch)
                    if ints:
                        seen.append((*stack[-1], ints[0], _searched_size(args, kwargs or {})))
                return result

        def enter(mod: Any, _inputs: Any, name: str) -> None:
            stack.append((name, mod))

        def leave(*_: Any) -> None:  # returns None: a forward hook's return value would replace the output
            stack.pop()

        self.mode = Mode()
        self.handles = []
        for name, sub in model.named_modules():
            if name and (QUANTIZER_NAME.search(name) or QUANTIZER_NAME.search(type(sub).__name__)):
                self.handles.append(sub.register_forward_pre_hook(functools.partial(enter, name=name)))
                self.handles.append(sub.register_forward_hook(leave))

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.mode.__exit__(*exc)
        for handle in self.handles:
            handle.remove()


def _integer_tensors(value: Any, batch: int) -> list[Any]:
    """The integer tensors (codes) in a module's or method's output, at least one per example."""
    import torch

    return [t for t in tensors_in(value) if not t.is_floating_point() and not t.is_complex()
            and t.dtype != torch.bool and t.numel() >= batch]


def _watch_quantizer_methods(model: Any, batch: int, seen: list[tuple]) -> list[tuple[Any, str]]:
    """Wrap the methods of every quantizer-like submodule (its name or class says quant / vq /
    codebook) on the instance, so that integer codes an eval path gets from `quantizer.encode(x)`
    (no module forward) are seen. Only a module's outermost call is recorded (`encode` calling its
    own `quantize` is one call). Returns (module, method name) to remove afterwards."""
    import torch

    patched: list[tuple[Any, str]] = []
    for name, sub in model.named_modules():
        if not name or not (QUANTIZER_NAME.search(name) or QUANTIZER_NAME.search(type(sub).__name__)):
            continue
        depth = [0]
        for klass in type(sub).__mro__:
            if klass in (torch.nn.Module, object):
                break
            for method, value in vars(klass).items():
                if (method.startswith("__") or method == "forward" or method in sub.__dict__
                        or not callable(value) or isinstance(value, (type, property))):
                    continue
                try:
                    sub.__dict__[method] = _recording(getattr(sub, method), name, sub, batch, depth, seen)
                except (AttributeError, TypeError, RuntimeError):  # a scripted module: its forward hooks still see
                    continue
                patched.append((sub, method))
    return patched


def _recording(bound: Callable[..., Any], name: str, sub: Any, batch: int, depth: list[int],
               seen: list[tuple]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        try:
            result = bound(*args, **kwargs)
        finally:
            depth[0] -= 1
        if depth[0] == 0 and not any(entry[0] == name for entry in seen):
            ints = _integer_tensors(result, batch)
            if ints:
                seen.append((name, sub, ints[0], None))
        return result
    return call


def _sample_rate_of(module: Any, raw: Any, explicit: int | None) -> tuple[int, str]:
    if explicit:
        return int(explicit), "--sample-rate"
    for attr in ("sample_rate", "sampling_rate", "sr"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value, f"model.{attr}"
    for where, settings in saved_settings(raw):
        for key in ("sample_rate", "sampling_rate", "sr"):
            if isinstance(settings.get(key), int) and settings[key] > 0:
                return int(settings[key]), f"checkpoint {where}[{key!r}]"
    return 16000, "default (the model and checkpoint do not say)"


def _input_channels(module: Any) -> int:
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv1d):
            return int(sub.in_channels) if sub.in_channels <= 2 else 1
    return 1


def forward_adapter(module: Any, sample_rate: int, label: str) -> ForwardAdapter:
    """Find how the model's forward takes audio ([B, C, T] or [B, T]) and which output is the
    reconstruction, on one second of speech-like audio. Raises InputError when no output is
    audio-like."""
    import torch

    from codecdoctor.measure.stimuli import speech_like

    channels = _input_channels(module)
    length = int(sample_rate) // 4  # 0.25 s: a few frames of any codec's hop, and cheap for a big model
    speech = torch.as_tensor(np.asarray(speech_like(0.25, sample_rate, seed=3), dtype=np.float32).reshape(-1)[:length])
    speech = 0.25 * speech / speech.abs().max().clamp_min(1e-6)
    audio = speech[None, None, :].repeat(1, channels, 1)
    failures = []
    for layout in ("BCT", "BT") if channels == 1 else ("BCT",):
        adapter = ForwardAdapter(module, sample_rate, channels=channels, layout=layout)
        try:
            with torch.inference_mode():
                output, codes = adapter.forward_with_codes(audio)
        except Exception as exc:  # noqa: BLE001 - try the other layout, then say what failed
            failures.append(f"[B, {'C, ' if layout == 'BCT' else ''}T] input: {_first_line(exc)}")
            continue
        if adapter.find_reconstruction(output, 1, length) is None:
            failures.append(f"[B, {'C, ' if layout == 'BCT' else ''}T] input gave {_describe(output)}")
            continue
        if codes:
            adapter.hop_samples = max(1, round(length / codes[0].shape[-1]))
        # a model that needs a multiple of its hop: pad inputs to it
        try:
            with torch.inference_mode():
                odd = audio[..., : length - 37]
                ok = adapter.find_reconstruction(adapter._call(odd)[0], 1, odd.shape[-1]) is not None
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            adapter.pad_multiple = adapter.hop_samples or 1024
        return adapter
    raise InputError(f"--model {label}: the model's forward returned nothing audio-like (a floating tensor of the "
                     f"input's length): " + "; ".join(failures))


# --- building from --model SPEC -----------------------------------------------------------------

def _is_module_class(obj: Any) -> bool:
    import torch

    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _is_adapter(obj: Any) -> bool:
    return hasattr(obj, "sample_rate") and (hasattr(obj, "reconstruct") or (hasattr(obj, "encode")
                                                                            and hasattr(obj, "decode")))


def _call_user_code(target: Any, arguments: Arguments, label: str) -> Any:
    try:
        return target(**arguments.kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's class or factory: one line naming the argument
        raise _call_failure(label, arguments, exc, target) from None


def build_from_spec(info: CheckpointInfo, spec: str, model_kwargs: dict | str | None = None, *,
                    sample_rate: int | None = None) -> tuple[Any, ModelLoad, list[str]]:
    """(adapter, ModelLoad, notes) for `--model SPEC`. Raises InputError for a SPEC that does not
    import, a constructor that needs arguments it cannot get, a factory returning nothing usable
    and a forward that returns nothing audio-like."""
    import torch

    obj = load_spec(spec)
    explicit = parse_model_kwargs(model_kwargs)
    label = spec.rpartition(":")[2]
    notes: list[str] = []
    load = ModelLoad(spec=spec, kind="class" if _is_module_class(obj) else "factory", weights_key=info.weights_key)
    adapter = None
    if load.kind == "class":
        arguments = call_arguments(obj, explicit, info.raw, label)
        module = _call_user_code(obj, arguments, label)
        load_weights_strictly(module, info.weights, load)
    else:
        arguments = call_arguments(obj, explicit, info.raw, label, factory=True)
        result = _call_user_code(obj, arguments, label)
        if isinstance(result, tuple) and len(result) == 2:
            module, adapter = result
        elif isinstance(result, torch.nn.Module):
            module = result
        else:
            module, adapter = getattr(result, "module", None), result
        if adapter is not None and not _is_adapter(adapter):
            raise InputError(f"--model: {label} must return an nn.Module, (module, adapter) or an adapter with "
                             "sample_rate and encode/decode (or reconstruct)")
        if adapter is None and not arguments.checkpoint_passed:
            load_weights_strictly(module, info.weights, load)  # built from arguments: weights go in like a class's
        else:
            load.checked = False
            notes.append(f"--model {spec}: the factory loaded the weights itself; C217 did not check them")
    load.kwargs_sources = {k: v for k, v in arguments.sources.items() if v != "the loaded checkpoint"}
    if module is not None and hasattr(module, "eval"):
        module.eval()
    if load.stripped_prefix:
        notes.append(f"weights loaded with the prefix {load.stripped_prefix!r} stripped from their names")
    if load.weight_norm_renamed:
        notes.append(f"{load.weight_norm_renamed} weight-norm tensors mapped between weight_g/weight_v and "
                     "parametrizations.weight.original0/1")
    if adapter is None:
        rate, rate_source = _sample_rate_of(module, info.raw, sample_rate)
        adapter = forward_adapter(module, rate, label)
        notes.append(f"no adapter: driving {label}.forward at {rate} Hz ({rate_source}); input "
                     f"{'[B, C, T]' if adapter.layout == 'BCT' else '[B, T]'}"
                     + (f", codes from {len(adapter.code_modules)} levels ({', '.join(adapter.code_modules[:3])}"
                        f"{' ...' if len(adapter.code_modules) > 3 else ''})" if adapter.code_modules else
                        ", no integer codes returned by any submodule"))
    return adapter, load, notes


def build_adapter(info: CheckpointInfo, model_spec: str | None = None, model_kwargs: dict | str | None = None,
                  *, sample_rate: int | None = None) -> tuple[Any, str, ModelLoad | None]:
    """(adapter or None, a sentence saying what was built or why not, the ModelLoad of `--model`)."""
    if model_spec:
        adapter, load, notes = build_from_spec(info, model_spec, model_kwargs, sample_rate=sample_rate)
        return adapter, "; ".join([f"model built by --model {model_spec}", *notes]), load
    builders: dict[str, Callable[[CheckpointInfo], Any]] = {"codecdoctor-codec": _own_adapter}
    if info.architecture == "encodec":
        builders["encodec"] = _encodec_adapter
    if info.architecture == "dac" and info.config:
        builders["dac"] = _dac_adapter
    builder = builders.get(info.architecture)
    if builder is None or (info.architecture == "codecdoctor-codec" and info.format != OWN_FORMAT):
        what = "an unknown architecture" if info.architecture == "unknown" else f"{info.architecture} weights"
        why = " without the config needed to build it" if info.architecture in ("codecdoctor-codec", "dac") else ""
        return None, (f"{what}{why}: static checks only; pass --model path/to/file.py:ModelClass (or "
                      "pkg.module:factory) to run probes, reconstruction and code histograms"), None
    try:
        return builder(info), f"{info.architecture} model built from the checkpoint", None
    except Exception as exc:  # noqa: BLE001 - weights that do not fit: static checks still run
        return None, f"could not build the {info.architecture} model ({type(exc).__name__}: " \
                     f"{str(exc).splitlines()[0][:160]}): static checks only", None
