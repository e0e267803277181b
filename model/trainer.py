"""The training loop: AdamW, warm-up + cosine decay, gradient clipping, optional AMP, validation each
epoch, atomic `last` / `best` checkpoints, exact resume, time/step budgets, DDP via torchrun.

The cosine is planned over all epochs; with `max_minutes` (and `lr_decay_on_budget`, the default) it
follows the clock instead when that is further along, so a run on a time budget ends at the floor
rate rather than being cut off near the peak (on the Telugu bench corpus, after 10 CPU-minutes the planned
100-epoch cosine was still at 0.98 x peak when the budget ran out). The codebooks' EMA memory
lengthens with the steps (quantizer.codebook_decay_at).

With `weight_ema_decay` (default 0.99) validation scores, and checkpoints deliver as "model", an
exponential moving average of the weights (the live weights a resumed run continues from are
"train_weights"). Validation SNR (`val_snr_db` in the history) is energy-weighted over the whole
validation set: 10 log10(total signal energy / total error energy), not a mean of per-crop dB.
That set is held out by utterance when the data allows it (dataset.CropSource: a --val_dir, whole
files, or each file's tail behind a gap of one receptive field); checkpoints save how as
"validation_split".

Callbacks: any object with some of `on_batch(x, y, losses)` (after the forward), `on_backward(model)`
(after backward, gradients unscaled, before clipping), `on_step(scaler=None)` (after the optimizer
step), `on_validation(ref, est)` (whole validation set), plus the display hooks `on_log(step, stats)`
and `on_epoch(entry)`. An exception raised by a callback propagates and stops training before any
checkpoint of that step is written: the last good checkpoint stays.

Independently of callbacks the loop stops on a non-finite loss or a non-finite / absurdly large
input batch (`TrainingStopped`); those checks ride on the one host read-back per step that the
progress display needs anyway.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .codec import Codec
from .config import CodecConfig
from .dataset import CropSource, StepBatchSampler, TrainCropDataset
from .losses import MultiScaleSTFTDiscriminator, ReconstructionLoss, discriminator_hinge_loss, generator_adversarial_losses
from .options import TrainOptions
from .quantizer import codebook_decay_at
from .receptive import receptive_field_samples


class TrainSetupError(ValueError):
    """The run cannot start (output folder not writable, nothing to resume, bad option)."""


class TrainingStopped(RuntimeError):
    """Training stopped on a detected fault; no checkpoint was written for the bad step."""

    def __init__(self, message: str, *, step: int, reason: str, details: dict | None = None):
        super().__init__(message)
        self.step, self.reason, self.details = step, reason, dict(details or {})


class CheckpointWriteError(TrainingStopped):
    """Writing a checkpoint failed (disk full, permissions); the previous file is untouched."""


@dataclass
class TrainResult:
    history: list[dict]
    stop_reason: str
    steps: int
    seconds: float
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    warnings: list[str] = field(default_factory=list)
    usage: list[dict] = field(default_factory=list)


def _call(callbacks: Iterable[Any], name: str, *args, **kwargs) -> None:
    for cb in callbacks:
        method = getattr(cb, name, None)
        if method is not None:
            method(*args, **kwargs)


def snr_db(ref: torch.Tensor, est: torch.Tensor) -> float:
    """SNR from total power over everything given (not a mean of per-crop dB, which silent crops
    dominate)."""
    ref, est = ref.double(), est.double()
    noise = (ref - est).pow(2).sum()
    signal = ref.pow(2).sum()
    if noise == 0:
        return math.inf
    return float(10 * torch.log10(signal.clamp(min=1e-20) / noise))


def si_snr_db(ref: torch.Tensor, est: torch.Tensor, min_energy: float = 1e-8) -> float:
    """Mean over crops of scale-invariant SNR (zero-mean, projection onto the reference); crops
    with a silent reference are left out (their SI-SNR is undefined)."""
    ref = ref.double().flatten(1)
    est = est.double().flatten(1)
    ref = ref - ref.mean(1, keepdim=True)
    est = est - est.mean(1, keepdim=True)
    energy = ref.pow(2).sum(1)
    keep = energy > min_energy * ref.shape[1]
    if not bool(keep.any()):
        return math.nan
    ref, est, energy = ref[keep], est[keep], energy[keep]
    target = (est * ref).sum(1, keepdim=True) / energy[:, None] * ref
    noise = (est - target).pow(2).sum(1).clamp(min=1e-20)
    return float((10 * torch.log10(target.pow(2).sum(1).clamp(min=1e-20) / noise)).mean())


class Trainer:
    def __init__(self, config: CodecConfig, options: TrainOptions, callbacks: Iterable[Any] = ()):
        self.config, self.options = config, options
        self.callbacks = list(callbacks)
        self._setup_distributed()
        self.device = self._pick_device(options.device)
        self._check_amp()
        self._check_augmentation()
        self.exp_dir = Path(options.checkpoint_dir) / options.experiment_name
        if self.is_main:
            self._check_writable()
        self.source = CropSource(options.data_dir, sample_rate=config.sample_rate, channels=config.channels,
                                 segment_samples=int(round(options.segment_seconds * config.sample_rate)),
                                 val_fraction=options.val_fraction, max_val_crops=options.max_val_crops,
                                 strict_rate=options.strict_rate, short_files=options.short_files,
                                 min_crop_rms_db=options.min_crop_rms_db, seed=options.seed,
                                 val_dir=options.val_dir, gap_samples=receptive_field_samples(config),
                                 speed_perturb=options.speed_perturb, gain_db=options.gain_db)
        crops_per_epoch = max(1, int(self.source.train_seconds / options.segment_seconds))
        self.steps_per_epoch = options.steps_per_epoch or max(1, crops_per_epoch // (options.batch_size * self.world_size))
        # the lr schedule is planned over all epochs; --max-steps / --max-minutes only stop the run
        # early, so a run cut into pieces follows exactly the schedule of an uninterrupted one
        self.total_steps = options.num_epochs * self.steps_per_epoch
        self.warmup_steps = (options.warmup_steps if options.warmup_steps is not None
                             else min(50, max(1, self.total_steps // 20)))

        torch.manual_seed(options.seed)
        self.model = Codec(config).to(self.device)
        self.loss_fn = ReconstructionLoss(config).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=options.learning_rate,
                                           betas=options.betas, weight_decay=options.weight_decay)
        self.discriminator = self.disc_optimizer = None
        if options.adversarial:
            self.discriminator = MultiScaleSTFTDiscriminator(config).to(self.device)
            self.disc_optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=options.learning_rate,
                                                    betas=options.betas, weight_decay=options.weight_decay)
        # the scaler lives on the model's device: torch.amp runs float16 autocast and GradScaler for
        # real on the CPU too, so `--amp fp16` takes this one code path everywhere
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=(options.amp == "fp16"))
        self.ema_model = self._new_ema_model()
        self.step = 0
        self.history: list[dict] = []
        self.best_val_snr_db = -math.inf
        self._epoch_sums: dict[str, float] = {}
        self._epoch_count = 0
        # the part of the time-budget decay done before this run (a resumed run finishes the rest)
        self._budget_progress_start = 0.0
        self.budget_progress = 0.0
        if options.resume:
            self._resume()
        self.train_model = self.model
        self.train_disc = self.discriminator
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers are NOT broadcast: the quantizer all-reduces its own EMA statistics, so equal
            # codebooks on every rank are a property of the algorithm, not an overwrite from rank 0
            self.train_model = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
            if self.discriminator is not None:
                self.train_disc = DistributedDataParallel(self.discriminator, device_ids=ids, broadcast_buffers=False)
        if not options.resume:
            # different quantizer-dropout draws per rank; model init above was identical
            torch.manual_seed(options.seed + 7919 * self.rank)
        self.validation_set = self.source.validation_crops() if self.is_main else None

    # -- setup ------------------------------------------------------------------------------
    def _setup_distributed(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and self.options.device in ("auto", "cuda") else "gloo"
            dist.init_process_group(backend)
        self.is_main = self.rank == 0

    def _pick_device(self, name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise TrainSetupError("--device cuda requested but CUDA is not available")
            if self.world_size > 1:
                return torch.device("cuda", self.local_rank)
        return torch.device(name)

    def _new_ema_model(self) -> Codec | None:
        if not self.options.weight_ema_decay:
            return None
        ema = Codec(self.config).to(self.device)
        ema.load_state_dict(self.model.state_dict())
        ema.requires_grad_(False)
        return ema.eval()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_model is None:
            return
        # a short memory at first (decay (1 + t) / (10 + t)) so the average does not drag the random
        # initialisation along; the configured decay from step ~90 on at 0.99
        decay = min(float(self.options.weight_ema_decay), (1 + self.step) / (10 + self.step))
        for averaged, live in zip(self.ema_model.parameters(), self.model.parameters()):
            averaged.lerp_(live.detach(), 1 - decay)
        # codebooks are EMA statistics already and must match the encoder they were fitted to
        for averaged, live in zip(self.ema_model.buffers(), self.model.buffers()):
            averaged.copy_(live)

    def eval_model(self) -> Codec:
        """The weights validation measures and checkpoints deliver: the weight average when
        `weight_ema_decay` is set, else the live model."""
        return self.ema_model if self.ema_model is not None else self.model

    def _check_amp(self) -> None:
        amp = self.options.amp
        if amp in (None, "", "none", "off"):
            self.options.amp = None
            return
        if amp not in ("bf16", "fp16"):
            raise TrainSetupError(f"--amp must be bf16 or fp16, got {amp!r}")

    def _check_augmentation(self) -> None:
        # beyond +-50 % a crop is read at twice or a third of its length: no longer speech at its rate
        speed, gain = self.options.speed_perturb, self.options.gain_db
        if not (math.isfinite(speed) and 0.0 <= speed <= 0.5):
            raise TrainSetupError(f"--speed_perturb must be between 0 and 0.5 (a fraction: 0.05 is +-5 %), got {speed}")
        if not (math.isfinite(gain) and 0.0 <= gain <= 40.0):
            raise TrainSetupError(f"--gain_db must be between 0 and 40 dB, got {gain}")

    def _check_writable(self) -> None:
        try:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            probe = self.exp_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise TrainSetupError(f"checkpoint folder not writable: {self.exp_dir} ({exc.strerror or exc})") from None

    def _autocast(self):
        if self.options.amp is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.options.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # -- schedule ---------------------------------------------------------------------------
    def lr_at(self, step: int, budget_progress: float = 0.0) -> float:
        """Linear warm-up, then cosine from the peak to min_lr_ratio x peak over the planned steps, or
        over the time budget when `budget_progress` (0..1, see `_budget_progress`) is further along."""
        peak = self.options.learning_rate
        if step < self.warmup_steps:
            return peak * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, max((step - self.warmup_steps) / span, budget_progress))
        floor = self.options.min_lr_ratio
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _budget_progress(self, elapsed_s: float, decay_start_s: float | None) -> float:
        """How far the decay is along the time budget: 0 until the warm-up ends, 1 when --max-minutes
        runs out. Planned on the clock, not on a step count guessed from an early step rate, so a
        machine that slows down or speeds up mid-run still ends its decay on time. A resumed run
        spends its own budget on the part of the decay the earlier run left."""
        budget_s = (self.options.max_minutes or 0) * 60
        if not (self.options.lr_decay_on_budget and budget_s > 0) or decay_start_s is None:
            return self._budget_progress_start
        if elapsed_s >= budget_s:
            return 1.0
        fraction = (elapsed_s - decay_start_s) / max(budget_s - decay_start_s, 1e-9)
        start = self._budget_progress_start
        return min(1.0, start + (1 - start) * max(0.0, fraction))

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.exp_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.exp_dir / "best.pt"

    def state(self) -> dict[str, Any]:
        state = {
            "config": self.config.to_dict(),
            # "model" holds the weights validation measured (the average when weight EMA is on), so
            # every reader of the checkpoint judges the model that was validated; the live weights
            # that a resumed run continues from are "train_weights"
            "model": self.eval_model().state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "peak_lr": self.options.learning_rate,
                          "warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                          "min_lr_ratio": self.options.min_lr_ratio, "last_lr": self.last_lr,
                          "budget_progress": self.budget_progress},
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "history": list(self.history),
            # how the validation behind history's val_snr_db was held out (check-ckpt's C219 reads it)
            "validation_split": dict(self.source.split),
            "best_val_snr_db": self.best_val_snr_db,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_count": self._epoch_count,
            "train_args": self.options.to_dict(),
            "rng": rng_state(),
        }
        if self.ema_model is not None:
            state["train_weights"] = self.model.state_dict()
            state["weight_ema_decay"] = float(self.options.weight_ema_decay)
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
        return state

    def save(self, path: Path) -> Path:
        # a callback that buffers checks (the monitor) reads back first: never checkpoint a step
        # whose fault has not been looked at yet
        _call(self.callbacks, "flush")
        try:
            return save_checkpoint(path, self.state())
        except OSError as exc:  # disk full, quota, permissions: the write is atomic, so the old file stands
            previous = f"the previous {path.name} is intact" if path.exists() else f"no earlier {path.name} existed"
            raise CheckpointWriteError(f"could not write checkpoint {path}: {exc.strerror or exc}; {previous}",
                                       step=self.step, reason="checkpoint_write_failed",
                                       details={"path": str(path), "errno": exc.errno or 0}) from None

    def _resume(self) -> None:
        if not self.last_path.exists():
            raise TrainSetupError(f"--resume: no checkpoint at {self.last_path}")
        try:
            state = load_checkpoint(self.last_path, map_location=self.device)
        except Exception as exc:
            raise TrainSetupError(f"--resume: cannot load {self.last_path}: {exc}") from None
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            # a checkpoint that loads but does not fit: damaged, hand-edited or from another model
            raise TrainSetupError(f"--resume: {self.last_path} cannot be restored "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                                  "move it aside to start fresh, or point --checkpoint_dir at the right run") from None

    def _restore(self, state: dict) -> None:
        saved = CodecConfig.from_dict(state["config"])
        if saved.to_dict() != self.config.to_dict():
            # the checkpoint's architecture wins: a resumed run continues the same model
            self.config = saved
            self.model = Codec(saved).to(self.device)
            self.loss_fn = ReconstructionLoss(saved).to(self.device)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.options.learning_rate,
                                               betas=self.options.betas, weight_decay=self.options.weight_decay)
        self.model.load_state_dict(state.get("train_weights", state["model"]))
        self.ema_model = self._new_ema_model()
        if self.ema_model is not None:
            self.ema_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.discriminator is not None and "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.step = int(state["step"])
        self.steps_per_epoch = int(state.get("steps_per_epoch", self.steps_per_epoch))
        sched = state.get("scheduler") or {}
        # keep the original schedule's shape so the resumed lr curve continues where it was
        self.warmup_steps = int(sched.get("warmup_steps", self.warmup_steps))
        self._budget_progress_start = self.budget_progress = float(sched.get("budget_progress", 0.0))
        self.total_steps = self.options.num_epochs * self.steps_per_epoch
        self.history = list(state.get("history", []))
        self.best_val_snr_db = float(state.get("best_val_snr_db", -math.inf))
        self._epoch_sums = {k: float(v) for k, v in (state.get("epoch_sums") or {}).items()}
        self._epoch_count = int(state.get("epoch_count", 0))
        set_rng_state(state["rng"])

    # -- one step ---------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with self._autocast():
            out = self.train_model(x)
            losses = self.loss_fn(out.audio, x, out.commit_loss)
        if self.discriminator is not None and self.step >= self.options.adversarial_start_step:
            with self._autocast():
                d_loss = discriminator_hinge_loss(self.train_disc(x), self.train_disc(out.audio.detach()))
            self.disc_optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.disc_optimizer)
            with self._autocast():
                real = self.train_disc(x)
                adv, feat = generator_adversarial_losses(real, self.train_disc(out.audio))
            losses["disc"] = d_loss.detach()
            losses["adv"], losses["feat"] = adv, feat
            losses["total"] = losses["total"] + self.config.adv_weight * adv + self.config.feature_weight * feat
        return out.audio, losses

    def _read_back(self, x: torch.Tensor, y: torch.Tensor, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """One host sync per step: input/output ranges and every loss term."""
        names = list(losses)
        packed = torch.stack([x.detach().abs().amax().float(), torch.isfinite(x).all().float(),
                              y.detach().abs().amax().float(), torch.isfinite(y.detach()).all().float(),
                              *[losses[n].detach().float() for n in names]]).cpu().tolist()
        stats = {"input_max_abs": packed[0], "output_max_abs": packed[2]}
        stats.update({n: v for n, v in zip(names, packed[4:])})
        if packed[1] < 1 or not math.isfinite(packed[0]):
            raise TrainingStopped(f"step {self.step}: non-finite input batch", step=self.step, reason="nonfinite_input")
        if packed[0] > self.options.max_abs_input:
            raise TrainingStopped(f"step {self.step}: input batch max |x| = {packed[0]:.4g} exceeds "
                                  f"{self.options.max_abs_input} (audio is not normalised to [-1, 1])",
                                  step=self.step, reason="input_range", details={"input_max_abs": packed[0]})
        bad = [n for n in names if not math.isfinite(stats[n])]
        if bad:
            raise TrainingStopped(f"step {self.step}: non-finite loss term(s) {', '.join(bad)}"
                                  + ("" if packed[3] >= 1 else " (decoder output non-finite)"),
                                  step=self.step, reason="nonfinite_loss",
                                  details={"terms": bad, "output_finite": packed[3] >= 1})
        if packed[3] < 1:
            raise TrainingStopped(f"step {self.step}: non-finite decoder output", step=self.step,
                                  reason="nonfinite_output")
        return stats

    @property
    def last_lr(self) -> float:
        """The rate of the last step taken (from the schedule as it stood then)."""
        return self.lr_at(max(self.step - 1, 0), self.budget_progress)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        lr = self.lr_at(self.step, self.budget_progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.disc_optimizer is not None:
            for group in self.disc_optimizer.param_groups:
                group["lr"] = lr
        self.model.train()
        # quantizer warm-up: an unquantized autoencoder first; the codebooks are k-means initialised
        # on the first quantized batch, i.e. on a trained encoder's output
        self.model.quantizer.bypass = self.step < self.options.quantizer_warmup_steps
        self.model.quantizer.set_decay(codebook_decay_at(self.step, self.config.ema_decay, self.config.ema_decay_final))
        x = x.to(self.device, non_blocking=True)
        y, losses = self._forward(x)
        _call(self.callbacks, "on_batch", x, y, losses)
        stats = self._read_back(x, y, losses)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        self.scaler.unscale_(self.optimizer)
        _call(self.callbacks, "on_backward", self.model)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.options.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._update_ema()
        _call(self.callbacks, "on_step", scaler=self.scaler if self.scaler.is_enabled() else None)
        self.step += 1
        stats["lr"] = lr
        stats["grad_norm"] = float(grad_norm)
        return stats

    # -- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        ref = self.validation_set
        model = self.eval_model()
        model.eval()
        outs = []
        for chunk in ref.split(max(1, self.options.batch_size)):
            with self._autocast():
                outs.append(model(chunk.to(self.device)).audio.float().cpu())
        est = torch.cat(outs)
        self.model.train()
        mel = float(self.loss_fn.mel(est, ref))
        _call(self.callbacks, "on_validation", ref, est)
        return {"val_snr_db": snr_db(ref, est), "val_si_snr_db": si_snr_db(ref, est), "val_mel_distance": mel}

    def _end_epoch(self, seconds: float, partial: bool) -> dict:
        metrics = self.validate()
        n = max(self._epoch_count, 1)
        usage = self.model.usage()
        entry = {"epoch": math.ceil(self.step / self.steps_per_epoch), "step": self.step,
                 "train_loss": self._epoch_sums.get("total", math.nan) / n,
                 **{f"train_{k}": v / n for k, v in self._epoch_sums.items() if k != "total"},
                 **metrics, "lr": self.last_lr, "seconds": seconds,
                 "codebook_used_fraction": sum(u["used"] for u in usage) / sum(u["codebook_size"] for u in usage),
                 "codebook_perplexity_mean": sum(u["perplexity"] for u in usage) / len(usage),
                 "partial": partial}
        self.history.append(entry)
        if not partial:
            # a budget stop mid-epoch keeps the running sums, so a resumed run's epoch entry covers
            # the whole epoch exactly as an uninterrupted run's would
            self._epoch_sums, self._epoch_count = {}, 0
        improved = metrics["val_snr_db"] > self.best_val_snr_db
        if improved:
            self.best_val_snr_db = metrics["val_snr_db"]
        self.save(self.last_path)
        if improved:
            self.save(self.best_path)
        _call(self.callbacks, "on_epoch", entry)
        return entry

    # -- the loop ---------------------------------------------------------------------------
    def _agree(self, flag: bool) -> bool:
        if self.world_size > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return bool(t.item() > 0)
        return flag

    def _agree_max(self, value: float) -> float:
        """The largest value over the ranks (every rank then takes the same decisions and lr)."""
        if self.world_size > 1:
            t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return float(t.item())
        return value

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def fit(self) -> TrainResult:
        o = self.options
        start = time.monotonic()
        stop_step = self.total_steps if o.max_steps is None else min(self.total_steps, o.max_steps)
        sampler = StepBatchSampler(o.batch_size, self.step, stop_step, self.rank, self.world_size)
        # a private generator: creating the loader must not consume the global RNG, or a resumed
        # run would draw different quantizer-dropout masks than an uninterrupted one
        loader = torch.utils.data.DataLoader(TrainCropDataset(self.source), batch_sampler=sampler,
                                             num_workers=o.num_workers, generator=torch.Generator())
        out_of_time = False
        last_epoch_end_step = self.step if self.step % self.steps_per_epoch == 0 else None
        decay_start_s = 0.0 if self.step >= self.warmup_steps else None
        for x in loader:
            stats = self.train_step(x)
            for k, v in stats.items():
                if k not in ("lr", "grad_norm", "input_max_abs", "output_max_abs"):
                    self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + v
            self._epoch_count += 1
            if self.is_main and (self.step % o.log_every == 0 or self.step == 1):
                _call(self.callbacks, "on_log", self.step, stats)
            # one agreed clock for all ranks: the stop decision and the budget-planned lr
            elapsed = self._agree_max(time.monotonic() - start)
            if decay_start_s is None and self.step >= self.warmup_steps:
                decay_start_s = elapsed
            self.budget_progress = self._budget_progress(elapsed, decay_start_s)
            out_of_time = o.max_minutes is not None and elapsed >= o.max_minutes * 60
            if self.step % self.steps_per_epoch == 0:
                if self.is_main:
                    self._end_epoch(elapsed, partial=False)
                last_epoch_end_step = self.step
                self._barrier()
            elif o.save_every and self.step % o.save_every == 0:
                if self.is_main:
                    self.save(self.last_path)
                self._barrier()
            if out_of_time:
                break
        if last_epoch_end_step != self.step and self.step > 0:
            # stopped mid-epoch by a budget: validate and checkpoint what was trained
            if self.is_main:
                self._end_epoch(time.monotonic() - start, partial=True)
            self._barrier()
        if out_of_time:
            stop_reason = "max_minutes"
        elif self.step >= self.total_steps:
            stop_reason = "completed"
        else:
            stop_reason = "max_steps"
        return TrainResult(history=list(self.history), stop_reason=stop_reason, steps=self.step,
                           seconds=time.monotonic() - start,
                           last_checkpoint=self.last_path if self.last_path.exists() else None,
                           best_checkpoint=self.best_path if self.best_path.exists() else None,
                           warnings=list(self.source.warnings), usage=self.model.usage())

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
