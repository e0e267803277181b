"""S5xx: spectral losses under half precision (overflow, underflow, non-finite loss, cuFFT sizes)."""
from __future__ import annotations

import math

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.stft_risk import (
    FP16_MAX,
    FP16_SMALLEST_NORMAL,
    FP16_SMALLEST_SUBNORMAL,
    AutocastLossRun,
    StftMeasurements,
)

_HALF = ("float16", "half")


def _severity(m: StftMeasurements) -> Severity | None:
    """float16 known: error; precision unknown: warning (a risk if the user enables fp16 autocast);
    float32 / bfloat16 known: the risk does not apply, no finding."""
    if m.stft_dtype in _HALF:
        return Severity.ERROR
    if m.stft_dtype is None:
        return Severity.WARNING
    return None


def _context(m: StftMeasurements) -> str:
    if m.stft_dtype in _HALF:
        return "the spectral loss runs in float16"
    return "if the spectral loss runs under float16 autocast (its precision is not recorded)"


def _measured_in(run: AutocastLossRun) -> str:
    return (f"measured under real {run.dtype} autocast ({run.device}) on the {run.crops} loudest crop(s), "
            f"peak {run.peak:.4g}")


def _measured_overflow(m: StftMeasurements, severity: Severity):
    """S501 from a real autocast run: what the data did, not the worst case."""
    run = m.autocast_run
    over = run.overflowed
    predicted = max((r.max_power for r in m.sizes), default=0.0)
    evidence = {"measured": 1, "measured_max_power": run.max_power, "overflowed": int(bool(over)),
                "predicted_max_power": predicted, "fp16_max": FP16_MAX, "peak": run.peak, "crops": run.crops}
    if not over:
        if predicted <= FP16_MAX:
            return []
        # the worst case (every sample in phase with the window) is beyond float16, the data is not
        return [finding("S501", f"{_measured_in(run)}: max |X|² = {run.max_power:.3g}, no bin overflowed; the "
                        f"predicted worst case at peak {m.peak:.4g} is {predicted:.3g} (> {FP16_MAX:.0f}), which "
                        f"louder or more tonal audio can still reach; {_context(m)}",
                        subject="n_fft=" + str(max(m.sizes, key=lambda r: r.max_power).n_fft),
                        severity=Severity.INFO, evidence=evidence)]
    worst = max(over, key=lambda s: s.max_power)
    listed = ", ".join(f"{s.n_fft}: {s.max_power:.3g}" for s in over)
    return [finding("S501", f"{_measured_in(run)}: max |X|² reached {worst.max_power:.3g} "
                    f"({worst.max_power / FP16_MAX:.1f}x float16's {FP16_MAX:.0f}) and the mel projection "
                    f"overflowed to inf at n_fft {listed}; {_context(m)}",
                    subject=f"n_fft={worst.n_fft}", severity=severity,
                    evidence={**evidence, "n_fft": worst.n_fft, "max_power": worst.max_power,
                              "overflow_ratio": worst.max_power / FP16_MAX, "sizes_overflowing": len(over)})]


@check("S501", scope="stft", severity=Severity.ERROR)
def power_overflow(m: StftMeasurements):
    """Power spectrum overflows float16.

    What: For each FFT size of the loss, the worst-case |X|² of a frame whose samples are bounded by
    the data's peak: (peak·Σ|w|)², Σw = n_fft/2 for Hann. Fires when it exceeds float16's maximum
    65504, i.e. from n_fft = 512 at full scale (|X|² up to 65536) and by 16x at n_fft = 2048.
    Error when the loss is known to run in float16, warning when its precision is unknown; silent
    when it runs in float32 or bfloat16 (8-bit exponent, max 3.4e38). When the loss was also run
    under real float16 autocast on the data's loudest crops (check-ckpt --amp, the live monitor on
    a non-finite loss), the finding quotes that measurement: the max |X|² the data produced and
    whether the autocast mel projection overflowed; a predicted overflow the data did not reach is
    then only info. The message says "measured" or "predicted".
    Why: An overflowed bin is inf; log(inf) is inf and inf - inf in the L1 is NaN, so one loud
    frame makes the whole loss NaN and, with a GradScaler, every step is skipped.
    Fix: Compute the STFT and the spectral loss in float32 (`with torch.autocast(device_type,
    enabled=False): loss(x.float(), y.float())`), or use bfloat16, or normalise the STFT
    (`normalized=True` divides |X| by sqrt(n_fft)).
    """
    if not m.sizes:
        raise NotApplicable
    severity = _severity(m)
    if severity is None:
        return []
    if m.autocast_run is not None and m.autocast_run.dtype == "float16" and m.autocast_run.scales:
        return _measured_overflow(m, severity)
    over = [r for r in m.sizes if r.power_overflows_fp16]
    if not over:
        return []
    worst = max(over, key=lambda r: r.max_power)
    listed = ", ".join(f"{r.n_fft}: {r.max_power:.3g}" for r in over)
    return [finding("S501", f"predicted worst-case |X|² at peak {m.peak:.4g} exceeds float16 max {FP16_MAX:.0f} for "
                    f"n_fft {listed} ({worst.max_power / FP16_MAX:.1f}x at {worst.n_fft}); {_context(m)}; "
                    f"n_fft {worst.n_fft} is safe only for peaks below {worst.safe_peak:.3g}",
                    subject=f"n_fft={worst.n_fft}", severity=severity,
                    evidence={"peak": m.peak, "n_fft": worst.n_fft, "max_power": worst.max_power,
                              "fp16_max": FP16_MAX, "overflow_ratio": worst.max_power / FP16_MAX,
                              "sizes_overflowing": len(over), "safe_peak": worst.safe_peak})]


