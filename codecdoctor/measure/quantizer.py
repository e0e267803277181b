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
    # Codes a uniform draw of `total_count` tokens would hit at least once: K(1 - (1 - 1/K)^N).
    # Only for code histograms, where `used` is a distinct count over N tokens.
    expected_used: float | None = None
    count_buffer: str | None = None  # the usage / count buffer read (hand-written quantizers)
    # EMA consistency (Q408): for live codes, embed should equal embed_avg / cluster_size.
    ema_live_codes: int | None = None
    ema_inconsistent_codes: int | None = None
    ema_max_relative_error: float | None = None
    ema_counts_constant: bool = False  # cluster_size never moved from its initial value (no EMA ran)
    # For codes on data: the perplexity the checkpoint's EMA buffers give the same level (second opinion)
    buffer_perplexity: float | None = None
    # For codes on data: the most frequent codes and their counts, most frequent first
    top_codes: list[tuple[int, int]] | None = None
    source_module: str | None = None  # the module whose output or encode() call gave the codes

    @property
    def entropy_bits(self) -> float | None:
        """Entropy of the usage distribution in bits (DAC's compute_entropy): the bits per frame
        this level really carries, at most log2(K)."""
        return None if self.perplexity is None or self.perplexity <= 0 else math.log2(max(self.perplexity, 1.0))

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
            "entropy_bits": self.entropy_bits, "bits": self.bits,
            "bits_efficiency": (self.entropy_bits / self.bits) if self.entropy_bits is not None and self.bits else None,
            "total_count": self.total_count, "expected_used": self.expected_used, "count_buffer": self.count_buffer,
            "ema_live_codes": self.ema_live_codes, "ema_inconsistent_codes": self.ema_inconsistent_codes,
            "ema_max_relative_error": self.ema_max_relative_error, "buffer_perplexity": self.buffer_perplexity,
            "top_codes": [list(pair) for pair in self.top_codes] if self.top_codes is not None else None,
            "source_module": self.source_module,
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


def expected_distinct_codes(codebook_size: int, tokens: float) -> float:
    """Distinct codes a uniform draw of `tokens` tokens over K codes hits: K(1 - (1 - 1/K)^N).
    At N = K that is 63% of K; a short clip of N << K tokens can show at most N."""
    size = max(int(codebook_size), 1)
    if tokens <= 0:
        return 0.0
    return size * -math.expm1(tokens * math.log1p(-1.0 / size)) if size > 1 else 1.0


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
    # scaled by the peak so the squares cannot overflow: a float32 codebook with one corrupted
    # value near 3e38 squares to inf, and an inf RMS turned every other level into "-inf dB"
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    rms = peak * float(np.sqrt(np.mean(np.square(finite / peak, dtype=np.float64)))) if peak > 0.0 else 0.0
    all_zero = bool(finite.size) and not finite.any()
    identical = finite.shape[0] > 1 and bool(np.all(finite == finite[:1]))
    return rms, all_zero, identical


_EMA_SUFFIX = "cluster_size"
_FLAG_NAMES = ("initted", "inited")
# Usage / count buffers hand-written quantizers keep next to an nn.Embedding codebook.
_COUNT_BUFFER = re.compile(r"^(usage|code_usage|codebook_usage|usage_counts?|counts?|code_counts?|ema_counts?|"
                           r"ema_usage|hits|code_hits|histogram|freq|frequency|utilization|cluster_size|"
                           r"[a-z_]*_(count|counts|usage|hits))$")
