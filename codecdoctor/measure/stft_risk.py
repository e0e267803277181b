"""Half-precision risks of spectral losses: the measurements behind S501-S504.

A multi-scale STFT / mel loss computes |X|² per frame. For a frame of samples bounded by `peak`
the largest possible magnitude is peak·Σ|w| (all samples aligned with the window's phase, e.g. DC
under a positive window); for a Hann window Σw = n_fft/2, so a full-scale 2048-point frame reaches
|X| = 1024 and |X|² ≈ 1.05e6 - sixteen times float16's maximum of 65504. bfloat16 has float32's
exponent range (max ≈ 3.4e38) and does not overflow, but cuFFT has no bfloat16 kernels, and its
float16 kernels accept only power-of-two sizes.

Used by check-ckpt (for the loss's FFT sizes and the data's peak) and by the live monitor. Two ways
to see the overflow happen rather than predict it:
* `spectral_loss_under_autocast` runs a multi-scale log-mel loss written the usual way (torch.stft,
  |X|², a mel matmul, log(x + eps), L1) inside a real `torch.autocast` on the data's loudest crops.
  Autocast leaves torch.stft and |X|² in float32 and casts the mel matmul's inputs to float16 (on
  CPU and CUDA alike), so a bin above 65504 becomes inf exactly there. PyTorch 2.x runs float16
  autocast on the CPU for real, so this is measured on any machine.
* `spectral_loss_half_precision` emulates a loss held in float16 by hand: the transform in float32
  (CPUs have no half-precision FFT) and everything after it (power, mel projection, eps, log, L1) in
  float16, which is what such a loss computes on a GPU up to the FFT's own rounding.
* `half_precision_log_inputs` reads a non-finite loss's own autograd graph: the float16 input of
  each log, and how many of its elements are exactly 0 (an eps that rounded away).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from codecdoctor.measure.spectral import is_power_of_two, mel_filterbank, window_array

FP16_MAX = 65504.0
FP16_SMALLEST_NORMAL = 6.103515625e-05   # 2**-14; below this fp16 is subnormal (10 bits -> fewer)
FP16_SMALLEST_SUBNORMAL = 5.960464477539063e-08  # 2**-24; below half of this a value rounds to 0


@dataclass
class FftSizeRisk:
    n_fft: int
    window: str
    window_sum: float        # Σ|w|
    max_magnitude: float     # peak·Σ|w|, scaled by 1/sqrt(n_fft) when normalized
    max_power: float         # max_magnitude²: the bound S501 compares with FP16_MAX
    sine_power: float        # |X|² of a bin-centred full-scale sine (peak·Σw/2)²: what real tones reach
    power_overflows_fp16: bool
    magnitude_overflows_fp16: bool
    power_of_two: bool
    # the largest input peak whose worst-case |X|² still fits float16
    safe_peak: float


def stft_power_risk(peak: float, fft_sizes: Sequence[int], *, window: str = "hann",
                    normalized: bool = False) -> list[FftSizeRisk]:
    """Worst-case |X|² per FFT size for input bounded by `peak` (S501 / S504 inputs)."""
    risks = []
    peak = abs(float(peak))
    for n_fft in fft_sizes:
        n_fft = int(n_fft)
        w = window_array(window, n_fft)
        window_sum = float(np.abs(w).sum())
        scale = 1.0 / math.sqrt(n_fft) if normalized else 1.0
        max_magnitude = peak * window_sum * scale
        sine_magnitude = peak * float(w.sum()) * scale / 2.0
        safe_peak = math.sqrt(FP16_MAX) / (window_sum * scale) if window_sum else math.inf
        risks.append(FftSizeRisk(n_fft=n_fft, window=window, window_sum=window_sum, max_magnitude=max_magnitude,
                                 max_power=max_magnitude ** 2, sine_power=sine_magnitude ** 2,
                                 power_overflows_fp16=max_magnitude ** 2 > FP16_MAX,
                                 magnitude_overflows_fp16=max_magnitude > FP16_MAX,
                                 power_of_two=is_power_of_two(n_fft), safe_peak=safe_peak))
    return risks


@dataclass
class EpsRisk:
    eps: float
    eps_fp16: float          # the value float16 stores
    subnormal_fp16: bool     # 0 < eps < 2**-14: stored with reduced precision (flushed to 0 on FTZ hardware)
    flushes_to_zero: bool    # eps rounds to exactly 0 in float16: log(0 + silence) = -inf
    log_floor_fp16: float    # log(eps) as float16 computes it


def eps_underflow(eps: float) -> EpsRisk:
    """How a log/clamp epsilon survives the cast to float16 (S502)."""
    import torch

    eps_fp16 = float(torch.tensor(float(eps), dtype=torch.float16))
    log_floor = float(torch.log(torch.tensor(eps_fp16, dtype=torch.float16)))
    return EpsRisk(eps=float(eps), eps_fp16=eps_fp16, subnormal_fp16=0.0 < eps_fp16 < FP16_SMALLEST_NORMAL,
                   flushes_to_zero=eps > 0 and eps_fp16 == 0.0, log_floor_fp16=log_floor)


@dataclass
class HalfLossScale:
    n_fft: int
    loss_fp32: float
    loss_fp16: float
    finite: bool
    first_nonfinite: str | None   # "power", "mel", "log" or "loss": the first stage that went non-finite
    max_power_fp32: float         # the largest |X|² the data actually produced


@dataclass
class HalfLossResult:
    loss_fp32: float
    loss_fp16: float
    finite: bool
    scales: list[HalfLossScale] = field(default_factory=list)
    emulated: bool = True         # True: fp32 FFT, fp16 afterwards (CPU); False: real fp16 FFT (CUDA)


def _to_tensor(audio: Any):
    import torch

    tensor = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not hasattr(audio, "detach") else audio)
    return tensor.detach().float().reshape(-1, tensor.shape[-1]).cpu()


def spectral_loss_half_precision(reference: Any, estimate: Any, fft_sizes: Sequence[int], *, sample_rate: int = 16000,
                                 n_mels: Sequence[int] | int | None = 64, eps: float = 1e-5, power: float = 2.0,
                                 window: str = "hann") -> HalfLossResult:
    """Multi-scale log-(mel-)spectral L1 loss computed twice: in float32, and with everything after
    the FFT in float16 (S503). `n_mels=None` uses the linear spectrogram. Returns both values and,
    per scale, the first stage that went non-finite in float16."""
    import torch

    ref, est = _to_tensor(reference), _to_tensor(estimate)
    length = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :length], est[..., :length]
    mels = [n_mels] * len(fft_sizes) if n_mels is None or isinstance(n_mels, int) else list(n_mels)
    scales: list[HalfLossScale] = []
    for n_fft, bins in zip(fft_sizes, mels):
        n_fft = int(n_fft)
        if length < n_fft:
            continue
        w = torch.tensor(window_array(window, n_fft), dtype=torch.float32)
        fb = torch.tensor(mel_filterbank(sample_rate, n_fft, int(bins)), dtype=torch.float32) if bins else None

        def log_spec(x, dtype, stages, n_fft=n_fft, w=w, fb=fb):  # bound now: called within this iteration
            spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=w, return_complex=True, center=True)
            real, imag = spec.real.to(dtype), spec.imag.to(dtype)
            values = real * real + imag * imag
            if power != 2.0:
                values = values.pow(power / 2.0)
            if not bool(torch.isfinite(values).all()):
                stages.append("power")
            values_t = values.transpose(-1, -2)
            if fb is not None:
                values_t = values_t @ fb.to(dtype)
                if not bool(torch.isfinite(values_t).all()):
                    stages.append("mel")
            logged = torch.log(values_t + torch.tensor(eps, dtype=dtype))
            if not bool(torch.isfinite(logged).all()):
                stages.append("log")
            return logged, float(values.float().max()) if dtype == torch.float32 else 0.0

        stages32: list[str] = []
        a32, max_power = log_spec(ref, torch.float32, stages32)
        b32, _ = log_spec(est, torch.float32, stages32)
        loss32 = float((a32 - b32).abs().mean())
        stages16: list[str] = []
        a16, _ = log_spec(ref, torch.float16, stages16)
        b16, _ = log_spec(est, torch.float16, stages16)
        loss16 = float((a16 - b16).abs().float().mean())
        finite = math.isfinite(loss16)
        first = stages16[0] if stages16 else (None if finite else "loss")
        scales.append(HalfLossScale(n_fft=n_fft, loss_fp32=loss32, loss_fp16=loss16, finite=finite,
                                    first_nonfinite=None if finite and not stages16 else first,
                                    max_power_fp32=max_power))
    loss32_total = float(sum(s.loss_fp32 for s in scales))
    loss16_total = float(sum(s.loss_fp16 for s in scales))
    return HalfLossResult(loss_fp32=loss32_total, loss_fp16=loss16_total,
                          finite=math.isfinite(loss16_total), scales=scales)


@dataclass
class AutocastScale:
    n_fft: int
    max_power: float          # the largest |X|² of the crops (torch.stft's float32 output under autocast)
    overflowed: bool          # the mel projection, cast to half by autocast, went non-finite
    log_nonfinite: bool       # log(mel + eps) held -inf / NaN (an eps that rounded to 0, or an inf above)
    zero_bins: int            # reference mel bins exactly 0 under autocast (digital silence): log(0 + eps) = -inf
                              # there whenever eps rounds to 0 in half precision
    loss: float               # this scale's L1 under autocast
    loss_fp32: float          # the same with autocast disabled
    finite: bool


@dataclass
class AutocastLossRun:
    """A spectral loss really run under `torch.autocast(device, dtype)` on the loudest crops."""

    dtype: str
    device: str
    crops: int
    peak: float               # the largest |x| of the crops the loss ran on
    eps: float
    loss: float
    loss_fp32: float
    finite: bool
    scales: list[AutocastScale] = field(default_factory=list)

    @property
    def max_power(self) -> float:
        return max((s.max_power for s in self.scales), default=0.0)

    @property
    def overflowed(self) -> list[AutocastScale]:
        return [s for s in self.scales if s.overflowed]


_DTYPES = {"float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def loudest_crops(crops: Sequence[Any], count: int = 4) -> np.ndarray:
    """The `count` crops with the largest |x| (mono rows [N, T], cut to the shortest): where a
    power spectrum overflows first."""
    rows = [np.asarray(c, dtype=np.float32).reshape(-1, np.shape(c)[-1]) for c in crops]
    rows = [r for block in rows for r in block if r.size]
    if not rows:
        return np.zeros((0, 0), np.float32)
    rows.sort(key=lambda r: -float(np.abs(np.nan_to_num(r)).max()))
    chosen = rows[:max(1, count)]
    length = min(r.shape[-1] for r in chosen)
    return np.stack([r[:length] for r in chosen])


def spectral_loss_under_autocast(reference: Any, estimate: Any, fft_sizes: Sequence[int], *, dtype: str = "float16",
                                 device: str = "cpu", sample_rate: int = 16000, n_mels: int = 64, eps: float = 1e-5,
                                 window: str = "hann") -> AutocastLossRun:
    """Run a multi-scale log-mel L1 loss inside a real `torch.autocast(device, dtype)` and with
    autocast disabled, on `reference` / `estimate` ([N, T] or [T]); per scale the measured max |X|²,
    whether the autocast mel projection overflowed, and whether the log went non-finite."""
    import torch

    torch_dtype = getattr(torch, _DTYPES.get(str(dtype), str(dtype)))
    ref, est = _to_tensor(reference).to(device), _to_tensor(estimate).to(device)
    length = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :length], est[..., :length]
    scales: list[AutocastScale] = []
    for n_fft in (int(n) for n in fft_sizes):
        if length < n_fft:
            continue
        w = torch.tensor(window_array(window, n_fft), dtype=torch.float32, device=device)
        fb = torch.tensor(mel_filterbank(sample_rate, n_fft, int(n_mels)), dtype=torch.float32, device=device)

        def log_mel(x, flags, n_fft=n_fft, w=w, fb=fb):  # bound now: called within this iteration
            power = torch.stft(x, n_fft, hop_length=n_fft // 4, window=w, return_complex=True).abs().pow(2)
            mel = power.transpose(-1, -2) @ fb      # autocast casts this matmul's inputs to half
            flags.setdefault("zero_bins", int((mel == 0).sum()))
            flags["overflowed"] |= not bool(torch.isfinite(mel).all())  # inf, or inf·0 = NaN in the matmul
            logged = torch.log(mel + eps)
            flags["log"] |= not bool(torch.isfinite(logged).all())
            return logged, float(power.max())

        with torch.no_grad():
            with torch.autocast(device_type=device, enabled=False):
                unused = {"overflowed": False, "log": False}
                a32, max_power = log_mel(ref, unused)
                b32, _ = log_mel(est, unused)
                loss32 = float((a32 - b32).abs().mean())
            flags = {"overflowed": False, "log": False}
            with torch.autocast(device_type=device, dtype=torch_dtype):
                a, _ = log_mel(ref, flags)
                b, _ = log_mel(est, flags)
                loss = float((a - b).abs().float().mean())
        scales.append(AutocastScale(n_fft=n_fft, max_power=max_power, overflowed=flags["overflowed"],
                                    log_nonfinite=flags["log"], zero_bins=flags["zero_bins"], loss=loss, loss_fp32=loss32,
                                    finite=math.isfinite(loss)))
    total = float(sum(s.loss for s in scales))
    return AutocastLossRun(dtype=_DTYPES.get(str(dtype), str(dtype)), device=str(device), crops=int(ref.shape[0]),
                           peak=float(ref.abs().max()) if ref.numel() else 0.0, eps=float(eps), loss=total,
                           loss_fp32=float(sum(s.loss_fp32 for s in scales)), finite=math.isfinite(total),
                           scales=scales)


@dataclass
class HalfLogInput:
    """A log in a loss's autograd graph whose input was half precision."""

    op: str                   # the autograd node, e.g. "LogBackward0"
    dtype: str
    elements: int
    zeros: int                # exact zeros in the input: log gives -inf there
    nonfinite: int
    smallest: float           # the smallest finite |input|


