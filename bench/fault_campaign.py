"""Fault campaign: corrupt valid audio files and checkpoints N ways, run every command on them.

Usage:  ./run bench fault_campaign [--n 100] [--timeout 120] [--workers 2] [--seed 0]
        .venv/bin/python bench/fault_campaign.py --n 20 --commands audit-data,check-ckpt

What it does. From a few valid inputs (speech-like WAV PCM16 / WAV float / FLAC files, and a real
checkpoint of the built-in codec) it generates N corrupted variants of each kind:
  audio:       truncation at a random offset (header or data), random byte flips in the header,
               random byte flips in the data, wrong chunk sizes (RIFF / fmt / data sizes; FLAC
               metadata block lengths), nonsense header fields (0 channels, 0 Hz, 7-bit samples),
               empty files and random garbage with an audio extension;
  checkpoint:  truncated zip, flipped bytes, missing keys, wrong shapes, tensors of the wrong dtype,
               non-finite values in every tensor family (weights, biases, codebooks, EMA buffers,
               optimizer moments; `check-ckpt FOLDER` also runs once over a folder of such copies),
               wrongly typed config/history values, a top level that is not a dict.
Then it runs each command as a subprocess (`.venv/bin/codecdoctor ...`, with a timeout) and sorts
every run into one of:
  crash   - a "Traceback" in stdout/stderr, the CLI's "internal error" line (an exception nobody
            handled: the CLI hides the traceback but it is still a bug), or an exit code not in {0,1,2};
  hang    - the run passed the timeout (it is killed);
  wrong   - the exit code or report contradicts the design for this input: a corrupt input that
            soundfile / torch.load(weights_only=True) cannot read must give a finding at error
            (exit 1 at the default --fail-on error) or a one-line input error (exit 2), never exit 0;
            a corrupt file inside an audited folder must be named in the report (D100 or the file's
            `error` field) while the rest is still audited;
  ok      - anything else;
  not built - the command answered "not built yet" (exit 2): reported as not covered, never as a pass.

The ground truth for "corrupt" is measured, not assumed: a flipped data byte usually leaves a
perfectly valid file, so each variant is first read with soundfile (audio) or loaded with
torch.load(weights_only=True) and built with model.checkpoint.build_codec (checkpoints).

Crashes are re-run with CODECDOCTOR_DEBUG=1 to capture the traceback head; every failing input is
kept under --workdir with the exact command line that reproduces it.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import dataclasses
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOT_BUILT_MARK = "not built yet"
ALL_COMMANDS = ("audit-data", "compare", "compare-folders", "check-ckpt", "check-ckpt-data", "check-ckpt-folder", "probe",
                "train-resume")


# --------------------------------------------------------------------------------------------
# running one command
# --------------------------------------------------------------------------------------------
def codecdoctor_argv() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "codecdoctor"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "codecdoctor"]


@dataclasses.dataclass
class RunResult:
    argv: list[str]
    returncode: int | None  # None = killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def hung(self) -> bool:
        return self.returncode is None

    @property
    def not_built(self) -> bool:
        return self.returncode == 2 and NOT_BUILT_MARK in self.stderr

    @property
    def usage_error(self) -> bool:
        """The campaign called the command wrongly (its own bug): the run tested nothing."""
        return self.returncode == 2 and any(m in self.stderr for m in ("Usage:", "No such option", "unexpected extra argument"))

    @property
    def crashed(self) -> bool:
        if self.hung:
            return False
        text = self.stdout + self.stderr
        return ("Traceback" in text or "internal error" in self.stderr
                or self.returncode not in (0, 1, 2))

    def stderr_head(self, lines: int = 3) -> str:
        kept = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])


def run_command(args: list[str], *, cwd: Path, timeout_s: float, debug: bool = False) -> RunResult:
    """Run `codecdoctor ARGS` in its own process group; on timeout kill the whole group."""
    # every run gets its own cwd, so a relative input path would silently test "file not found"
    relative = [a for a in args if isinstance(a, Path) and not a.is_absolute()]
    if relative:
        raise ValueError(f"campaign bug: relative input paths {relative} (each run has its own cwd)")
    env = dict(os.environ)
    env.update({"COLUMNS": "120", "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONHASHSEED": "0"})
    env.pop("CODECDOCTOR_DEBUG", None)
    if debug:
        env["CODECDOCTOR_DEBUG"] = "1"
    argv = codecdoctor_argv() + [str(a) for a in args]
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        code = None
    return RunResult(argv, code, out, err, time.monotonic() - start)


# --------------------------------------------------------------------------------------------
# valid inputs
# --------------------------------------------------------------------------------------------
def make_valid_audio(folder: Path, seconds: float = 1.5) -> list[Path]:
    """Three small valid files in the formats people train on."""
    import soundfile as sf

    from codecdoctor.measure.stimuli import speech_like

    folder.mkdir(parents=True, exist_ok=True)
    x = speech_like(seconds, 16000, seed=1)
    stereo = speech_like(seconds, 16000, seed=2, channels=2)
    files = [
        (folder / "pcm16.wav", x, "PCM_16"),
        (folder / "float.wav", x, "FLOAT"),
        (folder / "stereo24.wav", stereo, "PCM_24"),
        (folder / "speech.flac", x, "PCM_16"),
    ]
    for path, data, subtype in files:
        sf.write(path, data, 16000, subtype=subtype)
    return [p for p, _, _ in files]


def make_valid_state(seed: int = 0) -> dict[str, Any]:
    """A real checkpoint state of the built-in codec (tiny config) after two optimizer steps, so
    the optimizer state has tensors too. Falls back to a plain state_dict when model/ is absent."""
    import torch

    torch.manual_seed(seed)
    try:
        from codecdoctor_model.codec import Codec
        from codecdoctor_model.config import CodecConfig
    except Exception:  # model/ not there yet: a foreign-style plain state dict
        net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 7), torch.nn.Conv1d(4, 1, 7))
        return {"model": net.state_dict()}
    cfg = CodecConfig.tiny()
    codec = Codec(cfg)
    opt = torch.optim.Adam(codec.parameters(), lr=1e-3)
    x = torch.randn(2, 1, 1600) * 0.1
    for _ in range(2):
        out = codec(x)
        loss = (out.audio - x).abs().mean() + out.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    history = [{"epoch": 1, "step": 2, "train_loss": float(loss.detach()), "val_snr_db": 1.5,
                "val_si_snr_db": 1.0, "val_mel_distance": 2.0, "lr": 1e-3}]
    return {"config": cfg.to_dict(), "model": codec.state_dict(), "optimizer": opt.state_dict(),
            "scaler": None, "scheduler": None, "step": 2, "epoch": 1, "history": history,
            "train_args": {"learning_rate": 1e-3, "batch_size": 2}}


def save_state(path: Path, state: Any) -> None:
    import torch

    if isinstance(state, dict) and "config" in state and "format" not in state:
        try:
            from codecdoctor_model.checkpoint import FORMAT
            state = {"format": FORMAT, **state}
        except Exception:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


# --------------------------------------------------------------------------------------------
# audio corruptions
# --------------------------------------------------------------------------------------------
def wav_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(chunk id, offset of the size field, payload size) for each chunk after 'RIFF....WAVE'."""
    chunks = []
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        chunks.append((cid, pos + 4, size))
        pos += 8 + size + (size & 1)
    return chunks


