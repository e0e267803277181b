"""The one mel definition: measure/spectral.py, torchaudio's melscale_fbanks(norm="slaney",
mel_scale="htk") and the filterbank inside the codec's training loss are the same matrix."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from codecdoctor.measure.spectral import mel_filterbank
from codecdoctor_model.config import CodecConfig
from codecdoctor_model.losses import MultiScaleMelLoss, ReconstructionLoss

CASES = [(16000, 256, 32), (16000, 512, 64), (16000, 1024, 80), (22050, 1024, 80),
         (24000, 2048, 128), (44100, 2048, 128), (8000, 256, 40)]


@pytest.mark.parametrize(("sample_rate", "n_fft", "n_mels"), CASES)
def test_mel_filterbank_equals_torchaudio(sample_rate, n_fft, n_mels):
    ours = mel_filterbank(sample_rate, n_fft, n_mels)
    ref = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2.0, n_mels,
                                                sample_rate, norm="slaney", mel_scale="htk")
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    assert np.abs(ref.numpy()).max() > 0
    np.testing.assert_allclose(ours, ref.numpy().astype(np.float64), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(("sample_rate", "n_fft", "n_mels"), CASES)
def test_codec_loss_filterbank_equals_measure(sample_rate, n_fft, n_mels):
    loss = MultiScaleMelLoss(sample_rate, (n_fft,), (n_mels,))
    fb = loss.mels[0].mel_scale.fb.detach().numpy()
    np.testing.assert_allclose(fb, mel_filterbank(sample_rate, n_fft, n_mels), rtol=1e-4, atol=1e-7)


def test_default_codec_loss_uses_the_shared_definition():
    config = CodecConfig.default()
    mel = ReconstructionLoss(config).mel
    assert len(mel.mels) == len(config.mel_fft_sizes)
    for transform, n_fft, n_mels in zip(mel.mels, config.mel_fft_sizes, config.mel_bins):
        fb = transform.mel_scale.fb.detach().numpy()
        np.testing.assert_allclose(fb, mel_filterbank(config.sample_rate, n_fft, n_mels), rtol=1e-4, atol=1e-7)


def test_slaney_scale_would_differ():
    """Guard against a vacuous comparison: the Slaney mel scale gives a different matrix."""
    slaney = torchaudio.functional.melscale_fbanks(257, 0.0, 8000.0, 32, 16000, norm="slaney",
                                                   mel_scale="slaney").numpy()
    assert np.abs(slaney - mel_filterbank(16000, 512, 32)).max() > 1e-3


def test_mel_loss_zero_for_identical_and_positive_for_different():
    loss = MultiScaleMelLoss(16000, (256, 512), (32, 64))
    x = torch.randn(2, 1, 4000) * 0.1
    assert float(loss(x, x)) == 0.0
    assert float(loss(0.5 * x, x)) > 0.1


@pytest.mark.parametrize("n, segment", [(40000, 4096), (4097, 4096), (1000, 4096), (10001, 1001), (5, 8)])
def test_welch_density_equals_scipy_welch(n, segment):
    from scipy.signal import welch

    from codecdoctor.measure.spectral import welch_density

    x = np.random.default_rng(n).standard_normal(n)
    freqs, power = welch(x, fs=4000.0, nperseg=min(segment, n), detrend=False)
    ours_freqs, ours = welch_density(x, 4000.0, segment)
    np.testing.assert_allclose(ours_freqs, freqs)
    np.testing.assert_allclose(ours, power, rtol=1e-12, atol=1e-15 * float(power.max()))


@pytest.mark.parametrize("n", [65, 1000, 300_001])
def test_fir_valid_equals_scipy_oaconvolve(n):
    from scipy.signal import oaconvolve

    from codecdoctor.measure.spectral import fir_valid

    rng = np.random.default_rng(n)
    x, taps = rng.standard_normal(n), rng.standard_normal(65)
    np.testing.assert_allclose(fir_valid(x, taps), oaconvolve(x, taps, mode="valid"), atol=1e-11)
    assert fir_valid(x[:10], taps).size == 0
