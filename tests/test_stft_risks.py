"""S501-S504: half-precision risks of spectral losses, measured on known windows and levels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from codecdoctor.core.registry import run_checks
from codecdoctor.measure.stft_risk import FP16_MAX, eps_underflow, measure_stft, spectral_loss_half_precision, stft_power_risk


def ids(m):
    return sorted(f.id for f in run_checks("stft", m).findings)


def test_hann_power_bound_matches_a_dc_frame():
    import torch

    risk = stft_power_risk(1.0, [2048])[0]
    frame = torch.ones(2048) * torch.hann_window(2048)
    measured = float(torch.fft.rfft(frame).abs().max() ** 2)
    assert risk.max_power == pytest.approx(measured, rel=1e-6) == pytest.approx(1024.0 ** 2)
    assert risk.power_overflows_fp16 and risk.safe_peak == pytest.approx(math.sqrt(FP16_MAX) / 1024)


def test_first_overflowing_size_at_full_scale_is_512():
    flags = {r.n_fft: r.power_overflows_fp16 for r in stft_power_risk(1.0, [256, 512, 1024])}
    assert flags == {256: False, 512: True, 1024: True}
    assert not any(r.power_overflows_fp16 for r in stft_power_risk(0.2, [1024]))


def test_eps_below_fp16_subnormal_rounds_to_zero():
    assert eps_underflow(1e-8).flushes_to_zero and eps_underflow(1e-8).log_floor_fp16 == -math.inf
    assert eps_underflow(1e-5).subnormal_fp16 and not eps_underflow(1e-5).flushes_to_zero
    assert not eps_underflow(1e-4).subnormal_fp16


def test_half_loss_at_peak_1_01_with_2048_point_fft_is_not_finite():
    result = spectral_loss_half_precision(_loud(1.01), _loud(1.01) * 0.9, [2048], n_mels=None, eps=1e-4)
    assert math.isfinite(result.loss_fp32) and not result.finite
    assert result.scales[0].first_nonfinite == "power"


def test_half_loss_on_quiet_audio_with_small_ffts_matches_fp32():
    result = spectral_loss_half_precision(_loud(0.1), _loud(0.1) * 0.9, [256, 512], n_mels=32, eps=1e-4)
    assert result.finite and result.loss_fp16 == pytest.approx(result.loss_fp32, rel=1e-2)


def test_fp16_loss_with_big_ffts_and_tiny_eps_fires_s501_s502_s503():
    m = measure_stft(1.01, [512, 1024, 2048], eps=1e-8, stft_dtype="float16", device="cuda")
    assert ids(m) == ["S501", "S502", "S503"]
    assert all(f.severity.label == "error" for f in run_checks("stft", m).findings)


def test_fp32_loss_is_silent_but_measured():
    m = measure_stft(1.01, [640, 2048], eps=1e-8, stft_dtype="float32")
    run = run_checks("stft", m)
    assert run.findings == [] and set(run.checks_run) == {"S501", "S502", "S503", "S504"}
    assert m.sizes[1].power_overflows_fp16  # the measurement is kept for the report


def test_non_power_of_two_under_cuda_half_is_s504():
    m = measure_stft(0.1, [640, 1024], eps=1e-4, stft_dtype="float16", device="cuda", run_loss=False)
    found = run_checks("stft", m).findings
    assert [f.id for f in found] == ["S504"] and found[0].evidence["n_fft"] == 640


def _loud(peak: float) -> np.ndarray:
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 250 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
    return (x * peak / np.abs(x).max()).astype(np.float32)