# Module names that make a 2-D `.weight` a codebook: an nn.Embedding called codebook / embed /
# embedding inside something called quantizer / vq / rvq / codebook.
_CODEBOOK_LEAF = re.compile(r"^(codebooks?|embed|embeds|embedding|embeddings|code_?book_?embed|codes|vocab)$")
# A module path or class name that says "quantizer" (also used to find the methods that return codes).
QUANTIZER_NAME = re.compile(r"(quant|(^|[._])r?vq|codebook)", re.IGNORECASE)
# Q408: after an EMA step embed = embed_avg / smoothed(cluster_size) exactly; Laplace smoothing
# changes a live code's divisor by (n + eps)/n and K·eps/N, about 1e-5 relative for eps = 1e-5.
# A live code off by more than 1% was written by something other than the EMA (a revival that
# replaced `embed` but not `embed_avg`, a gradient step on a buffer the EMA also owns).
EMA_RELATIVE_TOLERANCE = 0.01
LAPLACE_EPS = 1e-5


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _ema_consistency(level: LevelStats, counts: np.ndarray, embed: np.ndarray, embed_avg: np.ndarray) -> None:
    """Fill the Q408 fields for one head: counts [K], embed [K, D], embed_avg [K, D]."""
    # in float64: a float32 codebook value near 3e38 (a flipped exponent bit) squares to inf in a
    # float32 norm, and inf / inf would read as an inconsistent code
    counts, embed, embed_avg = (np.asarray(a, np.float64) for a in (counts, embed, embed_avg))
    total = float(np.nan_to_num(counts).clip(0).sum())
    if total <= 0 or embed.shape != embed_avg.shape or embed.shape[0] != counts.size:
        return
    level.ema_counts_constant = bool(np.all(counts == counts[0]))
    live = counts >= USED_FRACTION_OF_UNIFORM * total / counts.size
    level.ema_live_codes = int(live.sum())
    if not live.any():
        return
    size = counts.size
    relative = None
    # Implementations divide by the raw count or by its Laplace-smoothed value (eps 1e-5 in EnCodec,
    # vector-quantize-pytorch and this codec); a code is consistent when either matches.
    for divisor in (counts[live], (counts[live] + LAPLACE_EPS) / (total + size * LAPLACE_EPS) * total):
        expected = embed_avg[live] / divisor[:, None]
        error = np.linalg.norm(embed[live] - expected, axis=1)
        scale = np.maximum(np.linalg.norm(embed[live], axis=1), np.linalg.norm(expected, axis=1))
        candidate = np.nan_to_num(np.where(scale > 0, error / np.maximum(scale, 1e-30), 0.0), nan=np.inf)
        relative = candidate if relative is None else np.minimum(relative, candidate)
    level.ema_inconsistent_codes = int((relative > EMA_RELATIVE_TOLERANCE).sum())
    level.ema_max_relative_error = float(relative.max())


def _embedding_under(state: Mapping[str, Any], prefix: str, size: int) -> str | None:
    """A 2-D `<prefix><module>.weight` with `size` rows (an nn.Embedding next to EMA buffers)."""
    for key in state:
        if key.startswith(prefix) and key.endswith(".weight") and key.count(".") == prefix.count(".") + 1:
            shape = getattr(state[key], "shape", ())
            if len(shape) == 2 and shape[0] == size:
                return key
    return None


def _count_buffer_near(state: Mapping[str, Any], module: str, size: int) -> str | None:
    """A count buffer of `size` entries in the codebook's module or its parent."""
    parent = module.rsplit(".", 1)[0] if "." in module else ""
    for owner in (module, parent):
        base = f"{owner}." if owner else ""
        for key in state:
            rest = key[len(base):]
            if key.startswith(base) and "." not in rest and _COUNT_BUFFER.match(rest):
                shape = tuple(getattr(state[key], "shape", ()))
                if shape and shape[-1] == size and int(np.prod(shape)) == size:
                    return key
    return None


def _ema_levels(state: Mapping[str, Any], consumed: set[str]) -> list[LevelStats]:
    levels = []
    prefixes = sorted({key[: -len(_EMA_SUFFIX)] for key in state if key.endswith(_EMA_SUFFIX)}, key=_natural_key)
    for prefix in prefixes:
        if not hasattr(state[prefix + _EMA_SUFFIX], "shape") or len(state[prefix + _EMA_SUFFIX].shape) == 0:
            continue  # not a per-code count vector: some other buffer that happens to share the name
        counts_t = state[prefix + _EMA_SUFFIX]
        # EMA layouts name the codebook `embed`; a hand-written VQ may keep `cluster_size` next to an
        # nn.Embedding instead
        embed_key = prefix + "embed" if prefix + "embed" in state else _embedding_under(state, prefix, counts_t.shape[-1])
        counts = _to_numpy(counts_t)
        embed_t = state.get(embed_key) if embed_key else None
        embed = _to_numpy(embed_t) if embed_t is not None else None
        avg_t = state.get(prefix + "embed_avg")
        embed_avg = _to_numpy(avg_t) if avg_t is not None else None
        flag = next((state[prefix + n] for n in _FLAG_NAMES if prefix + n in state), None)
        dtype = _dtype_name(embed_t if embed_t is not None else counts_t)
        heads_counts = counts.reshape(-1, counts.shape[-1]) if counts.ndim >= 1 else counts.reshape(1, -1)
        heads_embed = heads_avg = None
        if embed is not None and embed.ndim >= 2:
            heads_embed = embed.reshape(-1, embed.shape[-2], embed.shape[-1])
        if embed_avg is not None and embed_avg.ndim >= 2:
            heads_avg = embed_avg.reshape(-1, embed_avg.shape[-2], embed_avg.shape[-1])
        consumed.update(k for k in (embed_key, prefix + _EMA_SUFFIX) if k)
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
                if heads_avg is not None and head < heads_avg.shape[0]:
                    _ema_consistency(level, head_counts, heads_embed[head], heads_avg[head])
            levels.append(level)
    return levels


