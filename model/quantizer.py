"""Residual vector quantizer with EMA codebooks.

Each level keeps the buffers `embed[K, D]`, `embed_avg[K, D]`, `cluster_size[K]` and `initted`
(the names codecdoctor's checkpoint reader knows). Rules:
- k-means initialisation from the first training batch;
- EMA updates of counts and sums; under torch.distributed the batch statistics are all-reduced
  before the update (and replacements are broadcast from rank 0), so every rank holds identical
  codebooks without relying on DDP's buffer broadcast;
- a code is dead when its EMA count is below `dead_code_fraction` × the uniform share
  (total count / K): a relative rule, independent of batch size. A dead code is replaced by a random
  vector of the current batch and its EMA statistics are reset to that vector (count = uniform
  share), otherwise the stale `embed_avg / cluster_size` would pull it straight back;
- quantizer dropout per example (random number of levels), without changing which collectives run;
- always float32 with autocast disabled: distances between ~1e3-dimensional sums lose the nearest
  code in half precision.

Factorized codes (`CodecConfig.code_dim` > 0; not the default, see the config): each level maps
its residual from the latent dim down to `code_dim` with a learned linear map (`in_proj`), picks the code whose direction
is nearest (cosine: both the projected vector and the codebook entries are L2-normalised for the
search), and maps the code back up with a second learned map (`out_proj`); the residual stays in the
latent dim. The codebook itself is the same EMA state as above, kept in the low-dim space: an entry
is the running mean of the (unnormalised) projected vectors assigned to it, so its direction is what
the search compares and its length is what gets decoded. k-means init runs the same Lloyd iterations
with the cosine assignment; revived codes are projected batch vectors. The projections learn by
gradient: straight-through in the low-dim space (the decoder's gradient reaches `out_proj` through
the code and `in_proj` through the projected vector), plus a low-dim commitment term that keeps the
projected vectors near their codes. The encoder sees the plain straight-through estimator as in the
full-dim layout. `code_dim` 0 is that layout (Euclidean search on full-dim codes).
`code_search` "euclidean" searches the low-dim space by distance instead of direction. Before its
k-means init a factorized level sets its projections to the first batch's principal directions.

`quantizer_gradient` "rotation" replaces the straight-through identity by the rotation trick
(`rotate_to`): the gradient at the quantized latent reaches the encoder rotated onto the latent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .config import CodecConfig


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def _kmeans_plus_plus_seeds(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-means++ seeding (D² sampling): without it two seeds often land in one cluster and Lloyd
    iterations keep them there, leaving a real cluster without a code."""
    chosen = [int(torch.randint(0, x.shape[0], (1,)))]
    nearest_sq = (x - x[chosen[0]]).pow(2).sum(1)
    for _ in range(1, k):
        total = nearest_sq.sum()
        idx = int(torch.multinomial(nearest_sq / total, 1)) if total > 0 else int(torch.randint(0, x.shape[0], (1,)))
        chosen.append(idx)
        nearest_sq = torch.minimum(nearest_sq, (x - x[idx]).pow(2).sum(1))
    return x[chosen].clone()


def codebook_decay_at(step: int, start: float, final: float | None) -> float:
    """The codebooks' EMA decay at a training step: `start` while the encoder moves fast, then a
    memory of about step / 9 batches ((1 + step) / (10 + step), the weight EMA's warm-up rule), up to
    `final`."""
    if final is None or final <= start:
        return start
    return min(final, max(start, (1 + step) / (10 + step)))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1, eps=1e-12)


