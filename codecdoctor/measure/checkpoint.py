"""Safe checkpoint loading and format adapters.

`load_checkpoint_file(path)` never executes a pickle unless asked: it calls
`torch.load(weights_only=True)`, whose unpickler only rebuilds tensors and plain containers and
refuses any other global (a class, `os.system`, `open`, ...). A refusal is reported, not retried.
Files that are not checkpoints (empty, truncated, a zip without `data.pkl`, text) come back with a
`status` and a one-line reason instead of an exception.

Format adapters turn what was loaded into one shape (`CheckpointInfo`): flat model weights plus
whatever training state the container holds (optimizer, grad scaler, config, history, arguments).
Known containers and architectures:
- `codecdoctor-codec/1`: this project's checkpoint (`model/checkpoint.py`);
- a Lightning checkpoint (`state_dict` with module prefixes such as `model.`, plus
  `optimizer_states`, `native_amp_scaling_state`, `hyper_parameters`);
- the `dac` package's `{"state_dict", "metadata": {"kwargs"}}` (as `DAC.save(package=False)`
  writes it) or a raw DAC state dict;
- the `encodec` package's model state dict (`quantizer.vq.layers.N._codebook.{embed, inited, ...}`);
- vector-quantize-pytorch state (`_codebook.{cluster_size, embed, embed_avg, initted}`);
- any other dict of tensors: a raw state dict of an unknown architecture (static checks only).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codecdoctor.core.errors import InputError
from codecdoctor.measure.bound import KNOWN_OUTPUT_BOUND

OWN_FORMAT = "codecdoctor-codec/1"
# Top-level keys of training containers that are not model weights.
_TRAINING_STATE_KEYS = {"optimizer", "optimizer_states", "optimizers", "optimizer_state_dict", "optim", "opt",
                        "opt_state", "scaler", "grad_scaler", "scaler_state_dict", "native_amp_scaling_state",
                        "lr_schedulers", "scheduler", "schedulers", "scheduler_state_dict", "lr_scheduler", "rng",
                        "rng_state", "callbacks", "loops", "hparams", "hyper_parameters", "train_args", "args",
                        "history", "config", "cfg", "metadata", "discriminator_optimizer", "optimizer_d",
                        "optimizer_g", "opt_d", "opt_g"}
# Where hand-written containers keep the model's state dict, in the order they are looked for
# (a checkpoint with both "model" and "ema" weights is judged on "model").
WEIGHT_KEYS = ("model_state_dict", "state_dict", "model", "generator", "codec", "net", "network", "ema",
               "model_ema", "ema_state_dict")
_OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optim", "opt", "opt_state", "optimizer_g", "opt_g")
_SCALER_KEYS = ("scaler", "grad_scaler", "scaler_state_dict", "amp_scaler")
_CONFIG_KEYS = ("config", "model_config", "model_args", "cfg", "model_kwargs")
_ARGS_KEYS = ("args", "train_args", "training_args", "hparams", "hyper_parameters", "opts")


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, in one shape for every format. `weights` maps flat tensor
    names (container prefix stripped, e.g. Lightning's `model.`) to tensors."""

    path: Path
    file_bytes: int = 0
    status: str = "ok"            # ok | unsafe | empty | truncated | not_checkpoint | unreadable
    error: str | None = None      # one line: why it could not be read
    unsafe_global: str | None = None  # the global the safe unpickler refused (e.g. "builtins.open")
    loaded_unsafely: bool = False
    load_seconds: float = 0.0
    # codecdoctor-codec/1 | lightning | encodec | dac | vector-quantize-pytorch | state_dict | unknown
    format: str = "unknown"
    architecture: str = "unknown"  # codecdoctor-codec | encodec | dac | vector-quantize-pytorch | unknown
    prefix: str = ""              # module prefix stripped from the weights (Lightning: "model.")
    weights: dict[str, Any] = field(default_factory=dict)
    optimizer: Any = None         # torch optimizer state_dict (or a list of them)
    scaler: dict | None = None    # GradScaler state_dict
    config: dict | None = None    # model config (own: CodecConfig dict; dac: metadata kwargs)
    train_args: dict | None = None
    history: list[dict] | None = None
    step: int | None = None
    epoch: int | None = None
    weights_key: str | None = None  # the container key the weights came from ("model_state_dict", ...)
    scalars: dict[str, float] = field(default_factory=dict)  # epoch, step, val_snr, loss, ... saved at top level
    raw: Any = None               # the loaded object (not serialised)
    notes: list[str] = field(default_factory=list)

    @property
    def readable(self) -> bool:
        return self.status == "ok"