def _half_log_in_graph(m: StftMeasurements):
    """S502 from a non-finite live loss's own graph: a float16 log that took exact zeros, or one
    beside a reference whose float16 mel bins are exactly 0 (the reference side of a loss is not
    differentiated, so its log is not in the graph)."""
    logs = [h for h in m.half_logs if h.dtype == "float16"]
    if not logs:
        return []
    h = max(logs, key=lambda h: h.zeros)
    eps = f" ({m.eps:.3g})" if m.eps is not None else ""
    evidence = {"measured": 1, "zeros": h.zeros, "elements": h.elements, "nonfinite_inputs": h.nonfinite,
                "smallest_input": h.smallest}
    if h.zeros:
        return [finding("S502", f"measured in the loss's graph: a float16 log ({h.op}) took {h.zeros} exact zeros of "
                        f"{h.elements} inputs, so it computed -inf: the eps added before it{eps} rounds to 0 in "
                        f"float16 (anything below {FP16_SMALLEST_SUBNORMAL / 2:.3g} does)",
                        subject=h.op, severity=Severity.ERROR, evidence=evidence)]
    run = m.autocast_run
    silent = sum(s.zero_bins for s in run.scales) if run is not None else 0
    if not silent or (run is not None and run.overflowed):
        return []
    return [finding("S502", f"measured: the loss's graph takes a float16 log ({h.op}, smallest input {h.smallest:.3g}) "
                    f"and the batch's reference has {silent} mel bins exactly 0 in float16 (digital silence): "
                    f"log(0 + eps) is -inf there for any eps below {FP16_SMALLEST_SUBNORMAL / 2:.3g}, which "
                    f"float16 rounds to 0, and no bin overflowed",
                    subject=h.op, severity=Severity.ERROR, evidence={**evidence, "silent_bins": silent})]


@check("S502", scope="stft", severity=Severity.WARNING)
def eps_underflow(m: StftMeasurements):
    """log / eps underflow in half precision.

    What: Casts the loss's epsilon (log(x + eps), clamp(min=eps)) to float16. Error when it rounds to
    0 (eps < 2**-25 ≈ 3e-8): log of a silent bin becomes -inf. Warning when it is subnormal
    (eps < 2**-14 ≈ 6.1e-5): stored with fewer mantissa bits, and flushed to zero on hardware or
    kernels that use flush-to-zero, which brings back the -inf. Silent when the loss runs in
    float32 / bfloat16 (bfloat16 has float32's exponent range).
    Measured too, when a live loss went non-finite: every log in the loss's autograd graph whose
    input is float16, and how many of its inputs are exactly 0 (an error: log(0) = -inf was really
    computed); and, after a real autocast run, a log that went non-finite where no bin overflowed.
    Why: Silence and quiet high-frequency bins are common in speech; a zero or subnormal floor
    turns them into -inf or huge-gradient terms (d/dx log(x + eps) = 1/eps).
    Fix: Use eps >= 1e-4 in half precision, or compute the log-spectrum in float32.
    """
    graph_finding = _half_log_in_graph(m)
    if graph_finding:
        return graph_finding
    if m.eps_risk is None:
        raise NotApplicable
    severity = _severity(m)
    if severity is None:
        return []
    run = m.autocast_run
    log_only = [s for s in run.scales if s.log_nonfinite and not s.overflowed] if run is not None else []
    if log_only and run.dtype == "float16":
        return [finding("S502", f"{_measured_in(run)}: log(mel + {run.eps:.3g}) went non-finite at n_fft "
                        f"{', '.join(str(s.n_fft) for s in log_only)} with no bin overflowing: eps "
                        f"{run.eps:.3g} is stored as {m.eps_risk.eps_fp16:.3g} in float16; {_context(m)}",
                        subject=f"eps={run.eps:.3g}", severity=severity,
                        evidence={"measured": 1, "eps": run.eps, "eps_fp16": m.eps_risk.eps_fp16,
                                  "scales_nonfinite": len(log_only)})]
    risk = m.eps_risk
    if risk.flushes_to_zero:
        return [finding("S502", f"predicted: eps {risk.eps:.3g} rounds to 0 in float16, so log(eps + 0) = {risk.log_floor_fp16} "
                        f"on silent bins; {_context(m)}", subject=f"eps={risk.eps:.3g}", severity=Severity.ERROR
                        if severity is Severity.ERROR else Severity.WARNING,
                        evidence={"eps": risk.eps, "eps_fp16": risk.eps_fp16,
                                  "fp16_smallest_normal": FP16_SMALLEST_NORMAL})]
    if risk.subnormal_fp16:
        return [finding("S502", f"predicted: eps {risk.eps:.3g} is subnormal in float16 (stored as {risk.eps_fp16:.3g}, below "
                        f"{FP16_SMALLEST_NORMAL:.3g}); flush-to-zero kernels make it 0; {_context(m)}",
                        subject=f"eps={risk.eps:.3g}", severity=Severity.WARNING,
                        evidence={"eps": risk.eps, "eps_fp16": risk.eps_fp16,
                                  "fp16_smallest_normal": FP16_SMALLEST_NORMAL})]
    return []