def half_precision_log_inputs(loss: Any, max_nodes: int = 5000) -> list[HalfLogInput]:
    """Walk `loss`'s autograd graph (before its backward frees it) and measure the input of every
    log / log10 / log2 computed in float16 or bfloat16. Reads values on the host: call it only on a
    loss already known to be non-finite."""
    import torch

    node = getattr(loss, "grad_fn", None)
    seen: set[int] = set()
    visited: list[Any] = []
    stack = [node] if node is not None else []
    found: list[HalfLogInput] = []
    while stack and len(seen) < max_nodes:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        visited.append(node)  # held, so no id is reused by a later wrapper object
        name = type(node).__name__
        if name.startswith(("LogBackward", "Log10Backward", "Log2Backward")):
            try:
                saved = node._saved_self
            except (AttributeError, RuntimeError):  # freed by a backward already
                saved = None
            if isinstance(saved, torch.Tensor) and saved.dtype in (torch.float16, torch.bfloat16):
                saved = saved.detach()
                finite = saved[torch.isfinite(saved)].abs()
                found.append(HalfLogInput(op=name, dtype=str(saved.dtype).replace("torch.", ""),
                                          elements=saved.numel(), zeros=int((saved == 0).sum()),
                                          nonfinite=int((~torch.isfinite(saved)).sum()),
                                          smallest=float(finite.min()) if finite.numel() else math.nan))
        stack.extend(next_node for next_node, _ in getattr(node, "next_functions", ()) if next_node is not None)
    return found