# --- loading -----------------------------------------------------------------------------------

def _first_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _refused_global(message: str) -> str | None:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message) or re.search(r"GLOBAL ([\w.]+)", message)
    if match:
        return match.group(1)
    match = re.search(r"Unsupported operand (\d+)", message)
    return f"pickle opcode {match.group(1)}" if match else None


def _classify_error(path: Path, exc: BaseException, is_zip: bool) -> tuple[str, str]:
    """(status, one-line reason) for an exception from torch.load."""
    import pickle

    message = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in message:
        refused = _refused_global(message)
        what = f"it needs {refused}" if refused else "it needs code execution"
        return "unsafe", f"refused to unpickle: {what}, which torch.load(weights_only=True) does not run"
    if isinstance(exc, EOFError):
        return "truncated", "the file ends before the pickle does (truncated or empty)"
    if "central directory" in message or "failed reading zip archive" in message:
        return "truncated", "the zip archive has no central directory: the file is truncated (an interrupted write)"
    if is_zip and ("data.pkl" in message or "not in a subdirectory" in message or "archive/" in message):
        return "not_checkpoint", "a zip file, but not a torch checkpoint (no <name>/data.pkl record)"
    if isinstance(exc, (KeyError, ValueError, pickle.UnpicklingError)) or "invalid load key" in message:
        return "not_checkpoint", f"not a torch checkpoint ({type(exc).__name__}: {_first_line(message)[:120]})"
    return "unreadable", f"{type(exc).__name__}: {_first_line(message)}"


def load_checkpoint_file(path: str | os.PathLike, *, unsafe_load: bool = False) -> CheckpointInfo:
    """Load `path` safely and adapt its format. Raises InputError only when the path does not exist
    or is a folder; every other problem is returned as `status` + `error`."""
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass a checkpoint file")
    info = CheckpointInfo(path=path, file_bytes=path.stat().st_size)
    if info.file_bytes == 0:
        info.status, info.error = "empty", "the file is empty (0 bytes)"
        return info
    with path.open("rb") as handle:
        starts_like_zip = handle.read(4) == b"PK\x03\x04"
    try:
        is_zip = zipfile.is_zipfile(path)
    except Exception as exc:  # noqa: BLE001 - zipfile raises BadZipFile on corrupt end records
        info.status = "unreadable"
        info.error = f"the zip archive's directory is corrupt ({_first_line(str(exc))})"
        return info
    if starts_like_zip and not is_zip:
        # A zip's directory is written last: a zip header without an end record is a cut-off write.
        info.status = "truncated"
        info.error = "the zip archive has no central directory: the file is truncated (an interrupted write)"
        return info
    started = time.perf_counter()
    try:
        # mmap maps tensor storages instead of reading them: a 100 MB checkpoint "loads" in
        # milliseconds and pages are read only when a check touches them. Only zip files support it.
        # argparse.Namespace is allowed: training scripts save `"args": args`, and rebuilding one
        # only sets attributes on an inert object (its values still pass the safe unpickler).
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=not unsafe_load, mmap=is_zip)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a traceback
        info.status, info.error = _classify_error(path, exc, is_zip)
        if info.status == "unsafe":
            info.unsafe_global = _refused_global(str(exc))
        info.load_seconds = time.perf_counter() - started
        return info
    info.load_seconds = time.perf_counter() - started
    info.loaded_unsafely = unsafe_load
    info.raw = obj
    try:
        adapt(info, obj)
    except Exception as exc:  # noqa: BLE001 - an odd structure is a finding, never a traceback
        info.status = "not_checkpoint"
        info.error = f"loaded, but its structure is not a checkpoint ({type(exc).__name__}: {_first_line(str(exc))[:120]})"
    return info


# --- format adapters ------------------------------------------------------------------------------

