"""Codebook statistics of vector quantizers, read from checkpoint buffers or from codes on data.

Two sources, one result type (`LevelStats`):
- static: the EMA buffers a VQ keeps (`cluster_size[K]` = decayed count of assignments per code,
  `embed[K, D]`, `embed_avg`, `initted`/`inited`), in any of the layouts this module knows
  (this project's codec, vector-quantize-pytorch, encodec; dac stores no EMA buffers, so only its
  codebook size and weights are read);
- dynamic: histograms of the codes a model emits on real audio (`level_stats_from_codes`).

Used by check-ckpt (Q401-Q406) and by the live monitor (T607). Pure tensor reading: no model build.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

# A code counts as "used" when it receives at least this fraction of a uniform share (1/K) of the
# assignments. Absolute EMA counts scale with batch size and decay, a share does not; 1% of uniform
# means "hit about once for every 100 hits a perfectly balanced code gets" - below that the code
# contributes nothing measurable to the rate and is a dead-code candidate.
USED_FRACTION_OF_UNIFORM = 0.01

# A code whose EMA share fell below 1e-6 of uniform has not been hit for a long time: with the usual
# decay 0.99 a single hit decays by 1e-6 after ln(1e-6)/ln(0.99) ≈ 1375 steps. Dead-code revival
# (EnCodec / vector-quantize-pytorch `threshold_ema_dead_code`) would have reset it long before.
STALE_FRACTION_OF_UNIFORM = 1e-6


@dataclass
class LevelStats:
    """One codebook (one RVQ level, or one head of a multi-head VQ)."""

    name: str                       # key prefix in the state dict, or "level i" for codes
    codebook_size: int
    used: int | None = None         # codes with share >= USED_FRACTION_OF_UNIFORM / K
    perplexity: float | None = None  # exp(entropy of the usage distribution); K when uniform
    dead: int | None = None         # codebook_size - used
    stale: int | None = None        # codes not hit for ~1000+ EMA steps (never revived)
    initted: bool | None = None     # None when the layout stores no flag
    source: str = "ema"             # "ema" (cluster_size buffer), "codes" (histogram), "weights" (no usage info)
    dtype: str = "float32"
    codebook_rms: float | None = None  # RMS of the codebook vectors (what a level adds to the sum)
    all_zero: bool = False          # embed is all zeros (k-means init never ran)
    identical_rows: bool = False    # every code vector is the same
    total_count: float | None = None

    @property
    def used_fraction(self) -> float | None:
        return None if self.used is None else self.used / max(self.codebook_size, 1)

    @property
    def bits(self) -> float:
        return math.log2(self.codebook_size) if self.codebook_size > 1 else 0.0

    @property
    def effective_bits(self) -> float | None:
        return None if self.perplexity is None else math.log2(max(self.perplexity, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "codebook_size": self.codebook_size, "used": self.used,
            "perplexity": self.perplexity, "dead": self.dead, "stale": self.stale, "initted": self.initted,
            "source": self.source, "dtype": self.dtype, "codebook_rms": self.codebook_rms,
            "all_zero": self.all_zero, "identical_rows": self.identical_rows,
            "used_fraction": self.used_fraction, "effective_bits": self.effective_bits,
        }


def usage_from_counts(counts: np.ndarray) -> tuple[int, float, int, float]:
    """(used, perplexity, stale, total) from per-code counts (EMA or histogram)."""
    counts = np.clip(np.nan_to_num(np.asarray(counts, dtype=np.float64), nan=0.0, posinf=0.0), 0.0, None)
    size = counts.size
    total = float(counts.sum())
    if size == 0 or total <= 0.0:
        return 0, 0.0, size, total
    share = counts / total
    used = int((share >= USED_FRACTION_OF_UNIFORM / size).sum())
    stale = int((share < STALE_FRACTION_OF_UNIFORM / size).sum())
    nonzero = share[share > 0]
    perplexity = float(np.exp(-(nonzero * np.log(nonzero)).sum()))
    return used, perplexity, stale, total


def _to_numpy(tensor: Any) -> np.ndarray:
    if hasattr(tensor, "detach"):
        return tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, dtype=np.float64)


def _dtype_name(tensor: Any) -> str:
    return str(getattr(tensor, "dtype", "float32")).replace("torch.", "")


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    array = _to_numpy(value).reshape(-1)
    return bool(array.size and (array != 0).all())


def _codebook_shape_stats(embed: np.ndarray) -> tuple[float, bool, bool]:
    finite = np.nan_to_num(embed, nan=0.0, posinf=0.0, neginf=0.0)
    rms = float(np.sqrt(np.mean(finite ** 2))) if finite.size else 0.0
    all_zero = bool(finite.size) and not finite.any()
    identical = finite.shape[0] > 1 and bool(np.all(finite == finite[:1]))
    return rms, all_zero, identical


_EMA_SUFFIX = "cluster_size"
_FLAG_NAMES = ("initted", "inited")


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def quantizer_levels_from_state(state: Mapping[str, Any]) -> list[LevelStats]:
    """Per-codebook statistics from a flat state dict (tensor name -> tensor).

    Recognised layouts (found by key suffix, so any prefix such as `model.` or `quantizer.vq.` works):
    - EMA VQ (this codec, encodec, vector-quantize-pytorch): `<p>cluster_size`, `<p>embed`,
      optional `<p>embed_avg`, `<p>initted` or `<p>inited`. vector-quantize-pytorch keeps a leading
      heads/codebooks axis (`cluster_size[H, K]`, `embed[H, K, D]`); each head becomes one level.
    - dac (no EMA): `<p>codebook.weight[K, D]` under `quantizers.<i>.`; usage is unknown (None).
    Levels come back in natural key order (level 2 before level 10).
    """
    levels: list[LevelStats] = []
    prefixes = sorted({key[: -len(_EMA_SUFFIX)] for key in state if key.endswith(_EMA_SUFFIX)}, key=_natural_key)
    for prefix in prefixes:
        if not hasattr(state[prefix + _EMA_SUFFIX], "shape") or len(state[prefix + _EMA_SUFFIX].shape) == 0:
            continue  # not a per-code count vector: some other buffer that happens to share the name
        counts = _to_numpy(state[prefix + _EMA_SUFFIX])
        embed_t = state.get(prefix + "embed")
        embed = _to_numpy(embed_t) if embed_t is not None else None
        flag = next((state[prefix + n] for n in _FLAG_NAMES if prefix + n in state), None)
        dtype = _dtype_name(embed_t if embed_t is not None else state[prefix + _EMA_SUFFIX])
        heads_counts = counts.reshape(-1, counts.shape[-1]) if counts.ndim >= 1 else counts.reshape(1, -1)
        heads_embed = None
        if embed is not None and embed.ndim >= 2:
            heads_embed = embed.reshape(-1, embed.shape[-2], embed.shape[-1])
        for head, head_counts in enumerate(heads_counts):
            used, perplexity, stale, total = usage_from_counts(head_counts)
            name = prefix.rstrip(".") or "quantizer"
            if heads_counts.shape[0] > 1:
                name = f"{name}[head {head}]"
            level = LevelStats(name=name, codebook_size=int(head_counts.size), used=used, perplexity=perplexity,
                               dead=int(head_counts.size) - used, stale=stale, initted=_flag(flag), source="ema",
                               dtype=dtype, total_count=total)
            if heads_embed is not None and head < heads_embed.shape[0]:
                level.codebook_rms, level.all_zero, level.identical_rows = _codebook_shape_stats(heads_embed[head])
            levels.append(level)
    if levels:
        return levels
    # dac: weight-only codebooks. Usage needs codes on data (dynamic check).
    dac_keys = sorted((k for k in state if re.search(r"quantizers\.\d+\.codebook\.weight$", k)), key=_natural_key)
    for key in dac_keys:
        weight = state[key]
        embed = _to_numpy(weight)
        if embed.ndim != 2:
            continue
        level = LevelStats(name=key[: -len(".codebook.weight")], codebook_size=int(embed.shape[0]), source="weights",
                           dtype=_dtype_name(weight))
        level.codebook_rms, level.all_zero, level.identical_rows = _codebook_shape_stats(embed)
        levels.append(level)
    return levels


def level_stats_from_codes(codes: Any, codebook_sizes: Iterable[int] | int) -> list[LevelStats]:
    """Per-level usage from codes emitted on data.

    `codes`: integer array [B, n_q, frames] or [n_q, N] (level axis second-to-last of the batch
    layout, as `Codec.encode` returns). `codebook_sizes`: one size per level or a single int.
    """
    array = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
    if array.ndim == 3:
        array = np.moveaxis(array, 1, 0).reshape(array.shape[1], -1)
    elif array.ndim == 1:
        array = array.reshape(1, -1)
    elif array.ndim != 2:
        raise ValueError(f"codes must be [B, n_q, frames] or [n_q, N], got shape {array.shape}")
    n_levels = array.shape[0]
    sizes = [int(codebook_sizes)] * n_levels if isinstance(codebook_sizes, (int, np.integer)) else list(codebook_sizes)
    if len(sizes) < n_levels:
        sizes += [sizes[-1] if sizes else int(array.max(initial=0)) + 1] * (n_levels - len(sizes))
    levels = []
    for index in range(n_levels):
        size = max(int(sizes[index]), int(array[index].max(initial=-1)) + 1, 1)
        histogram = np.bincount(array[index].astype(np.int64).clip(0), minlength=size)
        used, perplexity, _, total = usage_from_counts(histogram)
        # From a histogram "used" means: emitted at least once (no decay to reason about).
        used = int((histogram > 0).sum())
        levels.append(LevelStats(name=f"level {index}", codebook_size=size, used=used, perplexity=perplexity,
                                 dead=size - used, source="codes", total_count=total))
    return levels


@dataclass
class QuantizerMeasurements:
    """What the Q4xx checks read: levels from one source plus context."""

    levels: list[LevelStats] = field(default_factory=list)
    source: str = "ema"            # "ema", "codes" or "weights"
    frames_seen: int | None = None  # for "codes": frames per level in the histogram
    # For "codes": SNR (dB) of the reconstruction decoded with the first k levels, k = 1..n_q;
    # None when the model cannot decode a prefix of levels.
    snr_by_levels_db: list[float] | None = None

    def to_list(self) -> list[dict[str, Any]]:
        return [level.to_dict() for level in self.levels]