def audio_header_length(data: bytes) -> int:
    """Bytes before the first audio sample: WAV up to the data payload, FLAC up to the first frame."""
    if data[:4] == b"RIFF":
        for cid, size_at, _ in wav_chunks(data):
            if cid == b"data":
                return size_at + 4
        return min(len(data), 44)
    if data[:4] == b"fLaC":
        pos = 4
        while pos + 4 <= len(data):
            header = data[pos]
            length = int.from_bytes(data[pos + 1:pos + 4], "big")
            pos += 4 + length
            if header & 0x80:
                break
        return min(pos, len(data))
    return min(len(data), 64)


def _flip(data: bytearray, lo: int, hi: int, count: int, rng: random.Random) -> list[int]:
    hi = max(hi, lo + 1)
    offsets = []
    for _ in range(count):
        at = rng.randrange(lo, min(hi, len(data)))
        data[at] ^= rng.randrange(1, 256)
        offsets.append(at)
    return offsets


def corrupt_truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    head = audio_header_length(data)
    if rng.random() < 0.4:  # inside the header: the nastiest place to stop
        cut = rng.randrange(0, max(1, head))
    else:
        cut = rng.randrange(head, len(data))
    return data[:cut], f"truncated at byte {cut} of {len(data)} (header is {head} bytes)"