def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def flatten_tensors(obj: Any, prefix: str = "", skip: set[str] | None = None) -> dict[str, Any]:
    """Tensor leaves of nested dicts, named by their dotted path."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if skip and not prefix and str(key) in skip:
                continue
            name = f"{prefix}{key}"
            if _is_tensor(value):
                out[name] = value
            elif isinstance(value, dict):
                out.update(flatten_tensors(value, name + "."))
    return out


# Anchor keys that identify an architecture; `p` captures a container prefix such as "model.".
_ARCHITECTURES = (
    ("codecdoctor-codec", re.compile(r"^(?P<p>.*?)quantizer\.levels\.\d+\.cluster_size$"), ("encoder.", "decoder.")),
    ("encodec", re.compile(r"^(?P<p>.*?)quantizer\.vq\.layers\.\d+\._codebook\.embed$"), ("encoder.model.",)),
    ("dac", re.compile(r"^(?P<p>.*?)quantizer\.quantizers\.\d+\.codebook\.weight$"), ("encoder.block.",)),
    ("vector-quantize-pytorch", re.compile(r"^(?P<p>.*?)(?:layers\.\d+\.)?_codebook\.(?:cluster_size|embed)$"), ()),
)


def detect_architecture(weights: dict[str, Any]) -> tuple[str, str]:
    """(architecture, prefix) from tensor names; ("unknown", "") when nothing matches."""
    for name, pattern, companions in _ARCHITECTURES:
        for key in weights:
            match = pattern.match(key)
            if not match:
                continue
            prefix = match.group("p")
            if name == "vector-quantize-pytorch":
                # vqp nests anywhere; take the prefix of the quantizer module itself
                return name, ""
            if all(any(k.startswith(prefix + c) for k in weights) for c in companions):
                return name, prefix
    return "unknown", ""


def _strip(weights: dict[str, Any], prefix: str) -> dict[str, Any]:
    if not prefix:
        return dict(weights)
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def adapt(info: CheckpointInfo, obj: Any) -> None:
    """Fill `info` from a loaded object (see the module doc for the formats)."""
    if _is_tensor(obj) or not isinstance(obj, dict):
        info.status = "not_checkpoint"
        info.error = f"the file holds a {type(obj).__name__}, not a dict of tensors"
        return
    if obj.get("format") == OWN_FORMAT:
        info.format = info.architecture = OWN_FORMAT
        info.architecture = "codecdoctor-codec"
        info.weights = flatten_tensors(obj.get("model") or {})
        info.optimizer, info.scaler = obj.get("optimizer"), obj.get("scaler")
        info.config = obj.get("config") if isinstance(obj.get("config"), dict) else None
        info.train_args = obj.get("train_args") if isinstance(obj.get("train_args"), dict) else None
        info.history = obj.get("history") if isinstance(obj.get("history"), list) else None
        info.step, info.epoch = _int_or_none(obj.get("step")), _int_or_none(obj.get("epoch"))
        return
    if "pytorch-lightning_version" in obj or ("state_dict" in obj and ("optimizer_states" in obj or "global_step" in obj)):
        info.format = "lightning"
        weights = flatten_tensors(obj.get("state_dict") or {})
        info.architecture, info.prefix = detect_architecture(weights)
        if info.architecture == "unknown":
            info.prefix = _common_module_prefix(weights)
        info.weights = _strip(weights, info.prefix) if info.architecture != "unknown" else weights
        states = obj.get("optimizer_states") or []
        info.optimizer = states[0] if len(states) == 1 else (states or None)
        info.scaler = obj.get("native_amp_scaling_state")
        hparams = obj.get("hyper_parameters")
        info.config = dict(hparams) if isinstance(hparams, dict) else None
        info.train_args = info.config
        info.step, info.epoch = _int_or_none(obj.get("global_step")), _int_or_none(obj.get("epoch"))
        return
    if isinstance(obj.get("state_dict"), dict) and isinstance(obj.get("metadata"), dict):
        weights = flatten_tensors(obj["state_dict"])
        arch, prefix = detect_architecture(weights)
        info.format = "dac" if arch == "dac" else "state_dict"
        info.architecture, info.prefix, info.weights = arch, prefix, _strip(weights, prefix)
        kwargs = obj["metadata"].get("kwargs")
        info.config = dict(kwargs) if isinstance(kwargs, dict) else None
        return
    # A hand-written container ({"epoch", "model_state_dict", "optimizer_state_dict", "args", ...})
    # or a raw state dict, possibly nested ({"generator": {...}, "optimizer": {...}}).
    weights_key = next((key for key in WEIGHT_KEYS if isinstance(obj.get(key), dict)
                        and flatten_tensors(obj[key])), None)
    if weights_key is not None:
        inner = obj[weights_key]
        if isinstance(inner.get("state_dict"), dict) and not any(_is_tensor(v) for v in inner.values()):
            inner = inner["state_dict"]  # {"model": {"state_dict": ...}}
        weights = flatten_tensors(inner)
        info.weights_key = weights_key
    else:
        weights = flatten_tensors(obj, skip=_TRAINING_STATE_KEYS)
    if not weights:
        info.status = "not_checkpoint"
        info.error = "a dict without any tensors: " + ", ".join(map(str, list(obj)[:8]))
        return
    for key in _OPTIMIZER_KEYS:
        if isinstance(obj.get(key), (dict, list)) and info.optimizer is None:
            info.optimizer = obj[key]
    for key in _SCALER_KEYS:
        if isinstance(obj.get(key), dict) and info.scaler is None:
            info.scaler = obj[key]
    info.config = next((_as_dict(obj[k]) for k in _CONFIG_KEYS if _as_dict(obj.get(k)) is not None), None)
    info.train_args = next((_as_dict(obj[k]) for k in _ARGS_KEYS if _as_dict(obj.get(k)) is not None), None)
    info.step = next((_int_or_none(obj[k]) for k in ("step", "global_step", "iteration", "iter") if k in obj), None)
    info.epoch = _int_or_none(obj.get("epoch"))
    info.scalars, info.history = scalar_metadata(obj)
    arch, prefix = detect_architecture(weights)
    if arch == "unknown":
        wrapper = _wrapper_prefix(weights)
        if wrapper:
            weights, prefix = _strip(weights, wrapper), wrapper
            info.notes.append(f"stripped the wrapper prefix {wrapper!r} from every weight name "
                              "(DataParallel / DistributedDataParallel / torch.compile)")
            arch, _ = detect_architecture(weights)
    info.architecture, info.prefix = arch, prefix
    info.weights = _strip(weights, prefix) if arch != "unknown" else weights
    info.format = arch if arch in ("encodec", "dac", "vector-quantize-pytorch") else "state_dict"


def _as_dict(value: Any) -> dict | None:
    """A saved config or argument set as a dict (argparse.Namespace included)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, argparse.Namespace):
        return vars(value)
    return None