def kmeans(x: torch.Tensor, k: int, iters: int, cosine: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain Lloyd k-means on [N, D]; returns (centroids [k, D], counts [k]). With N < k the seeds
    repeat; the duplicates end up dead and are revived from later batches. `cosine`: seeds and
    assignments by direction (on the unit vectors), centroids the mean of the unnormalised vectors
    (what the factorized codebook's EMA keeps)."""
    n = x.shape[0]
    if n > k:
        centroids = _kmeans_plus_plus_seeds(_unit(x) if cosine else x, k)
    else:
        centroids = x[torch.randint(0, n, (k,), device=x.device)].clone()
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(iters, 1)):
        if cosine:
            assign = (_unit(x) @ _unit(centroids).t()).argmax(dim=1)
        else:
            assign = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


class EMACodebook(nn.Module):
    """One VQ level. With `code_dim` > 0 its codes live in a `code_dim`-dimensional space reached
    by the learned `in_proj` / `out_proj` maps from and to the `dim`-dimensional latent, searched by
    cosine (module docstring); `code_dim` 0: codes in the latent dim, Euclidean search."""

    def __init__(self, dim: int, size: int, *, decay: float, epsilon: float, kmeans_iters: int,
                 dead_code_fraction: float, code_dim: int = 0, cosine: bool = True):
        super().__init__()
        self.latent_dim = dim
        self.factorized = code_dim > 0
        self.cosine = self.factorized and cosine
        if self.factorized:
            self.in_proj = nn.Linear(dim, code_dim, bias=False)
            self.out_proj = nn.Linear(code_dim, dim, bias=False)
            with torch.no_grad():
                # start as an orthogonal projection onto a random code_dim-dimensional subspace (and
                # back): the first batches quantize part of the residual instead of a random mix of it
                basis = torch.linalg.qr(torch.randn(dim, max(code_dim, 1)))[0][:, :code_dim]
                self.in_proj.weight.copy_(basis.t())
                self.out_proj.weight.copy_(basis)
            dim = code_dim
        self.dim, self.size = dim, size
        self.decay, self.epsilon = decay, epsilon
        self.kmeans_iters = kmeans_iters
        self.dead_code_fraction = dead_code_fraction
        self.register_buffer("initted", torch.tensor(False))
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.zeros(size))
        self.revived_total = 0  # not saved: a per-run counter for logs

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        if self.cosine:
            return (_unit(x) @ _unit(self.embed).t()).argmax(dim=1)
        # ||x - e||² = ||x||² - 2 x·e + ||e||²; the ||x||² term does not change the argmin
        dist_sq = (self.embed.pow(2).sum(1)[None, :] - 2 * x @ self.embed.t())
        return dist_sq.argmin(dim=1)

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        centroids, counts = kmeans(x, self.size, self.kmeans_iters, cosine=self.cosine)
        self.embed.copy_(_broadcast(centroids))
        self.cluster_size.copy_(_broadcast(counts))
        self.embed_avg.copy_(self.embed * self.cluster_size[:, None])
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.size).to(x.dtype)
        sums = torch.zeros(self.size, self.dim, device=x.device, dtype=x.dtype).index_add_(0, codes, x)
        stats = _all_reduce_sum(torch.cat([counts[:, None], sums], dim=1))
        counts, sums = stats[:, 0], stats[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        # Laplace smoothing keeps a never-used code from dividing by zero
        smoothed = (self.cluster_size + self.epsilon) / (total + self.size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    def dead_mask(self) -> torch.Tensor:
        share = self.cluster_size.sum() / self.size
        return self.cluster_size < self.dead_code_fraction * share

    @torch.no_grad()
    def revive_dead_codes(self, x: torch.Tensor) -> int:
        """Replace dead codes by random batch vectors and reset their EMA statistics."""
        dead = self.dead_mask()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        picks = torch.randint(0, x.shape[0], (n_dead,), device=x.device)
        replacement = _broadcast(x[picks].contiguous())
        share = self.cluster_size.sum() / self.size
        self.embed[dead] = replacement
        self.cluster_size[dead] = share
        self.embed_avg[dead] = replacement * share
        self.revived_total += n_dead
        return n_dead

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, D] float32 (D = the codebook's dim) -> (quantized [N, D], codes [N])."""
        if self.training and not bool(self.initted):
            self._init(x.detach())
        codes = self.nearest(x.detach())
        if self.training:
            self._ema_update(x.detach(), codes)
            self.revive_dead_codes(x.detach())
        return self.embed[codes], codes

    def quantize_residual(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """residual [N, latent] float32 -> (this level's contribution [N, latent], codes [N],
        the level's own commitment per vector [N, 1]: zero in the full-dim layout, whose
        commitment the quantizer computes; the low-dim distance to the code when factorized).
        The contribution carries gradient to the projections only (the encoder's path is the
        quantizer's straight-through estimator)."""
        if not self.factorized:
            q, codes = self(residual)
            return q, codes, residual.new_zeros(residual.shape[0], 1)
        if self.training and not bool(self.initted):
            self._init_projections(residual.detach())
        low = self.in_proj(residual.detach())
        code_vectors, codes = self(low)
        # straight-through in the low-dim space: forward the code, backward the projected vector
        decoded = self.out_proj(low + (code_vectors - low).detach())
        commit = (low - code_vectors.detach()).pow(2).mean(1, keepdim=True)
        return decoded, codes, commit

    @torch.no_grad()
    def _init_projections(self, residual: torch.Tensor) -> None:
        """Before the k-means init: the projections become the first batch's `code_dim` principal
        directions (of the uncentred second moment: the search compares directions from the
        origin), so the level starts on the part of the residual with the most energy instead of a
        random subspace holding ~code_dim / latent_dim of it."""
        if residual.shape[0] < self.dim:
            return  # too few vectors for a basis: keep the random orthogonal start
        basis = torch.linalg.svd(residual, full_matrices=False)[2][: self.dim]  # [code_dim, latent]
        basis = _broadcast(basis.contiguous())
        self.in_proj.weight.copy_(basis)
        self.out_proj.weight.copy_(basis.t())

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] -> latent-dim vectors [..., latent]."""
        e = self.embed[codes]
        return self.out_proj(e) if self.factorized else e

    def usage(self) -> dict:
        """From the EMA counts (a window of about 1 / (1 - decay) batches)."""
        counts = self.cluster_size.detach().double().cpu()
        total = float(counts.sum())
        share = total / self.size if total > 0 else 0.0
        if total > 0:
            p = counts / total
            p = p[p > 0]
            perplexity = float(torch.exp(-(p * p.log()).sum()))
        else:
            perplexity = 0.0
        # "used": holds at least 1% of a uniform share (a code hit once and then abandoned decays
        # below that within ~460 batches at decay 0.99)
        used = int((counts > 0.01 * share).sum()) if total > 0 else 0
        dead = int((counts < self.dead_code_fraction * share).sum()) if total > 0 else self.size
        return {"codebook_size": self.size, "used": used, "perplexity": perplexity, "dead": dead,
                "initted": bool(self.initted)}


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, frames], float32, straight-through
    codes: torch.Tensor  # [B, n_q, frames] long
    commit_loss: torch.Tensor  # scalar
    n_quantizers: torch.Tensor  # [B] levels used per example


def rotate_to(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rotation-trick estimator for rows e -> q [N, D]: forward value q; backward, the gradient
    at q reaches e turned by the rotation (and scaled by |q| / |e|) that maps e's direction onto
    q's, both held constant, instead of passed unchanged. With u = unit(e), v = unit(q) and
    w = unit(u + v), that rotation is I - 2 w wᵀ + 2 v uᵀ (it maps u to v and leaves the plane's
    complement alone)."""
    e_len = e.detach().norm(dim=1, keepdim=True).clamp(min=1e-12)
    q_len = q.detach().norm(dim=1, keepdim=True)
    u = e.detach() / e_len
    v = q.detach() / q_len.clamp(min=1e-12)
    w = _unit(u + v)
    turned = e - 2 * w * (w * e).sum(1, keepdim=True) + 2 * v * (u * e).sum(1, keepdim=True)
    moved = (q_len / e_len) * turned
    return moved + (q.detach() - moved).detach()


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.n_codebooks = config.n_codebooks
        self.codebook_size = config.codebook_size
        self.dropout = config.quantizer_dropout
        self.levels = nn.ModuleList(
            EMACodebook(config.latent_dim, config.codebook_size, decay=config.ema_decay,
                        epsilon=config.ema_epsilon, kmeans_iters=config.kmeans_iters,
                        dead_code_fraction=config.dead_code_fraction, code_dim=config.code_dim,
                        cosine=config.code_search == "cosine")
            for _ in range(config.n_codebooks))
        # set by the trainer during quantizer warm-up: training forwards pass the latent through
        # unquantized (codes 0, no commitment, codebooks untouched)
        self.bypass = False
        self.factorized = config.code_dim > 0
        self.rotation = config.quantizer_gradient == "rotation"

    def set_decay(self, decay: float) -> None:
        for level in self.levels:
            level.decay = float(decay)

    def _levels_per_example(self, batch: int, n_quantizers: int | None, device) -> torch.Tensor:
        full = torch.full((batch,), n_quantizers or self.n_codebooks, device=device)
        if self.training and n_quantizers is None and self.dropout > 0:
            drop = torch.rand(batch, device=device) < self.dropout
            random_n = torch.randint(1, self.n_codebooks + 1, (batch,), device=device)
            full = torch.where(drop, random_n, full)
        return full

    def forward(self, z: torch.Tensor, n_quantizers: int | None = None) -> QuantizerOutput:
        device_type = z.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            z = z.float()
            batch, dim, frames = z.shape
            flat = z.permute(0, 2, 1).reshape(-1, dim)
            levels_used = self._levels_per_example(batch, n_quantizers, z.device)
            if self.bypass and self.training:
                codes = torch.zeros(batch, self.n_codebooks, frames, dtype=torch.long, device=z.device)
                return QuantizerOutput(z, codes, z.new_zeros(()), levels_used)
            # mask [B·frames, 1]: which vectors keep level i's contribution
            per_vector_levels = levels_used.repeat_interleave(frames)[:, None]
            residual = flat
            quantized_sum = torch.zeros_like(flat)
            commit = flat.new_zeros(())
            all_codes = []
            n_run = self.n_codebooks if self.training or n_quantizers is None else n_quantizers
            for i, level in enumerate(self.levels[:n_run]):
                q, codes, own_commit = level.quantize_residual(residual)
                keep = (per_vector_levels > i).to(flat.dtype)
                # commitment: pull the encoder output towards its (fixed) code (+ the factorized
                # level's projected vector towards its code)
                per_vector = ((residual - q.detach()) ** 2).mean(1, keepdim=True) + own_commit
                commit = commit + (per_vector * keep).sum() / keep.sum().clamp(min=1)
                quantized_sum = quantized_sum + q * keep
                residual = residual - q.detach()
                all_codes.append(codes.view(batch, frames))
            # straight-through estimator: forward uses the codes, backward sees identity (for the
            # encoder; factorized levels' projections get their gradient through quantized_sum)
            if self.rotation:
                # projections (factorized) keep their path through quantized_sum's own gradient
                passed = rotate_to(flat, quantized_sum.detach())
                quantized = passed + (quantized_sum - quantized_sum.detach()) if self.factorized else passed
            elif self.factorized:
                quantized = (flat - flat.detach()) + quantized_sum
            else:
                quantized = flat + (quantized_sum - flat).detach()
            quantized = quantized.view(batch, frames, dim).permute(0, 2, 1)
            codes = torch.stack(all_codes, dim=1)
        return QuantizerOutput(quantized, codes, commit, levels_used)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, frames] -> [B, D, frames] float32 (n_q may be below n_codebooks)."""
        out = None
        for i in range(codes.shape[1]):
            e = self.levels[i].decode_codes(codes[:, i])  # [B, frames, D]
            out = e if out is None else out + e
        return out.permute(0, 2, 1).float()

    def usage(self) -> list[dict]:
        return [level.usage() for level in self.levels]