@check("S503", scope="stft", severity=Severity.ERROR)
def nonfinite_half_loss(m: StftMeasurements):
    """Non-finite spectral loss under half precision.

    What: Runs the multi-scale log-mel L1 loss on audio at the data's peak twice: in float32 and
    with everything after the FFT (power, mel projection, eps, log, L1) in float16 (on a CPU the
    FFT itself stays float32: there is no half-precision CPU FFT). Fires when the float16 loss is
    non-finite while the float32 one is finite, naming the first stage that broke. When the loss
    was run under real float16 autocast (check-ckpt --amp, the live monitor) that run is judged
    instead, and the message says "measured"; the hand-held emulation says "emulated".
    Why: This is the measured consequence of S501/S502 on real signal levels: the loss is NaN or
    inf, gradients are NaN, and a GradScaler silently skips every step.
    Fix: Disable autocast around the spectral loss and cast its inputs to float32.
    """
    run = m.autocast_run
    if (m.half_loss is None or not m.half_loss.scales) and (run is None or not run.scales):
        raise NotApplicable
    severity = _severity(m)
    if severity is None:
        return []
    if run is not None and run.scales:
        broken_run = [s for s in run.scales if not s.finite and math.isfinite(s.loss_fp32)]
        if not broken_run:
            return []
        listed = ", ".join(f"{s.n_fft} ({'overflow' if s.overflowed else 'log'})" for s in broken_run)
        return [finding("S503", f"{_measured_in(run)}: the spectral loss is {run.loss} (float32: {run.loss_fp32:.4g}); "
                        f"non-finite at n_fft {listed}; {_context(m)}", subject=f"n_fft={broken_run[0].n_fft}",
                        severity=severity,
                        evidence={"measured": 1, "loss_fp32": run.loss_fp32, "loss_fp16": run.loss,
                                  "scales_nonfinite": len(broken_run), "peak": run.peak,
                                  "measured_max_power": run.max_power, "crops": run.crops})]
    broken = [s for s in m.half_loss.scales if not s.finite]
    if not broken:
        return []
    listed = ", ".join(f"{s.n_fft} ({s.first_nonfinite})" for s in broken)
    return [finding("S503", f"emulated (float32 FFT, float16 after it): spectral loss in float16 is "
                    f"{m.half_loss.loss_fp16} (float32: "
                    f"{m.half_loss.loss_fp32:.4g}) at peak {m.peak:.4g}; non-finite at n_fft {listed}; {_context(m)}",
                    subject=f"n_fft={broken[0].n_fft}", severity=severity,
                    evidence={"loss_fp32": m.half_loss.loss_fp32, "loss_fp16": m.half_loss.loss_fp16,
                              "scales_nonfinite": len(broken), "peak": m.peak,
                              "max_power_fp32": max(s.max_power_fp32 for s in m.half_loss.scales),
                              "emulated": m.half_loss.emulated})]


@check("S504", scope="stft", severity=Severity.ERROR)
def fft_size_not_power_of_two(m: StftMeasurements):
    """FFT size not a power of two under CUDA half precision.

    What: Lists FFT sizes of the loss that are not powers of two. cuFFT's float16 transforms only
    accept power-of-two sizes, so torch.stft on a float16 CUDA tensor of such a size raises.
    Error when the loss is known to run in float16 on CUDA, warning when precision or device is
    unknown; silent in float32 or on the CPU.
    Why: Training crashes at the first step with AMP enabled, or the user disables AMP globally and
    loses its speed-up; sizes like 640 or 1200 (multiples of a 16 kHz hop) are common in codecs.
    Fix: Use power-of-two FFT sizes (e.g. 512 instead of 640; win_length may stay smaller, the
    frame is zero-padded), or compute the STFT in float32.
    """
    if not m.fft_sizes:
        raise NotApplicable
    severity = _severity(m)
    if severity is None or m.device == "cpu":
        return []
    odd = [n for n in m.fft_sizes if n & (n - 1)]
    if not odd:
        return []
    if m.device != "cuda":
        severity = Severity.WARNING
    return [finding("S504", f"FFT sizes {', '.join(map(str, odd))} are not powers of two; cuFFT has no float16 "
                    f"kernel for them; {_context(m)}", subject=f"n_fft={odd[0]}", severity=severity,
                    evidence={"sizes_not_power_of_two": len(odd), "n_fft": odd[0]})]