def _embedding_levels(state: Mapping[str, Any], consumed: set[str]) -> list[LevelStats]:
    """nn.Embedding codebooks (DAC's `quantizers.N.codebook`, hand-written RVQs), with usage from a
    count buffer next to them when there is one."""
    levels = []
    for key in sorted(state, key=_natural_key):
        if key in consumed or not key.endswith(".weight"):
            continue
        weight = state[key]
        shape = tuple(getattr(weight, "shape", ()))
        if len(shape) != 2 or not getattr(weight, "is_floating_point", lambda: False)():
            continue
        module = key[: -len(".weight")]
        if not QUANTIZER_NAME.search(module):
            continue
        leaf = module.rsplit(".", 1)[-1]
        count_key = _count_buffer_near(state, module, shape[0])
        if not _CODEBOOK_LEAF.match(leaf) and not count_key:
            continue
        embed = _to_numpy(weight)
        level = LevelStats(name=module[: -len(".codebook")] if leaf == "codebook" else module,
                           codebook_size=int(shape[0]), source="weights", dtype=_dtype_name(weight))
        level.codebook_rms, level.all_zero, level.identical_rows = _codebook_shape_stats(embed)
        if count_key:
            counts = _to_numpy(state[count_key]).reshape(-1)
            used, perplexity, stale, total = usage_from_counts(counts)
            level.used, level.perplexity, level.dead, level.stale = used, perplexity, int(shape[0]) - used, stale
            level.total_count, level.source, level.count_buffer = total, "counts", count_key
            flag = next((state[f"{owner}.{n}"] for owner in (module, module.rsplit(".", 1)[0]) for n in _FLAG_NAMES
                         if f"{owner}.{n}" in state), None)
            level.initted = _flag(flag)
        levels.append(level)
    return levels


def quantizer_levels_from_state(state: Mapping[str, Any]) -> list[LevelStats]:
    """Per-codebook statistics from a flat state dict (tensor name -> tensor).

    Recognised layouts (found by key suffix, so any prefix such as `model.` or `quantizer.vq.` works):
    - EMA VQ (this codec, encodec, vector-quantize-pytorch): `<p>cluster_size`, `<p>embed`,
      optional `<p>embed_avg`, `<p>initted` or `<p>inited`. vector-quantize-pytorch keeps a leading
      heads/codebooks axis (`cluster_size[H, K]`, `embed[H, K, D]`); each head becomes one level.
    - nn.Embedding codebooks (`<p>codebook.weight[K, D]`, `<p>embedding.weight`, ...) inside a
      module whose path names a quantizer (quant / vq / rvq / codebook): dac, and hand-written RVQs.
      A count buffer next to it (`usage`, `counts`, `code_usage`, `*_count`, ...) gives the usage
      (source "counts"); without one only sizes and vectors are known (source "weights").
    Levels come back in natural key order (level 2 before level 10).
    """
    consumed: set[str] = set()
    levels = _ema_levels(state, consumed)
    levels += _embedding_levels(state, consumed)
    return sorted(levels, key=lambda lv: _natural_key(lv.name))


# The head of a code histogram kept per level: a collapse reads as "code 7: 400 of 400 frames".
TOP_CODES = 5


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
        top = np.argsort(-histogram, kind="stable")[:TOP_CODES]
        levels.append(LevelStats(name=f"level {index}", codebook_size=size, used=used, perplexity=perplexity,
                                 dead=size - used, source="codes", total_count=total,
                                 expected_used=expected_distinct_codes(size, total),
                                 top_codes=[(int(code), int(histogram[code])) for code in top if histogram[code] > 0]))
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
    # The dead-code rule the training used (Q407), from the saved config / arguments or the built
    # model: an absolute EMA count (EnCodec / vector-quantize-pytorch `threshold_ema_dead_code`)
    # or a fraction of the uniform share (this codec's `dead_code_fraction`).
    dead_code_threshold: float | None = None
    dead_code_fraction: float | None = None
    threshold_source: str | None = None
    frame_rate_hz: float | None = None  # for the effective bitrate from entropy (codes on data)

    def to_list(self) -> list[dict[str, Any]]:
        return [level.to_dict() for level in self.levels]
