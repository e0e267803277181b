"""Checkpoints: a plain dict that loads with `torch.load(weights_only=True)`, written atomically.

Everything in the state is a dict / list / tuple / tensor / number / string / bool / None, so no
pickle of a Python object is ever needed to read it (RNG states are stored as uint8 tensors).
The write goes to a temp file in the same folder, is fsync'ed, then `os.replace`d over the target:
a crash or kill during the write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .codec import Codec
from .config import CodecConfig

FORMAT = "codecdoctor-codec/1"


def _default_writer(state: dict, handle) -> None:
    torch.save(state, handle)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any],
                    writer: Callable[[dict, Any], None] = _default_writer) -> Path:
    """Atomically write `state` to `path` (temp file + fsync + os.replace). `writer` is the
    serialiser (replaceable so tests can simulate a write that dies half-way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # make the rename itself durable (POSIX: fsync the directory)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True` (never executes a pickle). Raises ValueError when the file is
    not a codecdoctor codec checkpoint."""
    state = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a {FORMAT} checkpoint (format: {fmt!r})")
    return state


def build_codec(state: dict[str, Any], *, load_weights: bool = True) -> Codec:
    """The Codec described by a checkpoint state (config + weights), in eval mode."""
    codec = Codec(CodecConfig.from_dict(state["config"]))
    if load_weights:
        codec.load_state_dict(state["model"])
    return codec.eval()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