@dataclass
class StftMeasurements:
    """Everything S501-S504 judge. `stft_dtype` is the precision the spectral loss really runs in
    ("float16", "bfloat16", "float32") or None when unknown (a foreign checkpoint)."""

    peak: float
    fft_sizes: list[int]
    window: str = "hann"
    eps: float | None = None
    stft_dtype: str | None = None
    device: str | None = None       # "cuda", "cpu" or None when unknown
    source: str = ""                # where the FFT sizes came from ("codec config", "--fft-sizes", ...)
    sizes: list[FftSizeRisk] = field(default_factory=list)
    eps_risk: EpsRisk | None = None
    half_loss: HalfLossResult | None = None
    autocast_run: AutocastLossRun | None = None    # measured: the loss run under real autocast
    half_logs: list[HalfLogInput] = field(default_factory=list)  # measured: a live loss's half-precision logs


def synthetic_full_scale(peak: float, sample_rate: int = 16000, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A test signal that reaches `peak`: low-frequency tone bursts (where speech energy is) plus a
    quiet noise floor and a silent stretch (to exercise the log floor)."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    x = 0.6 * np.sin(2 * np.pi * 150.0 * t) + 0.3 * np.sin(2 * np.pi * 450.0 * t) + 1e-3 * rng.standard_normal(n)
    x[n // 2: n // 2 + n // 8] = 0.0
    return (x * (peak / max(np.abs(x).max(), 1e-12))).astype(np.float32)


def measure_stft(peak: float, fft_sizes: Sequence[int], *, eps: float | None = 1e-5, window: str = "hann",
                 stft_dtype: str | None = None, device: str | None = None, source: str = "",
                 reference: Any = None, estimate: Any = None, sample_rate: int = 16000,
                 n_mels: Sequence[int] | int | None = 64, run_loss: bool = True,
                 autocast: str | None = None, autocast_device: str = "cpu") -> StftMeasurements:
    """Measure S501-S504 inputs. Without `reference` a synthetic signal at `peak` is used; without
    `estimate` the reference plus noise 30 dB down stands in for a reconstruction. With `autocast`
    ("float16" / "bfloat16") and a `reference` ([N, T]: the loudest crops) the loss also runs under
    real autocast on `autocast_device` (`autocast_run`), and S501-S503 judge that measurement."""
    sizes = [int(n) for n in fft_sizes]
    m = StftMeasurements(peak=float(peak), fft_sizes=sizes, window=window, eps=eps, stft_dtype=stft_dtype,
                         device=device, source=source, sizes=stft_power_risk(peak, sizes, window=window))
    if eps is not None:
        m.eps_risk = eps_underflow(eps)
    if run_loss and sizes:
        ref = synthetic_full_scale(peak, sample_rate) if reference is None else np.asarray(
            reference.detach().float().cpu().numpy() if hasattr(reference, "detach") else reference, dtype=np.float32)
        if estimate is None:
            noise = np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32)
            estimate = ref + noise * float(np.sqrt(np.mean(ref ** 2) + 1e-20)) * 10 ** (-30 / 20)
        m.half_loss = spectral_loss_half_precision(ref, estimate, sizes, sample_rate=sample_rate, n_mels=n_mels,
                                                   eps=eps if eps is not None else 1e-5, window=window)
        if autocast and reference is not None:
            mels = n_mels if isinstance(n_mels, int) else 64
            m.autocast_run = spectral_loss_under_autocast(ref, estimate, sizes, dtype=autocast, device=autocast_device,
                                                          sample_rate=sample_rate, n_mels=mels, window=window,
                                                          eps=eps if eps is not None else 1e-5)
    return m