def corrupt_flip_header(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    offsets = _flip(out, 0, audio_header_length(data), rng.randint(1, 4), rng)
    return bytes(out), f"header bytes flipped at {offsets}"


def corrupt_flip_data(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    offsets = _flip(out, audio_header_length(data), len(data), rng.randint(1, 64), rng)
    return bytes(out), f"{len(offsets)} data bytes flipped"


_SIZE_VALUES = (0, 1, 3, 7, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFF0)


def corrupt_chunk_size(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    if data[:4] == b"RIFF":
        targets = [("RIFF", 4)] + [(cid.decode("latin-1"), at) for cid, at, _ in wav_chunks(data)]
        name, at = rng.choice(targets)
        value = rng.choice(_SIZE_VALUES + (rng.randrange(0, 2 * len(data)),))
        struct.pack_into("<I", out, at, value)
        return bytes(out), f"WAV {name!r} chunk size set to {value}"
    if data[:4] == b"fLaC":
        # metadata block lengths are 24-bit big endian after the 1-byte block header
        blocks = []
        pos = 4
        while pos + 4 <= len(data):
            blocks.append(pos)
            length = int.from_bytes(data[pos + 1:pos + 4], "big")
            last = data[pos] & 0x80
            pos += 4 + length
            if last:
                break
        at = rng.choice(blocks)
        value = rng.choice((0, 1, 33, 0xFFFFFF, rng.randrange(0, 1 << 24)))
        out[at + 1:at + 4] = value.to_bytes(3, "big")
        return bytes(out), f"FLAC metadata block at byte {at} length set to {value}"
    return corrupt_truncate(data, rng)


def corrupt_header_fields(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Plausible-looking headers with impossible numbers: the division-by-zero class of bug."""
    out = bytearray(data)
    if data[:4] == b"RIFF":
        for cid, size_at, _ in wav_chunks(data):
            if cid == b"fmt ":
                base = size_at + 4  # audio_format(2) channels(2) rate(4) byte_rate(4) align(2) bits(2)
                field, fmt, offset, values = rng.choice([
                    ("channels", "<H", 2, (0, 255, 65535)),
                    ("sample_rate", "<I", 4, (0, 1, 7, 0xFFFFFFFF)),
                    ("block_align", "<H", 12, (0, 1, 3)),
                    ("bits_per_sample", "<H", 14, (0, 7, 64, 65535)),
                    ("audio_format", "<H", 0, (0, 2, 0xFFFE, 1234)),
                ])
                value = rng.choice(values)
                struct.pack_into(fmt, out, base + offset, value)
                return bytes(out), f"WAV fmt {field} set to {value}"
    if data[:4] == b"fLaC":
        # STREAMINFO starts at byte 8: min/max block size (2+2), min/max frame size (3+3), then
        # 20 bits sample rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples.
        si = 8
        choice = rng.choice(("sample_rate_zero", "blocksize_zero", "total_samples_huge"))
        if choice == "sample_rate_zero":
            out[si + 10] = 0
            out[si + 11] = 0
            out[si + 12] &= 0x0F
        elif choice == "blocksize_zero":
            out[si:si + 4] = b"\x00\x00\x00\x00"
        else:
            out[si + 13] |= 0x0F
            out[si + 14:si + 18] = b"\xff\xff\xff\xff"
        return bytes(out), f"FLAC STREAMINFO {choice}"
    return corrupt_flip_header(data, rng)


def corrupt_empty(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return b"", "empty file (0 bytes)"


def corrupt_garbage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = rng.choice((1, 4, 44, 1000, 20000))
    return bytes(rng.randrange(256) for _ in range(n)), f"{n} random bytes"


def corrupt_header_only(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return data[:audio_header_length(data)], "header only, no samples"


AUDIO_CORRUPTIONS: dict[str, Callable[[bytes, random.Random], tuple[bytes, str]]] = {
    "truncate": corrupt_truncate,
    "flip-header": corrupt_flip_header,
    "flip-data": corrupt_flip_data,
    "chunk-size": corrupt_chunk_size,
    "header-fields": corrupt_header_fields,
    "header-only": corrupt_header_only,
    "empty": corrupt_empty,
    "garbage": corrupt_garbage,
}


@dataclasses.dataclass
class Variant:
    name: str          # file name of the variant
    kind: str          # corruption kind
    source: str        # the valid input it came from
    detail: str        # what exactly was done
    path: Path
    corrupt: bool = False   # measured: the reader used as ground truth rejects it
    buildable: bool = True  # checkpoints: build_codec succeeds (probe can run)


def audio_is_readable(path: Path) -> bool:
    """Ground truth for audio: soundfile can open it and read every frame it announces."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate <= 0 or f.channels <= 0:
                return False
            data = f.read(dtype="float32")
        return data.size > 0
    except Exception:
        return False


def make_audio_variants(valid: list[Path], n: int, folder: Path, rng: random.Random) -> list[Variant]:
    folder.mkdir(parents=True, exist_ok=True)
    kinds = list(AUDIO_CORRUPTIONS)
    variants = []
    for i in range(n):
        kind = kinds[i % len(kinds)]  # round robin so a small N still covers every kind
        source = rng.choice(valid)
        data, detail = AUDIO_CORRUPTIONS[kind](source.read_bytes(), rng)
        path = folder / f"v{i:04d}_{kind}{source.suffix}"
        path.write_bytes(data)
        variants.append(Variant(path.name, kind, source.name, detail, path, corrupt=not audio_is_readable(path)))
    return variants


# --------------------------------------------------------------------------------------------
# checkpoint corruptions (state level: missing keys, shapes, dtypes; byte level: zip damage)
# --------------------------------------------------------------------------------------------
def _tensor_keys(state: dict) -> list[str]:
    import torch

    model = state.get("model", {})
    return [k for k, v in model.items() if isinstance(v, torch.Tensor)]


def ck_missing_key(state: dict, rng: random.Random) -> tuple[Any, str]:
    state = copy.copy(state)
    if rng.random() < 0.5:
        key = rng.choice(sorted(state))
        del state[key]
        return state, f"top-level key {key!r} removed"
    state["model"] = dict(state["model"])
    key = rng.choice(_tensor_keys(state))
    del state["model"][key]
    return state, f"model tensor {key!r} removed"


def ck_wrong_shape(state: dict, rng: random.Random) -> tuple[Any, str]:
    import torch

    state = copy.copy(state)
    state["model"] = dict(state["model"])
    key = rng.choice(_tensor_keys(state))
    old = state["model"][key]
    shape = rng.choice([(), (0,), (3, 5, 7), tuple(reversed(old.shape)) + (2,), (old.numel() + 1,)])
    state["model"][key] = torch.randn(shape) if old.is_floating_point() else torch.zeros(shape, dtype=old.dtype)
    return state, f"{key!r} shape {tuple(old.shape)} -> {shape}"


def ck_wrong_dtype(state: dict, rng: random.Random) -> tuple[Any, str]:
    import torch

    state = copy.copy(state)
    state["model"] = dict(state["model"])
    dtype = rng.choice([torch.int64, torch.float16, torch.bfloat16, torch.bool, torch.complex64,
                        torch.uint8, torch.float64])
    keys = _tensor_keys(state)
    chosen = keys if rng.random() < 0.3 else [rng.choice(keys)]
    for key in chosen:
        state["model"][key] = state["model"][key].to(dtype)
    what = "all tensors" if len(chosen) > 1 else repr(chosen[0])
    return state, f"{what} converted to {dtype}"


# Tensor families of a training checkpoint: a corruption in each one reaches different checks
# (weights: C201/C202 and the probes; codebooks and EMA buffers: Q40x; optimizer moments: C203).
TENSOR_FAMILIES = ("weights", "biases", "codebooks", "ema-buffers", "optimizer-moments")
# what a flipped exponent bit or a diverged run leaves in a float32 tensor; 3e38 is near float32's
# largest value, so its square overflows
NONFINITE_VALUES = (float("nan"), float("inf"), float("-inf"), 3.0e38, -3.0e38)


def tensor_family(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("embed_avg", "cluster_size"):
        return "ema-buffers"
    if leaf in ("embed", "codebook", "embedding") or "quantizer" in name and leaf == "weight":
        return "codebooks"
    if leaf == "bias":
        return "biases"
    return "weights"


def family_tensors(state: dict, family: str) -> list[tuple[tuple, str]]:
    """(path into the state, readable name) of every floating tensor of `family`."""
    import torch

    if family == "optimizer-moments":
        opt_state = (state.get("optimizer") or {}).get("state") or {}
        return [(("optimizer", "state", index, key), f"optimizer.state.{index}.{key}")
                for index, slots in opt_state.items() for key, t in slots.items()
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() > 0]
    return [(("model", key), key) for key in _tensor_keys(state)
            if state["model"][key].is_floating_point() and tensor_family(key) == family]


def ck_nonfinite(state: dict, rng: random.Random, family: str | None = None) -> tuple[Any, str]:
    """One element (or, one time in four, the whole tensor) of a tensor of `family` (a random
    family with tensors when None) set to NaN, +-inf or a value whose square overflows."""
    families = [family] if family else [f for f in TENSOR_FAMILIES if family_tensors(state, f)]
    chosen_family = rng.choice(families)
    path, name = rng.choice(family_tensors(state, chosen_family))
    state = copy.copy(state)
    holder = state
    for part in path[:-1]:  # copy the containers on the way down, never the shared originals
        holder[part] = copy.copy(holder[part])
        holder = holder[part]
    t = holder[path[-1]].clone()
    value = rng.choice(NONFINITE_VALUES)
    whole = rng.random() < 0.25
    if whole:
        t.fill_(value)
    else:
        t.view(-1)[rng.randrange(t.numel())] = value
    holder[path[-1]] = t
    return state, f"{chosen_family}: {name!r} {'filled with' if whole else 'has one'} {value}"


def ck_wrong_types(state: dict, rng: random.Random) -> tuple[Any, str]:
    state = copy.deepcopy(state)
    choice = rng.choice(["config-field", "config-not-dict", "history", "step", "model-list", "train_args"])
    if choice == "config-field" and isinstance(state.get("config"), dict):
        key = rng.choice(sorted(state["config"]))
        value = rng.choice(["seven", None, -3, 0, [], {"a": 1}, 1e308, float("nan")])
        state["config"][key] = value
        return state, f"config[{key!r}] = {value!r}"
    if choice == "config-not-dict":
        state["config"] = "tiny"
        return state, "config is a string"
    if choice == "history":
        state["history"] = rng.choice(["none", [1, 2, 3], [{"epoch": "x", "val_snr_db": "nan"}], {"a": 1}])
        return state, f"history = {state['history']!r}"
    if choice == "step":
        state["step"] = rng.choice(["10", -1, None, 2**70])
        return state, f"step = {state['step']!r}"
    if choice == "model-list":
        state["model"] = list(state["model"].values())
        return state, "model is a list of tensors"
    state["train_args"] = {"learning_rate": rng.choice(["fast", -1.0, float("inf"), None]), "batch_size": "x"}
    return state, f"train_args = {state['train_args']!r}"


def ck_not_dict(state: dict, rng: random.Random) -> tuple[Any, str]:
    import torch

    value = rng.choice([torch.zeros(3), [1, 2, 3], 42, "checkpoint", None])
    return value, f"top level is {type(value).__name__}"


CKPT_STATE_CORRUPTIONS = {
    "missing-key": ck_missing_key,
    "wrong-shape": ck_wrong_shape,
    "wrong-dtype": ck_wrong_dtype,
    "nonfinite": ck_nonfinite,
    "wrong-types": ck_wrong_types,
    "not-a-dict": ck_not_dict,
}


def ck_truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(0, len(data))
    return data[:cut], f"zip truncated at byte {cut} of {len(data)}"


def ck_flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    # half the time aim at the end (zip central directory), half anywhere
    lo = max(0, len(data) - 512) if rng.random() < 0.5 else 0
    offsets = _flip(out, lo, len(data), rng.randint(1, 8), rng)
    return bytes(out), f"bytes flipped at {offsets}"


def ck_garbage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    n = rng.choice((0, 1, 8, 4096))
    return bytes(rng.randrange(256) for _ in range(n)), f"{n} random bytes"


CKPT_BYTE_CORRUPTIONS = {"truncate-zip": ck_truncate, "flip-bytes": ck_flip, "garbage": ck_garbage}


def checkpoint_truth(path: Path) -> tuple[bool, bool]:
    """(loads with torch.load(weights_only=True) as a dict, builds a codec and runs it)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False, False
    if not isinstance(state, dict):
        return False, False
    try:
        import warnings

        from codecdoctor_model.checkpoint import build_codec

        warnings.filterwarnings("ignore", message="Casting complex values")  # the wrong-dtype variants
        codec = build_codec(state)
        with torch.no_grad():
            y = codec(torch.zeros(1, codec.config.channels, codec.hop_length * 4)).audio
        return True, bool(torch.isfinite(y).all())
    except Exception:
        return True, False


def make_ckpt_variants(state: dict, n: int, folder: Path, rng: random.Random) -> list[Variant]:
    folder.mkdir(parents=True, exist_ok=True)
    valid_path = folder / "valid.pt"
    save_state(valid_path, state)
    valid_bytes = valid_path.read_bytes()
    kinds = list(CKPT_BYTE_CORRUPTIONS) + list(CKPT_STATE_CORRUPTIONS)
    variants = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        path = folder / f"c{i:04d}_{kind}.pt"
        if kind in CKPT_BYTE_CORRUPTIONS:
            data, detail = CKPT_BYTE_CORRUPTIONS[kind](valid_bytes, rng)
            path.write_bytes(data)
        else:
            bad, detail = CKPT_STATE_CORRUPTIONS[kind](state, rng)
            save_state(path, bad)
        loads, builds = checkpoint_truth(path)
        variants.append(Variant(path.name, kind, "valid.pt", detail, path, corrupt=not loads, buildable=builds))
    return variants


# --------------------------------------------------------------------------------------------
# the campaign
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    command: str
    variant: Variant
    outcome: str            # crash / hang / wrong / ok / not-built
    returncode: int | None
    why: str = ""
    argv: list[str] = dataclasses.field(default_factory=list)
    traceback_head: str = ""


def _report_args(out: Path) -> list[str]:
    return ["--json", str(out / "report.json"), "--html", str(out / "report.html")]


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except Exception:
        return None


def judge_single(command: str, variant: Variant, res: RunResult, *, expect_error: bool) -> tuple[str, str]:
    if res.hung:
        return "hang", f"no answer within the timeout ({res.seconds:.0f}s)"
    if res.not_built:
        return "not-built", ""
    if res.usage_error:
        return "harness", f"usage error, the campaign's own bug: {res.stderr_head()}"
    if res.crashed:
        return "crash", f"exit {res.returncode}: {res.stderr_head()}"
    if expect_error and res.returncode == 0:
        return "wrong", "exit 0 on an input that cannot be read"
    return "ok", ""


def run_single(command: str, variant: Variant, args: list[str], workdir: Path, timeout_s: float,
               expect_error: bool) -> Case:
    out = workdir / "runs" / f"{command}_{variant.name}"
    out.mkdir(parents=True, exist_ok=True)
    res = run_command(args + _report_args(out), cwd=out, timeout_s=timeout_s)
    outcome, why = judge_single(command, variant, res, expect_error=expect_error)
    case = Case(command, variant, outcome, res.returncode, why, res.argv)
    if outcome == "crash":
        debug = run_command(args + _report_args(out), cwd=out, timeout_s=timeout_s, debug=True)
        case.traceback_head = _traceback_head(debug.stderr + debug.stdout)
    if outcome in ("ok", "not-built"):
        shutil.rmtree(out, ignore_errors=True)
    return case


def _traceback_head(text: str, lines: int = 8) -> str:
    rows = text.strip().splitlines()
    if "Traceback" in text:
        start = max(i for i, r in enumerate(rows) if r.startswith("Traceback"))
        rows = rows[start:]
        return "\n".join(rows[:2] + ["..."] + rows[-lines:]) if len(rows) > lines + 2 else "\n".join(rows)
    return "\n".join(rows[-lines:])


def audit_batch(variants: list[Variant], valid: list[Path], workdir: Path, timeout_s: float) -> list[Case]:
    """One audit-data run over a folder of every variant plus the valid files: a corrupt file must
    become a finding and the others must still be audited (design §9). A batch that crashes or
    hangs is split file by file so each crash is attributed to its input."""
    folder = workdir / "audit_batch"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for v in variants:
        shutil.copy(v.path, folder / v.name)
    for p in valid:
        shutil.copy(p, folder / f"valid_{p.name}")
    out = workdir / "runs" / "audit_batch"
    out.mkdir(parents=True, exist_ok=True)
    res = run_command(["audit-data", folder] + _report_args(out), cwd=out,
                      timeout_s=timeout_s + 2.0 * len(variants))
    if res.not_built:
        return [Case("audit-data", v, "not-built", res.returncode) for v in variants]
    if res.hung or res.crashed or res.returncode == 2:
        # one bad file must never stop the audit of the others: find which input did it
        singles = [audit_one(v, workdir, timeout_s) for v in variants]
        if res.returncode == 2 and not res.crashed:
            batch = Variant(folder.name, "folder", "all", f"{len(variants)} corrupt + {len(valid)} valid files", folder)
            singles.append(Case("audit-data (folder)", batch, "wrong", 2,
                                f"the whole audit stopped with exit 2: {res.stderr_head()}", res.argv))
        return singles
    report = _load_json(out / "report.json") or {}
    files = {f.get("path"): f for f in report.get("measurements", {}).get("files", []) if isinstance(f, dict)}
    flagged = {f.get("subject") for f in report.get("findings", [])
               if f.get("severity") in ("error", "critical")}
    cases = []
    valid_missing = [f"valid_{p.name}" for p in valid if f"valid_{p.name}" not in files]
    for v in variants:
        entry = files.get(v.name)
        named = v.name in flagged or (entry is not None and entry.get("error"))
        if v.corrupt and not named:
            cases.append(Case("audit-data", v, "wrong", res.returncode,
                              "unreadable file not reported (no error finding, no `error` field)", res.argv))
        elif valid_missing:
            cases.append(Case("audit-data", v, "wrong", res.returncode,
                              f"valid files not audited next to corrupt ones: {valid_missing}", res.argv))
        elif v.corrupt and res.returncode == 0:
            cases.append(Case("audit-data", v, "wrong", 0, "exit 0 with an unreadable file in the folder", res.argv))
        else:
            cases.append(Case("audit-data", v, "ok", res.returncode))
    return cases


def folder_batch(command: str, args_for: Callable[[Path], list], variants: list[Variant], valid: list[Path],
                 workdir: Path, timeout_s: float) -> list[Case]:
    """One run of a folder-taking command (check-ckpt --data, compare REF_DIR EST_DIR) over every
    corrupt file next to valid ones. Only crashes and hangs are judged here: which exit code is
    right depends on what the folder mixes, and the single-input runs judge exit codes."""
    folder = workdir / f"batch_{command.replace(' ', '_')}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for v in variants:
        shutil.copy(v.path, folder / v.name)
    for p in valid:
        shutil.copy(p, folder / f"valid_{p.name}")
    out = workdir / "runs" / f"batch_{command.replace(' ', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    args = args_for(folder)
    res = run_command(args + _report_args(out), cwd=out, timeout_s=timeout_s + 2.0 * len(variants))
    outcome, why = judge_single(command, variants[0], res, expect_error=False)
    tb = ""
    if outcome == "crash":
        tb = _traceback_head(run_command(args + _report_args(out), cwd=out, timeout_s=timeout_s + 2.0 * len(variants),
                                         debug=True).stderr)
    batch = Variant(folder.name, "folder", "all", f"{len(variants)} corrupt + {len(valid)} valid files", folder)
    return [Case(f"{command} (one run, {len(variants) + len(valid)} files)", batch, outcome, res.returncode, why,
                 res.argv, tb)]


FOLDER_CKPT_KINDS = ("flip-bytes", "truncate-zip", "nonfinite")


def make_ckpt_folder(state: dict, n: int, folder: Path, rng: random.Random) -> list[Variant]:
    """n damaged copies of one trained checkpoint in one folder: bit flips, truncations and
    non-finite values, the last in every tensor family in turn (TENSOR_FAMILIES)."""
    folder.mkdir(parents=True, exist_ok=True)
    valid_path = folder.parent / "folder_valid.pt"
    save_state(valid_path, state)
    valid_bytes = valid_path.read_bytes()
    variants = []
    for i in range(n):
        kind = FOLDER_CKPT_KINDS[i % len(FOLDER_CKPT_KINDS)]
        path = folder / f"f{i:04d}_{kind}.pt"
        if kind == "nonfinite":
            family = TENSOR_FAMILIES[(i // len(FOLDER_CKPT_KINDS)) % len(TENSOR_FAMILIES)]
            bad, detail = ck_nonfinite(state, rng, family)
            save_state(path, bad)
        else:
            data, detail = CKPT_BYTE_CORRUPTIONS[kind](valid_bytes, rng)
            path.write_bytes(data)
        variants.append(Variant(path.name, kind, "folder_valid.pt", detail, path))
    return variants


def ckpt_folder_batch(variants: list[Variant], folder: Path, workdir: Path, timeout_s: float) -> list[Case]:
    """One `check-ckpt FOLDER` run over every damaged copy: the report must cover every file, no
    check may raise (escaping: a crash of the run; contained by the registry: an internal-error
    note) and no numpy RuntimeWarning may reach the terminal. One case per file."""
    out = workdir / "runs" / "ckpt_folder"
    out.mkdir(parents=True, exist_ok=True)
    res = run_command(["check-ckpt", folder] + _report_args(out), cwd=out, timeout_s=timeout_s + 1.0 * len(variants))
    command = "check-ckpt (folder)"
    outcome, why = judge_single(command, variants[0], res, expect_error=False)
    if outcome != "ok":
        return [Case(command, v, outcome, res.returncode, why, res.argv) for v in variants]
    report = _load_json(out / "report.json") or {}
    rows = {row.get("path") for row in report.get("measurements", {}).get("checkpoints", []) if isinstance(row, dict)}
    internal = [n for n in report.get("notes", []) if "internal error" in n]
    warned = [ln for ln in (res.stdout + res.stderr).splitlines() if "Warning" in ln]
    cases = []
    for v in variants:
        mine = [n for n in internal if n.startswith(f"{v.name}:")]
        if v.name not in rows:
            cases.append(Case(command, v, "wrong", res.returncode, "file missing from measurements.checkpoints", res.argv))
        elif mine:
            cases.append(Case(command, v, "crash", res.returncode, f"a check raised (contained): {mine[0]}", res.argv))
        elif warned:
            cases.append(Case(command, v, "wrong", res.returncode, f"warnings printed: {warned[0]}", res.argv))
        else:
            cases.append(Case(command, v, "ok", res.returncode))
    return cases


def audit_one(v: Variant, workdir: Path, timeout_s: float) -> Case:
    folder = workdir / "audit_single" / v.name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(v.path, folder / v.name)
    return run_single("audit-data", v, ["audit-data", folder], workdir, timeout_s, expect_error=v.corrupt)


def campaign(n: int, *, workdir: Path, timeout_s: float = 120.0, workers: int = 2, seed: int = 0,
             commands: tuple[str, ...] = ALL_COMMANDS, progress: Callable[[str], None] | None = None) -> list[Case]:
    rng = random.Random(seed)
    workdir = workdir.resolve()  # every run has its own cwd: relative paths would point nowhere
    workdir.mkdir(parents=True, exist_ok=True)
    valid_audio = make_valid_audio(workdir / "valid_audio")
    audio = make_audio_variants(valid_audio, n, workdir / "audio", rng)
    state = make_valid_state(seed)
    ckpts = make_ckpt_variants(state, n, workdir / "ckpt", rng)
    say = progress or (lambda s: None)

    jobs: list[Callable[[], Case]] = []
    ref = valid_audio[0]
    for i, v in enumerate(audio):
        if "compare" in commands:
            # mostly the estimate is the corrupt one (a half-written decoder output); every third
            # run the reference is (a damaged corpus file)
            pair = [v.path, ref] if i % 3 == 2 else [ref, v.path]
            jobs.append(lambda v=v, pair=pair: run_single("compare", v, ["compare", *pair], workdir, timeout_s,
                                                          expect_error=v.corrupt))
    for v in ckpts:
        if "check-ckpt" in commands:
            jobs.append(lambda v=v: run_single("check-ckpt", v, ["check-ckpt", v.path], workdir, timeout_s,
                                               expect_error=v.corrupt))
        if "probe" in commands:
            jobs.append(lambda v=v: run_single("probe", v, ["probe", v.path], workdir, timeout_s,
                                               expect_error=not v.buildable))
    if "train-resume" in commands:
        jobs += train_resume_jobs(ckpts, workdir, timeout_s, rng)
    cases: list[Case] = []
    if "audit-data" in commands:
        say(f"audit-data: one run over {len(audio)} corrupt + {len(valid_audio)} valid files")
        cases += audit_batch(audio, valid_audio, workdir, timeout_s)
    if "check-ckpt-data" in commands:
        say("check-ckpt --data: one run over the folder of corrupt audio")
        cases += folder_batch("check-ckpt --data", lambda d: ["check-ckpt", workdir / "ckpt" / "valid.pt", "--data", d],
                              audio, valid_audio, workdir, timeout_s)
    if "check-ckpt-folder" in commands:
        say(f"check-ckpt FOLDER: one run over {n} damaged copies of a trained checkpoint")
        folder_variants = make_ckpt_folder(state, n, workdir / "ckpt_folder", rng)
        cases += ckpt_folder_batch(folder_variants, workdir / "ckpt_folder", workdir, timeout_s)
    if "compare-folders" in commands:
        say("compare REF_DIR EST_DIR: one run, valid references paired with corrupt estimates")
        refs = workdir / "compare_refs"
        refs.mkdir(exist_ok=True)
        for v in audio:
            shutil.copy(ref, refs / v.name)
        cases += folder_batch("compare (folders)", lambda d: ["compare", refs, d], audio, [], workdir, timeout_s)
    say(f"{len(jobs)} single-input runs on {workers} workers")
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        for i, fut in enumerate(cf.as_completed(futures), 1):
            case = fut.result()
            cases.append(case)
            if case.outcome not in ("ok", "not-built"):
                say(f"  {case.outcome}: {case.command} {case.variant.name} ({case.variant.detail}): {case.why}")
            if i % 25 == 0:
                say(f"  {i}/{len(jobs)} done")
    return cases


def train_resume_jobs(ckpts: list[Variant], workdir: Path, timeout_s: float,
                      rng: random.Random) -> list[Callable[[], Case]]:
    """`train --resume` with a corrupt last.pt (a sample: each run starts a trainer). A checkpoint
    that cannot be loaded or built must stop the run with one line (exit 2) or a finding (exit 1),
    never a crash, and never train on from scratch as if nothing happened (exit 0)."""
    sample = [v for v in ckpts if not v.buildable]
    rng.shuffle(sample)
    sample = sample[:max(1, min(len(sample), len(ckpts) // 4))]
    jobs = []
    data = workdir / "valid_audio"
    for v in sample:
        ckpt_dir = workdir / "runs" / f"train_{v.name}" / "ckpts"
        (ckpt_dir / "run").mkdir(parents=True, exist_ok=True)
        shutil.copy(v.path, ckpt_dir / "run" / "last.pt")
        args = ["train", "--data_dir", data, "--checkpoint_dir", ckpt_dir, "--experiment_name", "run", "--resume",
                "--config", "tiny", "--num_epochs", "1", "--steps-per-epoch", "2", "--batch_size", "2",
                "--segment-seconds", "0.25", "--checks", "warn"]
        jobs.append(lambda v=v, args=args: run_single("train-resume", v, args, workdir, timeout_s, expect_error=True))
    return jobs


# --------------------------------------------------------------------------------------------
# kill -9 during `codecdoctor train`, then --resume
# --------------------------------------------------------------------------------------------
# The child runs the real command (cli.main(["train", ...])) with one observation hook:
# Trainer.train_step is wrapped to append the step count to a progress file after every step, so
# the campaign knows exactly how far a run got when it was killed.
_TRAIN_DRIVER = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
import codecdoctor_model.trainer as trainer_module
progress = open({progress!r}, "a", buffering=1)
_train_step = trainer_module.Trainer.train_step

def train_step(self, x):
    stats = _train_step(self, x)
    progress.write(f"{{self.step}}\\n")
    return stats

trainer_module.Trainer.train_step = train_step
from codecdoctor.cli import main
code = main({argv!r})
if code in (0, 1):
    progress.write("done\\n")
sys.exit(code)
"""


def train_argv(corpus: Path, ckpt_dir: Path, *, resume: bool, save_every: int, steps_per_epoch: int,
               epochs: int) -> list[str]:
    """A tiny run; live checks warn (a codec a few steps old has a negative validation SNR, which
    strict mode would rightly stop on)."""
    argv = ["train", "--data_dir", str(corpus), "--checkpoint_dir", str(ckpt_dir), "--experiment_name", "run",
            "--config", "tiny", "--batch_size", "2", "--num_epochs", str(epochs),
            "--steps-per-epoch", str(steps_per_epoch), "--save-every", str(save_every),
            "--segment-seconds", "0.25", "--checks", "warn", "--seed", "0", "--html", "none", "--json", "none"]
    return argv + (["--resume"] if resume else [])


def _progress_steps(path: Path) -> tuple[list[int], bool]:
    try:
        tokens = path.read_text().split()
    except FileNotFoundError:
        return [], False
    return [int(t) for t in tokens if t.isdigit()], "done" in tokens


@dataclasses.dataclass
class KillStats:
    kills: int = 0
    runs: int = 0
    steps_lost: list[int] = dataclasses.field(default_factory=list)
    save_every: int = 0
    unreadable: list[str] = dataclasses.field(default_factory=list)   # checkpoint files that did not load
    restart_errors: list[str] = dataclasses.field(default_factory=list)  # resumed at the wrong step, crashed
    stale_temp_files: int = 0
    final_step: int | None = None
    total_steps: int = 0

    @property
    def max_lost(self) -> int:
        return max(self.steps_lost, default=0)

    @property
    def runs_over_bound(self) -> int:
        return sum(1 for s in self.steps_lost if s > self.save_every)


def kill_resume_campaign(kills: int, *, workdir: Path, seed: int = 0, save_every: int = 2, steps_per_epoch: int = 6,
                         epochs: int | None = None, timeout_s: float = 180.0,
                         say: Callable[[str], None] = lambda s: None) -> KillStats:
    """Start `codecdoctor train`, kill -9 it after a random number of steps plus a random delay
    (mid-step, mid-save, mid-validation), check every checkpoint file loads with
    torch.load(weights_only=True), --resume, repeat; finally let it finish. Lost work per kill =
    steps done - step stored in last.pt; the design bound is one save interval."""
    import torch

    from codecdoctor.measure.stimuli import speech_like, write_audio

    rng = random.Random(seed)
    workdir = workdir.resolve()
    epochs = epochs or max(3, kills)
    corpus = workdir / "train_corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        write_audio(corpus / f"utt{i}.wav", speech_like(2.0, 16000, seed=i), 16000)
    ckpt_dir = workdir / "train_ckpts"
    exp_dir = ckpt_dir / "run"
    progress = workdir / "train_progress.txt"
    stats = KillStats(save_every=save_every, total_steps=epochs * steps_per_epoch)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CODECDOCTOR_DEBUG", None)

    def start(resume: bool) -> subprocess.Popen:
        argv = train_argv(corpus, ckpt_dir, resume=resume, save_every=save_every,
                          steps_per_epoch=steps_per_epoch, epochs=epochs)
        code = _TRAIN_DRIVER.format(root=str(ROOT), progress=str(progress), argv=argv)
        stats.runs += 1
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def stored_step() -> int:
        last = exp_dir / "last.pt"
        return int(torch.load(last, map_location="cpu", weights_only=True)["step"]) if last.exists() else 0

    def check_files() -> None:
        for path in sorted(exp_dir.glob("*.pt")) if exp_dir.exists() else []:
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - that is the finding
                stats.unreadable.append(f"{path.name}: {type(exc).__name__}: {exc}"[:200])

    for trial in range(kills):
        resume = (exp_dir / "last.pt").exists()
        before_steps, _ = _progress_steps(progress)
        ckpt_before = stored_step()
        target = ckpt_before + rng.randint(1, 2 * save_every + 1)
        proc = start(resume)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            steps, _ = _progress_steps(progress)
            if steps and steps[-1] >= target:
                time.sleep(rng.uniform(0.0, 0.2))  # lands anywhere: mid-step, mid-save, mid-validation
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            stats.kills += 1
        _, err = proc.communicate()
        err_text = err.decode(errors="replace")
        if "Traceback" in err_text or "internal error" in err_text:
            stats.restart_errors.append(f"run {trial}: {err_text.strip().splitlines()[-1][:200]}")
        steps, done = _progress_steps(progress)
        new = steps[len(before_steps):]
        if new and new[0] != ckpt_before + 1:
            stats.restart_errors.append(f"run {trial}: resumed at step {new[0]}, checkpoint held step {ckpt_before}")
        check_files()
        lost = (steps[-1] if steps else 0) - stored_step()
        stats.steps_lost.append(lost)
        say(f"  kill {trial + 1}/{kills}: steps done {steps[-1] if steps else 0}, in last.pt {stored_step()}, lost {lost}")
        if done:
            break
    proc = start((exp_dir / "last.pt").exists())
    _, err = proc.communicate(timeout=timeout_s * 2)
    if proc.returncode not in (0, 1):
        stats.restart_errors.append(f"final resume exit {proc.returncode}: {err.decode(errors='replace')[-300:]}")
    check_files()
    stats.final_step = stored_step()
    stats.stale_temp_files = len([p for p in exp_dir.iterdir() if p.name.endswith(".tmp")]) if exp_dir.exists() else 0
    return stats


def format_kill_row(stats: KillStats) -> str:
    lost = "0 checkpoints" if stats.runs_over_bound == 0 else f"{stats.runs_over_bound} runs lost > 1 interval"
    return (f"| train, kill -9 + --resume | {stats.kills} kills / {stats.runs} runs | "
            f"{len(stats.restart_errors)} | 0 | {len(stats.unreadable)} unreadable checkpoints | "
            f"max {stats.max_lost} steps lost (bound {stats.save_every}); {lost}; "
            f"final step {stats.final_step}/{stats.total_steps} |")


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
OUTCOMES = ("crash", "hang", "wrong", "ok", "not-built", "harness")


def summarize(cases: list[Case]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for c in cases:
        row = table.setdefault(c.command, {k: 0 for k in OUTCOMES})
        row[c.outcome] += 1
    return table


def format_table(cases: list[Case]) -> str:
    table = summarize(cases)
    lines = ["| command | inputs tried | crashes | hangs | wrong exit/verdict | ok | not covered |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    total = {k: 0 for k in OUTCOMES}
    for command in sorted(table):
        row = table[command]
        n = sum(row.values())
        lines.append(f"| {command} | {n} | {row['crash']} | {row['hang']} | {row['wrong']} | {row['ok']} | "
                     f"{row['not-built'] + row['harness']} |")
        for k in OUTCOMES:
            total[k] += row[k]
    lines.append(f"| **all** | {sum(total.values())} | {total['crash']} | {total['hang']} | {total['wrong']} | "
                 f"{total['ok']} | {total['not-built'] + total['harness']} |")
    return "\n".join(lines)


def format_failures(cases: list[Case], limit: int = 40) -> str:
    bad = [c for c in cases if c.outcome in ("crash", "hang", "wrong", "harness")]
    rows = []
    for c in bad[:limit]:
        rows.append(f"- **{c.outcome}** `{c.command}` on `{c.variant.path}` ({c.variant.kind}: {c.variant.detail}; "
                    f"corrupt={c.variant.corrupt}, buildable={c.variant.buildable}) exit={c.returncode}: {c.why}")
        if c.argv:
            rows.append(f"  - reproduce: `{' '.join(map(str, c.argv))}`")
        if c.traceback_head:
            rows.append("  - ```\n" + "\n".join("    " + r for r in c.traceback_head.splitlines()) + "\n    ```")
    if len(bad) > limit:
        rows.append(f"- ... and {len(bad) - limit} more")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="variants per input kind (audio, checkpoint)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as a hang")
    parser.add_argument("--workers", type=int, default=2, help="commands run in parallel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commands", default=",".join(ALL_COMMANDS))
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep inputs and failing runs here (default: a temp folder, removed when clean)")
    parser.add_argument("--findings", type=Path, default=None, help="append failures (markdown) to this file")
    parser.add_argument("--json", type=Path, default=None, help="write the summary table as JSON")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 / --resume cycles of `codecdoctor train` (0: skip)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:
        pass

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="codecdoctor-faults-"))
    commands = tuple(c.strip() for c in args.commands.split(",") if c.strip())
    start = time.monotonic()
    cases = campaign(args.n, workdir=workdir, timeout_s=args.timeout, workers=args.workers, seed=args.seed,
                     commands=commands, progress=lambda s: print(s, flush=True))
    kill_stats = None
    if args.kills > 0:
        print(f"train: {args.kills} kill -9 / --resume cycles", flush=True)
        kill_stats = kill_resume_campaign(args.kills, workdir=workdir, seed=args.seed, say=lambda s: print(s, flush=True))
    elapsed = time.monotonic() - start
    print()
    print(f"fault campaign: N={args.n} per kind, seed={args.seed}, timeout={args.timeout:.0f}s, "
          f"{elapsed:.0f}s wall")
    print(format_table(cases))
    if kill_stats is not None:
        print("\n| training fault | runs | crashes | hangs | files | data lost |\n|---|---:|---:|---:|---:|---|")
        print(format_kill_row(kill_stats))
        for problem in kill_stats.unreadable + kill_stats.restart_errors:
            print(f"  - {problem}")
    audio_variants = {c.variant.name: c.variant for c in cases if c.command in ("audit-data", "compare")}
    ckpt_variants = {c.variant.name: c.variant for c in cases if c.command in ("check-ckpt", "probe", "train-resume")}
    print(f"(measured ground truth: {sum(v.corrupt for v in audio_variants.values())} of {len(audio_variants)} audio "
          f"variants are unreadable by soundfile, the rest damaged but decodable; "
          f"{sum(v.corrupt for v in ckpt_variants.values())} of {len(ckpt_variants)} checkpoint variants do not load "
          f"with weights_only=True, {sum(not v.buildable for v in ckpt_variants.values())} do not build a working codec)")
    failures = format_failures(cases)
    if failures:
        print("\nfailures:\n" + failures)
        if args.findings:
            with open(args.findings, "a") as fh:
                fh.write(f"\n## fault campaign N={args.n} seed={args.seed} ({time.strftime('%H:%M')})\n{failures}\n")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "seed": args.seed, "seconds": elapsed,
                                         "table": summarize(cases),
                                         "train_kills": dataclasses.asdict(kill_stats) if kill_stats else None},
                                        indent=2))
    bad = any(c.outcome in ("crash", "hang") for c in cases) or (
        kill_stats is not None and bool(kill_stats.unreadable or kill_stats.restart_errors or kill_stats.runs_over_bound))
    if not bad and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"inputs and failing runs kept in {workdir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
