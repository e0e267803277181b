"""Host-side measurements of the live monitor: plain dataclasses the T6xx checks judge.

The monitor fills them at each read-back (one window of steps) and at each validation; the checks in
`codecdoctor/checks/training.py` only read them. They serialize with `findings.jsonable`.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from codecdoctor.core.findings import Finding


@dataclass
class StepWindow:
    """Per-step values of the steps read back together; NaN where a hook did not run."""

    steps: list[int]
    columns: dict[str, list[float]]
    losses: dict[str, list[float]]
    in_samples: list[int]
    out_samples: list[int]
    grad_elements: int | None = None
    loss_dtypes: dict[str, str] = field(default_factory=dict)
    output_dtype: str | None = None

    def rms(self, prefix: str) -> list[float]:
        samples = self.in_samples if prefix == "in" else self.out_samples
        return [math.sqrt(e / n) if n and math.isfinite(e) else math.nan
                for e, n in zip(self.columns[f"{prefix}_energy"], samples)]

    def rms_ratio_db(self) -> list[float]:
        """20·log10(rms(output) / rms(input)) per step."""
        out = []
        for x, y in zip(self.rms("in"), self.rms("out")):
            out.append(20 * math.log10(y / x) if x > 0 and y > 0 else math.nan)
        return out


@dataclass
class ScalerBypass:
    """Steps of the model's optimizer taken outside `GradScaler.step` while a scaler was active (T614)."""

    optimizer: str
    bypassed_steps: int
    scaler_steps: int          # steps that went through scaler.step before the first bypass
    first_step: int | None


@dataclass
class CodebookLevel:
    level: int
    name: str
    codebook_size: int
    perplexity: float
    dead_codes: float
    initted: bool


@dataclass
class EmittedLevel:
    """One quantizer level's usage measured from the integer codes it emitted on one training batch
    (not from its EMA buffers). `codebook_size` is 0 when the module does not say."""

    level: int
    name: str
    step: int
    codebook_size: int
    frames: int
    distinct: int
    perplexity: float


@dataclass
class NonfiniteTrace:
    """Result of re-running the offending batch under forward hooks (T604)."""

    step: int
    terms: list[str]
    term_values: dict[str, float]
    module: str | None
    module_params_nonfinite: bool = False
    item: int | None = None
    detail: str = ""


@dataclass
class ValidationMeasurements:
    step: int
    pairs: int
    snr_db: float
    pair_snr_db: list[float]
    worst_pair: int
    rms_ratio_db: float
    diagnosis: list[Finding] = field(default_factory=list)
    diagnosis_checks: list[str] = field(default_factory=list)
    diagnosis_notes: list[str] = field(default_factory=list)  # a pair check's internal error
    what_if: dict[str, Any] = field(default_factory=dict)
    # optimizer steps taken before this validation (T608: 0 = a baseline of the initial weights)
    trained_steps: int | None = None


@dataclass
class DdpMeasurements:
    rank: int
    world_size: int
    step: int
    tensors: list[str]
    spread: list[float]  # per tensor: max over ranks − min over ranks of its checksums, relative


@dataclass
class LossBalance:
    """T612: each loss term's share of the gradient norm at the decoder output, on one step.

    share = ‖∂L_term/∂y‖ / Σ_terms ‖∂L/∂y‖ (norms of the gradient each term alone sends into the
    decoder output y, as EnCodec's balancer measures them). Terms that do not reach y (commitment,
    a discriminator's own loss) have norm 0."""

    step: int
    terms: list[str]
    grad_norms: list[float]

    @property
    def shares(self) -> list[float]:
        finite = [g if math.isfinite(g) else 0.0 for g in self.grad_norms]
        total = sum(finite)
        return [g / total if total > 0 else 0.0 for g in finite]


@dataclass
class SpectralContext:
    """What the monitor knows about the spectral loss for S501-S503."""

    terms: list[str]
    dtype: str | None
    fft_sizes: list[int]
    peak: float | None
    nonfinite_terms: list[str] = field(default_factory=list)