# DataParallel / DDP save `module.` in front of every name, torch.compile `_orig_mod.`.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _wrapper_prefix(weights: dict[str, Any]) -> str:
    """The wrapper prefix(es) every weight name starts with, e.g. "module._orig_mod."."""
    prefix = ""
    while True:
        for wrapper in WRAPPER_PREFIXES:
            if weights and all(k.startswith(prefix + wrapper) for k in weights):
                prefix += wrapper
                break
        else:
            return prefix


# Scalar metadata a hand-written training loop saves next to the weights. A validation SNR in any
# of these names (a single number or a list per epoch) is what C208 judges.
_SNR_KEYS = ("val_snr_db", "val_snr", "valid_snr", "validation_snr", "eval_snr", "snr_db", "snr",
             "best_val_snr_db", "best_val_snr", "best_snr_db", "best_snr")
_LOSS_KEYS = ("val_loss", "valid_loss", "validation_loss", "best_val_loss", "best_loss", "loss", "train_loss")
_HISTORY_KEYS = ("history", "metrics", "log", "logs", "stats", "train_history")


def _number(value: Any) -> float | None:
    if _is_tensor(value):
        return float(value) if value.numel() == 1 else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _numbers(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and value and all(_number(v) is not None for v in value):
        return [_number(v) for v in value]
    if _is_tensor(value) and value.dim() == 1 and value.numel() > 1 and value.is_floating_point():
        return [float(v) for v in value]
    return None


def _snr_key(key: str) -> str | None:
    """"best" for a best-so-far SNR, "val" for a per-epoch / latest one, None for anything else."""
    key = key.lower()
    if "snr" not in key or "si_snr" in key or "seg" in key or "train" in key:
        return None
    return "best" if "best" in key or "max" in key else "val"


def scalar_metadata(obj: dict) -> tuple[dict[str, float], list[dict[str, Any]] | None]:
    """(scalars, history) from a hand-written container: the numbers it saved at top level (epoch,
    step, val_snr, best_snr, loss, ...) and a per-epoch history with `val_snr_db` entries, built
    from a list of dicts or from lists of numbers (`val_snrs`, `history["val_snr"]`, ...)."""
    scalars: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    rows: list[dict[str, Any]] | None = None
    for key, value in obj.items():
        key = str(key)
        number = _number(value)
        if number is not None and math.isfinite(number) and (key in _SNR_KEYS or key in _LOSS_KEYS
                                                             or _snr_key(key) or key in ("epoch", "step")):
            scalars[key] = number
        values = _numbers(value)
        if values is not None and (_snr_key(key) or "loss" in key.lower()):
            series[key] = values
        if key in _HISTORY_KEYS:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                rows = [dict(v) for v in value]
            elif isinstance(value, dict):
                for sub, sub_value in value.items():
                    values = _numbers(sub_value)
                    if values is not None and (_snr_key(str(sub)) or "loss" in str(sub).lower()):
                        series[str(sub)] = values
    if rows is not None:
        for row in rows:
            if not isinstance(row.get("val_snr_db"), (int, float)):
                snr = next((_number(row[k]) for k in row if _snr_key(str(k)) == "val" and _number(row[k]) is not None),
                           None)
                if snr is not None:
                    row["val_snr_db"] = snr
        return scalars, rows
    val_series = next((v for k, v in series.items() if _snr_key(k) == "val"), None)
    if val_series:
        return scalars, [{"epoch": i, "val_snr_db": v} for i, v in enumerate(val_series)]
    latest = next((scalars[k] for k in scalars if _snr_key(k) == "val"), None)
    best = next((scalars[k] for k in scalars if _snr_key(k) == "best"), None)
    if latest is None and best is None:
        return scalars, None
    epoch = int(scalars.get("epoch", 0))
    row = {"epoch": epoch, "val_snr_db": latest if latest is not None else best}
    if best is not None:
        row["best_val_snr_db"] = best
    return scalars, [row]


def _common_module_prefix(weights: dict[str, Any]) -> str:
    first = {key.split(".", 1)[0] for key in weights if "." in key}
    return f"{first.pop()}." if len(first) == 1 and all("." in k for k in weights) else ""


# --- facts the checks read ----------------------------------------------------------------------

KNOWN_LOSS_FFT_SIZES = {
    # the spectral losses each family's reference training uses
    "encodec": [2 ** i for i in range(5, 12)],       # EnCodec: mel loss over windows 2^5 ... 2^11
    "dac": [32, 64, 128, 256, 512, 1024, 2048],        # DAC: multi-scale mel windows
}


def learning_rates(info: CheckpointInfo) -> dict[str, float]:
    """Learning rates recorded anywhere in the checkpoint: configured, initial (scheduler) and current."""
    out: dict[str, float] = {}
    for source in (info.train_args or {}, info.config or {}):
        for key in ("learning_rate", "lr"):
            if isinstance(source.get(key), (int, float)) and "configured" not in out:
                out["configured"] = float(source[key])
    optimizers = info.optimizer if isinstance(info.optimizer, list) else [info.optimizer]
    for opt in optimizers:
        groups = opt.get("param_groups") if isinstance(opt, dict) else None
        if groups:
            group = groups[0]
            if isinstance(group.get("lr"), (int, float)):
                out.setdefault("current", float(group["lr"]))
            if isinstance(group.get("initial_lr"), (int, float)):
                out.setdefault("initial", float(group["initial_lr"]))
            if "betas" in group:
                out.setdefault("adam_family", 1.0)
    if info.history:
        first = info.history[0] if isinstance(info.history[0], dict) else {}
        if isinstance(first.get("lr"), (int, float)):
            out.setdefault("history_first", float(first["lr"]))
    return out


def output_bound(info: CheckpointInfo) -> str | None:
    """"tanh" / "none" / a clamp, when the checkpoint says; None when unknown."""
    if info.architecture == "codecdoctor-codec" and info.config:
        return info.config.get("output_bound")
    return KNOWN_OUTPUT_BOUND.get(info.architecture)


def input_scale_normalised(info: CheckpointInfo) -> str | None:
    """Where the checkpoint says the model normalises its input's scale inside the model (EnCodec's
    `audio_normalize`: x / rms(x) in, output × rms(x) out, so the scale survives the codec): the
    key path and value, or None. A model config's `normalize` counts; a training argument of that
    name does not (it is as likely to be the dataset's per-crop normalisation, which destroys scale)."""
    sources = [("config", info.config or {}, ("audio_normalize", "normalize")),
               ("train_args", info.train_args or {}, ("audio_normalize",))]
    for where, source, keys in sources:
        for path, value in _flat_items(source):
            if path.rsplit(".", 1)[-1] in keys and value is True:
                return f"{where}.{path}=True"
    return None


def _flat_items(source: dict, prefix: str = "", depth: int = 2):
    """(dotted key, value) of a saved config, nested dicts (hydra's model / codec groups) included."""
    for key, value in source.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 0:
            yield from _flat_items(value, path + ".", depth - 1)
        else:
            yield path, value


def bitrate(info: CheckpointInfo) -> dict[str, float] | None:
    """Real bitrate from frame rate × codebooks × log2(codebook size), when both are known."""
    import math

    from codecdoctor.measure.quantizer import quantizer_levels_from_state

    levels = quantizer_levels_from_state(info.weights)
    config = info.config or {}
    sample_rate = hop = None
    if info.architecture == "codecdoctor-codec" and config:
        sample_rate = config.get("sample_rate")
        strides = config.get("strides") or []
        hop = math.prod(int(s) for s in strides) if strides else None
        n_q = int(config.get("n_codebooks", len(levels)))
        bits = n_q * math.log2(int(config.get("codebook_size", 1024)))
    elif levels:
        if info.architecture == "encodec" and len(levels) == 32 and levels[0].codebook_size == 1024 \
                and not any(k.startswith("encoder.model.0.conv.conv.weight_v") and v.shape[1] == 2
                            for k, v in info.weights.items()):
            # the released mono 24 kHz model: strides 8·5·4·2 = 320, 32 levels × 1024 codes. Other
            # EnCodec configurations do not record their strides in the weights: bitrate unknown.
            sample_rate, hop = 24000, 320
        elif info.architecture == "dac" and config:
            sample_rate = config.get("sample_rate", 44100)
            hop = math.prod(int(r) for r in config.get("encoder_rates", [2, 4, 8, 8]))
        bits = sum(math.log2(lv.codebook_size) for lv in levels)
    else:
        return None
    if not sample_rate or not hop:
        return {"bits_per_frame": bits}
    frame_rate = float(sample_rate) / float(hop)
    bps = frame_rate * bits
    channels = int(config.get("channels", 1)) if isinstance(config.get("channels", 1), int) else 1
    pcm = float(sample_rate) * 16 * channels
    return {"bitrate_bps": bps, "frame_rate_hz": frame_rate, "bits_per_frame": bits, "sample_rate": float(sample_rate),
            "bits_per_sample": bps / (float(sample_rate) * channels), "compression_ratio_vs_pcm16": pcm / bps if bps else 0.0}


# --- static measurements --------------------------------------------------------------------------

# Weight RMS above this is far outside anything a trained conv codec holds: Kaiming-initialised
# conv weights have RMS ≈ sqrt(2 / fan_in) ≈ 0.01-0.3, weight-norm gains ≈ 1-10. 100 is 300x the
# usual scale - the signature of a diverged run (or of an fp16 overflow right before the save).
EXPLODING_RMS = 100.0
# A weight matrix (ndim >= 2) whose RMS is below this is numerically all zeros: a layer that died
# (e.g. weight decay with no gradient) or was never loaded.
VANISHING_RMS = 1e-8
_HALF_DTYPES = ("float16", "bfloat16")
# Tensors that are statistics, not weights: optimizer moments, EMA codebook sums and counts,
# usage counters, normalisation statistics. Their scale says nothing about divergence (an EMA count
# is "tokens per batch", hundreds or thousands), so C202 never judges them; C201/C203 still count
# their non-finite values.
_STATISTIC_LEAF = re.compile(
    r"^(exp_avg|exp_avg_sq|max_exp_avg_sq|momentum_buffer|square_avg|acc_delta|sum|step|cluster_size|embed_avg|"
    r"num_batches_tracked|running_mean|running_var|initted|inited|usage|code_usage|codebook_usage|usage_counts?|"
    r"counts?|code_counts?|ema_counts?|ema_usage|hits|code_hits|histogram|freq|frequency|utilization|"
    r"[a-z_]*_(count|counts|usage|hits))$")


def is_statistic(name: str) -> bool:
    """True for optimizer moments, EMA sums and counts, usage counters: not weights."""
    return bool(_STATISTIC_LEAF.match(name.rsplit(".", 1)[-1]))


@dataclass
class TensorIssue:
    name: str
    shape: list[int]
    dtype: str
    nonfinite: int = 0
    numel: int = 0
    rms: float | None = None


@dataclass
class CheckpointMeasurements:
    """Static facts about one checkpoint: what the C2xx checks read (JSON: `measurements`)."""

    path: str
    file_bytes: int
    status: str
    error: str | None = None
    unsafe_global: str | None = None
    loaded_unsafely: bool = False
    format: str = "unknown"
    architecture: str = "unknown"
    prefix: str = ""
    parameters: int = 0               # elements of all floating-point tensors in the weights
    tensors: int = 0
    tensors_nonfinite: list[TensorIssue] = field(default_factory=list)
    optimizer_tensors: int = 0
    optimizer_nonfinite: list[TensorIssue] = field(default_factory=list)
    weights_exploding: list[TensorIssue] = field(default_factory=list)
    weights_vanishing: list[TensorIssue] = field(default_factory=list)
    largest_weight_rms: float | None = None
    largest_weight_rms_name: str | None = None
    half_precision_tensors: list[str] = field(default_factory=list)
    scaler_scale: float | None = None
    scaler_growth_tracker: int | None = None
    output_bound: str | None = None
    # the saved setting that says the model divides each input by its own scale and multiplies the
    # output back (EnCodec's `audio_normalize`), e.g. "config.audio_normalize=True"; None when none says so
    input_scale_normalised: str | None = None
    data_peak: float | None = None    # max |x| of the --data crops, when given
    bitrate: dict[str, float] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    scalars: dict[str, float] = field(default_factory=dict)  # epoch, step, val_snr, loss saved at top level
    statistics_skipped: int = 0       # counters and moments C202 does not judge as weights
    # What shows the run used half precision (a GradScaler state, fp16/bf16 tensors, an amp flag in
    # the saved arguments); empty when nothing does.
    half_precision_evidence: list[str] = field(default_factory=list)
    weights_key: str | None = None
    learning_rates: dict[str, float] = field(default_factory=dict)
    resumed_or_finetuned: bool = False
    step: int | None = None
    epoch: int | None = None
    load_seconds: float = 0.0
    scan_seconds: float = 0.0


def _dtype(tensor: Any) -> str:
    return str(tensor.dtype).replace("torch.", "")


def _scan(name: str, tensor: Any) -> tuple[int, float | None]:
    """(non-finite count, RMS over finite values) of a float tensor, reading it once and copying
    nothing in the common case: the float32 norm is finite exactly when every value is finite
    (unless squares overflow float32, beyond |x| ~ 1e19: then the exact path below decides).
    One vectorised norm reads each value once and copies nothing, where isfinite and a float64
    copy make two passes and a copy: that keeps the static check near a bare torch.load."""
    import torch

    flat = tensor.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return 0, None
    norm = float(torch.linalg.vector_norm(flat, dtype=torch.float32 if flat.dtype != torch.float64 else None))
    if math.isfinite(norm):
        return 0, norm / math.sqrt(n)
    finite = torch.isfinite(flat)
    nonfinite = int(n - int(finite.sum()))
    values = flat[finite] if nonfinite else flat
    rms = float(values.double().square().mean().sqrt()) if values.numel() else None
    return nonfinite, rms


def _optimizer_tensors(optimizer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    optimizers = optimizer if isinstance(optimizer, list) else [optimizer]
    for index, opt in enumerate(optimizers):
        if isinstance(opt, dict) and isinstance(opt.get("state"), dict):
            tag = f"optimizer[{index}]." if len(optimizers) > 1 else "optimizer."
            for param_id, state in opt["state"].items():
                if isinstance(state, dict):
                    for key, value in state.items():
                        if _is_tensor(value):
                            out[f"{tag}state[{param_id}].{key}"] = value
    return out


def measure_static(info: CheckpointInfo) -> CheckpointMeasurements:
    """One pass over every tensor: counts, non-finite values, RMS, dtypes; plus training state."""
    m = CheckpointMeasurements(path=str(info.path.name), file_bytes=info.file_bytes, status=info.status,
                               error=info.error, unsafe_global=info.unsafe_global,
                               loaded_unsafely=info.loaded_unsafely, format=info.format,
                               architecture=info.architecture, prefix=info.prefix, load_seconds=info.load_seconds)
    if not info.readable:
        return m
    started = time.perf_counter()
    largest = (-1.0, None)
    for name, tensor in info.weights.items():
        m.tensors += 1
        if not tensor.is_floating_point():
            continue
        m.parameters += tensor.numel()
        nonfinite, rms = _scan(name, tensor)
        issue = TensorIssue(name, list(tensor.shape), _dtype(tensor), nonfinite, tensor.numel(), rms)
        if nonfinite:
            m.tensors_nonfinite.append(issue)
        if _dtype(tensor) in _HALF_DTYPES:
            m.half_precision_tensors.append(name)
        if is_statistic(name):
            m.statistics_skipped += 1
            continue
        if rms is not None and rms > largest[0]:
            largest = (rms, name)
        if rms is not None and rms > EXPLODING_RMS:
            m.weights_exploding.append(issue)
        elif tensor.dim() >= 2 and tensor.numel() > 1 and (rms is None or rms < VANISHING_RMS) \
                and not name.endswith(("embed", "embed_avg")):  # an uninitialised codebook is Q404's
            m.weights_vanishing.append(issue)
    if largest[1] is not None:
        m.largest_weight_rms, m.largest_weight_rms_name = largest
    for name, tensor in _optimizer_tensors(info.optimizer).items():
        m.optimizer_tensors += 1
        if tensor.is_floating_point():
            nonfinite, _ = _scan(name, tensor)
            if nonfinite:
                m.optimizer_nonfinite.append(TensorIssue(name, list(tensor.shape), _dtype(tensor), nonfinite,
                                                         tensor.numel()))
    if isinstance(info.scaler, dict) and info.scaler.get("scale") is not None:
        scale = info.scaler["scale"]
        m.scaler_scale = float(scale.item() if _is_tensor(scale) else scale)
        m.scaler_growth_tracker = _int_or_none(info.scaler.get("_growth_tracker"))
    m.output_bound = output_bound(info)
    m.input_scale_normalised = input_scale_normalised(info)
    m.bitrate = bitrate(info)
    m.history = [h for h in (info.history or []) if isinstance(h, dict)]
    m.learning_rates = learning_rates(info)
    args = {**(info.config or {}), **(info.train_args or {})} if info.format == "lightning" else (info.train_args or {})
    m.resumed_or_finetuned = any(bool(args.get(k)) for k in ("resume", "resume_from", "init_from", "pretrained",
                                                             "finetune", "ckpt_path"))
    m.step, m.epoch = info.step, info.epoch
    m.scalars, m.weights_key = dict(info.scalars), info.weights_key
    m.half_precision_evidence = half_precision_evidence(info, m)
    m.scan_seconds = time.perf_counter() - started
    return m


_AMP_FLAGS = ("amp", "use_amp", "fp16", "bf16", "half", "mixed_precision", "autocast", "use_fp16", "use_bf16")
_HALF_PRECISION_VALUES = ("16", "16-mixed", "bf16", "bf16-mixed", "fp16", "float16", "bfloat16", "half", "true")


def half_precision_evidence(info: CheckpointInfo, m: CheckpointMeasurements) -> list[str]:
    """Why we believe the run trained in half precision, one phrase per piece of evidence."""
    evidence = []
    if isinstance(info.scaler, dict) and info.scaler:
        evidence.append("a GradScaler state is saved")
    if m.half_precision_tensors:
        evidence.append(f"{len(m.half_precision_tensors)} fp16/bf16 tensors, e.g. {m.half_precision_tensors[0]}")
    for source in (info.train_args or {}, info.config or {}):
        for key in ("precision", "amp_dtype", "dtype", *_AMP_FLAGS):
            value = source.get(key)
            if value is None or value is False:
                continue
            text = str(value).lower()
            if (key in _AMP_FLAGS and value is True) or text in _HALF_PRECISION_VALUES:
                evidence.append(f"saved argument {key}={value!r}")
    return evidence
