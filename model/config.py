"""One dataclass holds every size of the codec; it is saved inside each checkpoint.

The defaults are a 16 kHz mono speech codec: strides 2·4·5·8 give a hop of 320 samples (50 frames
per second) and 12 codebooks of 1024 entries give 50 × 12 × 10 = 6000 bit/s (EnCodec's 6 kbps
operating point). At 4 kbps (8 codebooks, `--codebooks 8`) the quantizer cost 2.5 dB of the
autoencoder's 10.1 dB held-out SNR after 10 CPU-minutes and no lever of the recipe or of the
quantizer's training moved that beyond the run-to-run spread (README, bench_codec); levels 9-12
add 0.7 dB at the same step rate. A learned lapped linear
path runs next to the deep encoder/decoder (`linear_path`, see seanet.LappedLinear): it makes the
output follow the input within the first epoch, where the deep path alone sat at 0 dB for ~150
steps on Telugu speech (bench/bench_codec.py measures both recipes). The widths are kept
small (base 16 channels, ~1.5 M parameters) so the default trains meaningfully on a 2-core CPU:
base 32 took ~3x longer per step (2.4 s vs 0.8 s for 8 × 0.5 s crops on a shared 2-core machine)
and was still at -0.2 dB validation SNR after 50 steps. Use --base-channels 32 on a GPU.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OUTPUT_BOUNDS = ("tanh", "none")
SNR_LOSSES = ("linear", "db")
QUANTIZER_GRADIENTS = ("identity", "rotation")
CODE_SEARCHES = ("cosine", "euclidean")
# fields added after checkpoints already existed, with the value every older checkpoint was trained with
PRE_FIELD_VALUES = {"linear_path": False, "snr_loss": "linear", "ema_decay_final": None, "code_dim": 0,
                    "quantizer_gradient": "identity"}


@dataclass
class CodecConfig:
    # signal
    sample_rate: int = 16000
    channels: int = 1
    # encoder / decoder (SEANet style): width doubles after every strided block
    base_channels: int = 16
    strides: tuple[int, ...] = (2, 4, 5, 8)
    residual_dilations: tuple[int, ...] = (1, 3)
    kernel_size: int = 7
    residual_kernel_size: int = 3
    latent_dim: int = 64
    # a learned lapped linear transform (frames of 2 hops, one hop apart) from the waveform to the
    # latent and back, added to the deep path: see seanet.LappedLinear
    linear_path: bool = True
    output_bound: str = "tanh"
    # residual vector quantizer
    n_codebooks: int = 12
    codebook_size: int = 1024
    # factorized codes: each level projects its residual down to this many dimensions (learned
    # linear map), picks the nearest code by cosine and projects it back up (quantizer module
    # docstring). 0 (the default) keeps the codes in the full latent dim with Euclidean search:
    # on Telugu speech, 1 CPU thread, 4 minutes, code_dim 8 reached 3.35 dB held out (cosine) and
    # 5.42 dB (euclidean) against 6.77 dB for full-dim codes (bench_codec --variant; README)
    code_dim: int = 0
    # how a factorized level picks its code: "cosine" (direction; the entry's length is decoded)
    # or "euclidean" (nearest in the low-dim space)
    code_search: str = "cosine"
    # the encoder's gradient through the quantizer: "identity" (straight-through), or "rotation"
    # (the gradient turned by the rotation that maps the latent onto its quantized value;
    # quantizer.rotate_to). Same 4-minute run: 6.65 dB with rotation, 6.77 dB without
    quantizer_gradient: str = "identity"
    # 0.9 (a memory of ~10 batches) lets codebooks follow a fast-moving encoder early in training;
    # at 0.99 the same 150-step CPU run reached 3.4 dB instead of 5.6 dB validation SNR
    ema_decay: float = 0.9
    # ... but a memory of 10 batches of 200 frames is ~2 frames per code of 1024: each code is the
    # mean of its last couple of vectors, not a centroid. As the encoder settles the trainer lengthens
    # the memory (quantizer.codebook_decay_at: about steps / 9 batches) up to this decay (None: fixed).
    # Measured on the 16-minute checkpoint: refitting its codebooks by k-means on the training
    # latents raised held-out SNR from 5.6 to 7.0 dB with the same encoder and decoder.
    ema_decay_final: float | None = 0.99
    ema_epsilon: float = 1e-5
    kmeans_iters: int = 10
    # a code is dead when its EMA count falls below this fraction of the uniform share (total
    # count / codebook size): relative, so the rule does not change with batch size or crop length
    dead_code_fraction: float = 0.03
    # probability that one example in a batch is quantized with a random number of levels
    # (1..n_codebooks), so the codec also works at lower bitrates
    quantizer_dropout: float = 0.25
    # losses
    # mel at 0.25 next to the batch-SNR term: with 1.0 the phase-blind mel term dominated the first
    # ~100 steps (bench_codec, 4 kbps, 1 CPU thread: first-epoch validation SNR -1.5 dB at 1.0,
    # +0.9 dB at 0.25)
    mel_weight: float = 0.25
    l1_weight: float = 1.0
    # mean squared waveform error relative to the batch's signal power: minimising it is
    # maximising the batch SNR. L1 alone starts by pulling a sparse signal's output towards zero
    # (the median of speech-like samples is ~0), which keeps SNR near 0 dB for hundreds of steps.
    snr_weight: float = 1.0
    # "linear": the noise-to-signal power ratio itself; "db": log10 of it (= -SNR dB / 10), whose
    # gradient does not fade as the error shrinks
    snr_loss: str = "linear"
    commit_weight: float = 1.0
    mel_fft_sizes: tuple[int, ...] = (256, 512, 1024)
    mel_bins: tuple[int, ...] = (32, 64, 80)
    # adversarial (used only when training with --adversarial)
    adv_weight: float = 1.0
    feature_weight: float = 2.0
    disc_channels: int = 16
    disc_fft_sizes: tuple[int, ...] = (256, 512, 1024)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        self.residual_dilations = tuple(int(d) for d in self.residual_dilations)
        self.mel_fft_sizes = tuple(int(n) for n in self.mel_fft_sizes)
        self.mel_bins = tuple(int(n) for n in self.mel_bins)
        self.disc_fft_sizes = tuple(int(n) for n in self.disc_fft_sizes)
        if self.output_bound not in OUTPUT_BOUNDS:
            raise ValueError(f"output_bound must be one of {OUTPUT_BOUNDS}, got {self.output_bound!r}")
        if self.snr_loss not in SNR_LOSSES:
            raise ValueError(f"snr_loss must be one of {SNR_LOSSES}, got {self.snr_loss!r}")
        if len(self.mel_fft_sizes) != len(self.mel_bins):
            raise ValueError("mel_fft_sizes and mel_bins must have the same length")
        if self.quantizer_gradient not in QUANTIZER_GRADIENTS:
            raise ValueError(f"quantizer_gradient must be one of {QUANTIZER_GRADIENTS}, got {self.quantizer_gradient!r}")
        if self.code_search not in CODE_SEARCHES:
            raise ValueError(f"code_search must be one of {CODE_SEARCHES}, got {self.code_search!r}")
        if not 0 <= self.code_dim <= self.latent_dim:
            raise ValueError(f"code_dim must be 0 (codes in the latent dim) or 1..latent_dim ({self.latent_dim}), "
                             f"got {self.code_dim}")
        if self.codebook_size < 2 or self.n_codebooks < 1:
            raise ValueError("need at least one codebook with at least 2 entries")

    # derived sizes -----------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Input samples per latent frame (product of the strides)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def bits_per_frame(self) -> float:
        return self.n_codebooks * math.log2(self.codebook_size)

    @property
    def bitrate_bps(self) -> float:
        """frames/s × codebooks × log2(codebook size)."""
        return self.frame_rate * self.bits_per_frame

    def bitrate_at(self, n_quantizers: int) -> float:
        return self.frame_rate * n_quantizers * math.log2(self.codebook_size)

    # (de)serialisation: plain types only, so a checkpoint loads with weights_only=True ---------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodecConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        # a checkpoint written before a field existed was trained without it: rebuild that model
        for name, before in PRE_FIELD_VALUES.items():
            kwargs.setdefault(name, before)
        for f in dataclasses.fields(cls):
            if f.name in kwargs and isinstance(kwargs[f.name], list):
                kwargs[f.name] = tuple(kwargs[f.name])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "CodecConfig":
        return dataclasses.replace(self, **changes)

    # presets ---------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> "CodecConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "CodecConfig":
        """A very small codec for unit tests: hop 40, 2 codebooks of 16 entries."""
        return cls(base_channels=4, strides=(2, 4, 5), residual_dilations=(1,), latent_dim=8,
                   n_codebooks=2, codebook_size=16, kmeans_iters=2, mel_fft_sizes=(128, 256),
                   mel_bins=(16, 24), disc_channels=4, disc_fft_sizes=(128, 256))

    @classmethod
    def preset(cls, name: str) -> "CodecConfig":
        presets = {"default": cls.default, "tiny": cls.tiny}
        if name not in presets:
            raise ValueError(f"unknown config preset {name!r} (choose from {', '.join(presets)})")
        return presets[name]()
