"""The spectral loss under real float16 autocast on the CPU: the codec's fp32 guard keeps it finite,
the same loss without the guard overflows, and S501-S503 report that measured overflow."""
from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio

from codecdoctor.core.registry import run_checks
from codecdoctor.measure.stft_risk import FP16_MAX, loudest_crops, measure_stft, spectral_loss_under_autocast
from codecdoctor_model.losses import MultiScaleMelLoss

SIZES = [512, 1024, 2048]
RATE = 16000


def _loud_speechlike(peak: float = 0.95, crops: int = 2, seconds: float = 1.0) -> torch.Tensor:
    """Voiced-speech-like crops: a 150 Hz fundamental with harmonics, at `peak`."""
    t = torch.arange(int(RATE * seconds)) / RATE
    rows = []
    for i in range(crops):
        x = sum((0.6 / k) * torch.sin(2 * math.pi * (150.0 + 10 * i) * k * t) for k in range(1, 6))
        rows.append(x * peak / x.abs().max())
    return torch.stack(rows)


def _losses(ref: torch.Tensor, est: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    guarded = MultiScaleMelLoss(RATE, SIZES, [64] * 3, power=2.0)
    unguarded = MultiScaleMelLoss(RATE, SIZES, [64] * 3, power=2.0, half_precision_guard=False)
    with torch.autocast("cpu", dtype=torch.float16):
        finite = guarded(est, ref)
        broken = unguarded(est, ref)
        per_scale = [not bool(torch.isfinite(unguarded.log_mel(ref, i)).all()) for i in range(len(SIZES))]
    return finite, broken, per_scale


def test_guarded_loss_is_finite_under_fp16_autocast_and_unguarded_overflows():
    ref = _loud_speechlike()
    est = 0.9 * ref
    finite, broken, per_scale = _losses(ref, est)
    assert finite.dtype == torch.float32 and math.isfinite(float(finite))
    assert not math.isfinite(float(broken))
    # exactly the scales whose float32 power spectrum exceeds 65504 broke
    powers = [float(torchaudio.transforms.Spectrogram(n, power=2.0)(ref).max()) for n in SIZES]
    assert per_scale == [p > FP16_MAX for p in powers]
    assert any(per_scale) and not all(per_scale)


def test_s501_s503_quote_the_overflow_measured_on_the_same_batch():
    ref = _loud_speechlike()
    est = 0.9 * ref
    _, _, per_scale = _losses(ref, est)
    m = measure_stft(float(ref.abs().max()), SIZES, eps=1e-5, stft_dtype="float16", device="cpu",
                     reference=ref, estimate=est, autocast="float16", n_mels=64)
    run = m.autocast_run
    assert run is not None and run.crops == 2 and not run.finite
    assert [s.overflowed for s in run.scales] == per_scale
    for scale, n_fft in zip(run.scales, SIZES):
        power = float(torchaudio.transforms.Spectrogram(n_fft, power=2.0)(ref).max())
        assert abs(scale.max_power / power - 1) < 0.02  # periodic vs symmetric Hann
        assert scale.overflowed == (scale.max_power > FP16_MAX)
    found = {f.id: f for f in run_checks("stft", m).findings}
    s501, s503 = found["S501"], found["S503"]
    assert s501.message.startswith("measured under real float16 autocast (cpu)")
    assert s501.evidence["measured"] == 1 and s501.evidence["overflowed"] == 1
    assert s501.evidence["sizes_overflowing"] == sum(per_scale)
    assert s501.evidence["measured_max_power"] == run.max_power > FP16_MAX
    assert s501.severity.label == "error"
    assert s503.message.startswith("measured") and s503.evidence["scales_nonfinite"] == sum(per_scale)


def test_quiet_data_measured_without_overflow_is_info_not_an_error():
    ref = _loud_speechlike(peak=0.05)
    m = measure_stft(0.05, SIZES, eps=1e-4, stft_dtype="float16", device="cpu", reference=ref,
                     estimate=0.9 * ref, autocast="float16", n_mels=64)
    assert m.autocast_run.finite and not m.autocast_run.overflowed
    found = {f.id: f for f in run_checks("stft", m).findings}
    assert "S503" not in found
    assert "S501" not in found or found["S501"].severity.label == "info"


def test_bf16_autocast_and_fp32_runs_give_no_s50x():
    ref = _loud_speechlike()
    for dtype, stft_dtype in (("bfloat16", "bfloat16"), ("float16", "float32")):
        m = measure_stft(1.0, SIZES, eps=1e-5, stft_dtype=stft_dtype, device="cpu", reference=ref,
                         estimate=0.9 * ref, autocast=dtype, n_mels=64)
        assert not [f for f in run_checks("stft", m).findings if f.severity.label != "info"]
    run = spectral_loss_under_autocast(ref, 0.9 * ref, SIZES, dtype="bfloat16")
    assert run.finite and not run.overflowed and run.max_power > FP16_MAX


def test_loudest_crops_picks_the_peaks():
    crops = [np.full((1, 100), v, np.float32) for v in (0.1, 0.9, 0.5)]
    chosen = loudest_crops(crops, 2)
    assert chosen.shape == (2, 100) and chosen[0, 0] == np.float32(0.9) and chosen[1, 0] == np.float32(0.5)


def _loud_folder(tmp_path, peak: float):
    import soundfile as sf

    folder = tmp_path / f"data_{peak}"
    folder.mkdir()
    for i in range(3):
        audio = _loud_speechlike(peak * (0.5 + 0.25 * i), crops=1, seconds=3.0)[0].numpy()
        sf.write(str(folder / f"utt{i}.wav"), audio, RATE, subtype="FLOAT")
    return folder


def _foreign_checkpoint(tmp_path):
    state = {"state_dict": {"encoder.weight": torch.randn(8, 1, 7), "decoder.weight": torch.randn(1, 8, 7)},
             "scaler": torch.amp.GradScaler("cpu").state_dict()}
    path = tmp_path / "foreign.pt"
    torch.save(state, path)
    return path


def test_check_ckpt_amp_fp16_measures_the_overflow_on_the_loudest_crops(tmp_path):
    from codecdoctor.check_ckpt import check_checkpoint

    ckpt, data = _foreign_checkpoint(tmp_path), _loud_folder(tmp_path, 0.95)
    report = check_checkpoint(ckpt, data=data, fft_sizes=SIZES, amp="fp16", probes=False, n_crops=3)
    run = report.measurements["stft"].autocast_run
    assert run is not None and run.dtype == "float16" and run.crops == 3
    assert abs(run.peak - 0.95) < 0.01  # the loudest file's crop leads
    s501 = next(f for f in report.findings if f.id == "S501")
    assert s501.severity.label == "error" and s501.message.startswith("measured under real float16 autocast")
    assert s501.evidence["measured_max_power"] == run.max_power > FP16_MAX
    assert any(f.id == "S503" and f.evidence["measured"] == 1 for f in report.findings)

    bf16 = check_checkpoint(ckpt, data=data, fft_sizes=SIZES, amp="bf16", probes=False, n_crops=3)
    assert bf16.measurements["stft"].autocast_run.finite
    assert not [f for f in bf16.findings if f.id.startswith("S50") and f.severity.label != "info"]
