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
