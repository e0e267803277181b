"""The trainer's options, declared once: `codecdoctor train`'s command line is generated from the
fields that carry a `help` in their metadata. No torch import here, so building the CLI stays fast."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainOptions:
    """Everything the trainer takes. Fields with a `help` in their metadata are command-line options
    of `codecdoctor train` (generated from this class: declared once, here)."""

    data_dir: str = field(metadata={"help": "Folder of audio files (searched recursively)."})
    val_dir: str | None = field(default=None, metadata={
        "help": "Folder of validation audio, never trained on (default: whole files of DATA_DIR when it has "
                "several, else the tail of each file behind a gap of one receptive field)."})
    checkpoint_dir: str = field(default="checkpoints", metadata={
        "help": "Checkpoints go to CHECKPOINT_DIR/EXPERIMENT_NAME/{last,best}.pt."})
    experiment_name: str = field(default="codec", metadata={"help": "Name of this run (a folder under CHECKPOINT_DIR)."})
    batch_size: int = field(default=16, metadata={"help": "Crops per optimizer step (per rank)."})
    num_epochs: int = field(default=100, metadata={"help": "Epochs to train."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    betas: tuple[float, float] = (0.8, 0.99)
    warmup_steps: int | None = field(default=None, metadata={
        "help": "Linear warm-up steps (default: 5% of the planned steps, at most 50)."})
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak
    lr_decay_on_budget: bool = field(default=True, metadata={
        "help": "With --max-minutes, the cosine decay ends when the time budget does (whichever comes first: "
                "the budget or the planned epochs)."})
    grad_clip: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this."})
    segment_seconds: float = field(default=0.25, metadata={"help": "Training crop length in seconds."})
    steps_per_epoch: int | None = field(default=None, metadata={
        "help": "Steps per epoch (default: training audio / (crop x batch x ranks))."})
    resume: bool = field(default=False, metadata={"help": "Continue from CHECKPOINT_DIR/EXPERIMENT_NAME/last.pt."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many steps in total."})
    max_minutes: float | None = field(default=None, metadata={"help": "Stop after this many minutes of this run."})
    save_every: int | None = field(default=None, metadata={"help": "Also write last.pt every N steps."})
    amp: str | None = field(default=None, metadata={
        "help": "Mixed precision autocast on the model's device (fp16 uses a GradScaler).", "choices": ("bf16", "fp16")})
    adversarial: bool = field(default=False, metadata={"help": "Add the multi-scale STFT discriminator."})
    adversarial_start_step: int = 0
    weight_ema_decay: float | None = field(default=0.99, metadata={
        "help": "Validate and save an exponential moving average of the weights with this decay (0: off)."})
    quantizer_warmup_steps: int = field(default=0, metadata={
        "help": "Train this many first steps without quantization; the codebooks are then initialised by "
                "k-means on the trained encoder's output."})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    seed: int = field(default=0, metadata={"help": "Random seed (crops, init)."})
    strict_rate: bool = field(default=False, metadata={
        "help": "Refuse files at another sample rate instead of resampling."})
    short_files: str = "pad"
    val_fraction: float = 0.05
    max_val_crops: int = 32
    min_crop_rms_db: float | None = None
    speed_perturb: float = field(default=0.0, metadata={
        "help": "Play training crops up to this fraction faster or slower (0.05: +-5 %, pitch and rate together)."})
    gain_db: float = field(default=0.0, metadata={
        "help": "Scale training crops by a random gain within +-GAIN_DB (the peak kept at or below 0.95)."})
    max_abs_input: float = 4.0  # |x| beyond this is not normalised audio (e.g. int16 read as float)
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