class RunState:
    """History carried across windows (bounded: long runs keep the newest points)."""

    def __init__(self, keep: int = 4000):
        self.windows = 0
        self.steps_seen = 0
        self.rms_ratio_db: list[tuple[int, float]] = []  # (last step, window median)
        self.grad_norms: deque[float] = deque(maxlen=keep)
        self.loss_total: deque[tuple[int, float]] = deque(maxlen=keep)
        self.perplexity_peak: dict[int, float] = {}
        self.input_energy = 0.0
        self.input_clip_error_energy = 0.0
        self.scaled_steps = 0
        self.skipped_steps = 0
        self.last_scale: float | None = None
        self.lr_history: list[tuple[int, float]] = []
        self.optimizer_steps = 0
        self.validation_history: list[tuple[int, float]] = []  # (step, SNR dB) of every validation
        self.first_loss_median: dict[str, float] = {}  # per term, its first window's median (T613)

    def grad_norm_median(self) -> float | None:
        finite = [g for g in self.grad_norms if math.isfinite(g)]
        return statistics.median(finite) if len(finite) >= 20 else None


@dataclass
class TrainingMeasurements:
    """Everything one run of the T6xx checks sees. Parts that were not measured are None."""

    state: RunState
    output_bound: float | None
    warmup_steps: int
    window: StepWindow | None = None
    lr: float | None = None
    levels: list[CodebookLevel] | None = None
    nonfinite: NonfiniteTrace | None = None
    validation: ValidationMeasurements | None = None
    ddp: DdpMeasurements | None = None
    spectral: SpectralContext | None = None
    scaler_used: bool = False
    scaler_bypass: ScalerBypass | None = None
    codebook_warmup_steps: int = 0
    balance: list[LossBalance] | None = None
    # T609: the optimizer's class name and the peak its scheduler heads for (`initial_lr` /
    # `max_lr` that torch's schedulers keep in each param group), when known
    optimizer_kind: str | None = None
    lr_scheduled_peak: float | None = None
    # T608: judged once more when the run has ended; IDs of warning-or-worse findings of the run so
    # far (a measured cause of a low validation SNR)
    run_ended: bool = False
    run_causes: list[str] = field(default_factory=list)
    emitted: list[EmittedLevel] | None = None
    discriminator: str | None = None  # the discriminator's class, when the loop reported it


@dataclass
class MonitorSummary:
    """What the end-of-run report shows, as plain data: the report reads this, never the Monitor.

    `curves`: one point per read-back window; `validations`: one entry per validation; `balance`:
    the T612 measurements (loss term shares at the decoder output) on the read-back schedule."""

    mode: str
    read_every: int
    output_bound: float | None
    sample_rate: int
    steps: int
    read_backs: int
    event_log: str | None
    curves: list[dict[str, Any]]
    validations: list[dict[str, Any]]
    latest: dict[str, Any]
    input_snr_ceiling_db: float | None
    balance: list[dict[str, Any]] = field(default_factory=list)
    loss_series: list[tuple[int, float]] = field(default_factory=list)

    @property
    def best_validation(self) -> dict[str, Any] | None:
        finite = [v for v in self.validations if isinstance(v.get("snr_db"), (int, float)) and math.isfinite(v["snr_db"])]
        return max(finite, key=lambda v: v["snr_db"]) if finite else None

    def measurements(self) -> dict[str, Any]:
        """The JSON `measurements` of a monitor (or watch) report."""
        final = self.validations[-1] if self.validations else None
        best = self.best_validation
        return {"steps": self.steps, "read_backs": self.read_backs, "event_log": self.event_log,
                "final_val_snr_db": final["snr_db"] if final else None,
                "best_val_snr_db": best["snr_db"] if best else None,
                "best_step": best["step"] if best else None,
                "curves": self.curves, "validation": self.validations, "loss_balance": self.balance,
                "loss_series": [list(point) for point in self.loss_series],
                "latest": self.latest, "input_snr_ceiling_db": self.input_snr_ceiling_db}


# loss terms named as the discriminator's own loss (a foreign loop's names; watch writes "disc_loss")
DISC_TERMS = ("disc", "d_loss", "loss_d", "discriminator")


def find_term(names, wanted) -> str | None:
    """The first name equal to, or starting with, one of `wanted` (case-insensitive)."""
    for name in names:
        low = name.lower()
        if low in wanted or any(low.startswith(w) for w in wanted):
            return name
    return None


def is_discriminator_term(name: str) -> bool:
    return find_term([name], DISC_TERMS) is not None


def median_finite(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def step_span(steps: list[int]) -> str:
    if not steps:
        return "no steps"
    return f"step {steps[0]}" if steps[0] == steps[-1] else f"steps {steps[0]}-{steps[-1]}"
