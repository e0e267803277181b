"""Reconstruction losses (multi-scale mel + L1 waveform + commitment) and the optional multi-scale
STFT discriminator (hinge loss + feature matching).

Every STFT runs in float32 with autocast disabled: under fp16 a full-scale 1024-point frame has
|X|² up to ~2.6e5 (above the fp16 max of 65504), and log(eps) with eps = 1e-5 underflows to 0 → -inf.
Autocast itself leaves torch.stft in float32 but casts the mel projection (a matmul) to float16 on
CPU and CUDA alike, so an unguarded power-mel loss overflows exactly there; `half_precision_guard=
False` keeps that unguarded form for tests that show the guard's effect.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .config import CodecConfig


def _fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float()


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of L1 between log10 mel magnitudes (clamped at 1e-5, i.e. -100 dB).

    The filters are HTK-scale triangles with Slaney area normalisation, the same mel definition the
    diagnostics measure with (tests/test_spectral.py pins the two equal), so a mel distance the
    loss optimises is the mel distance the reports show.
    """

    def __init__(self, sample_rate: int, fft_sizes, mel_bins, clamp: float = 1e-5, *, power: float = 1.0,
                 half_precision_guard: bool = True):
        super().__init__()
        self.clamp = clamp
        # False: the mel projection and log follow the surrounding autocast (the STFT input is still
        # cast to float32: CPUs have no half-precision FFT)
        self.half_precision_guard = half_precision_guard
        mels = []
        for n_fft, n_mels in zip(fft_sizes, mel_bins):
            mels.append(torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=n_fft // 4,
                n_mels=n_mels, power=power, center=True, norm="slaney", mel_scale="htk"))
        self.mels = nn.ModuleList(mels)

    def _precision(self, device: torch.device):
        if self.half_precision_guard:
            return torch.autocast(device_type=device.type, enabled=False)
        return contextlib.nullcontext()

    def log_mel(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        with self._precision(x.device):
            return torch.log10(self.mels[scale](_fp32(x)).clamp(min=self.clamp))

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        with self._precision(est.device):
            est, ref = _fp32(est), _fp32(ref)
            total = est.new_zeros(())
            for i in range(len(self.mels)):
                total = total + F.l1_loss(self.log_mel(est, i), self.log_mel(ref, i))
            return total / len(self.mels)


class ReconstructionLoss(nn.Module):
    """Weighted sum of mel, L1 waveform and commitment terms; returns a dict with `total`."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.mel = MultiScaleMelLoss(config.sample_rate, config.mel_fft_sizes, config.mel_bins)

    def forward(self, est: torch.Tensor, ref: torch.Tensor, commit_loss: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        mel = self.mel(est, ref)
        with torch.autocast(device_type=est.device.type, enabled=False):
            l1 = F.l1_loss(_fp32(est), _fp32(ref))
        commit = commit_loss.float()
        total = c.mel_weight * mel + c.l1_weight * l1 + c.commit_weight * commit
        terms = {"total": total, "mel": mel, "l1": l1, "commit": commit}
        if c.snr_weight:
            with torch.autocast(device_type=est.device.type, enabled=False):
                ref32 = _fp32(ref)
                # noise-to-signal power ratio of the batch (linear, so well-behaved near 0 dB)
                nsr = (_fp32(est) - ref32).pow(2).sum() / ref32.pow(2).sum().clamp(min=1e-8)
            terms["nsr"] = nsr
            snr_term = torch.log10(nsr.clamp(min=1e-6)) if c.snr_loss == "db" else nsr
            terms["total"] = total + c.snr_weight * snr_term
        return terms


# --- adversarial --------------------------------------------------------------------------------

class STFTDiscriminator(nn.Module):
    """2-D conv stack on the complex STFT (real and imaginary parts as channels), as in EnCodec."""

    def __init__(self, n_fft: int, channels: int):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        ch = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(2, ch, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.stft(_fp32(x).reshape(-1, x.shape[-1]), self.n_fft, self.n_fft // 4,
                              window=self.window, return_complex=True)
            h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, time, freq]
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.out(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, config.disc_channels) for n in config.disc_fft_sizes)

    def forward(self, x: torch.Tensor):
        return [d(x) for d in self.discriminators]


def discriminator_hinge_loss(real_outputs, fake_outputs) -> torch.Tensor:
    loss = 0.0
    for (real, _), (fake, _) in zip(real_outputs, fake_outputs):
        loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return loss / len(real_outputs)


def generator_adversarial_losses(real_outputs, fake_outputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(hinge generator loss, feature matching loss: L1 per layer relative to the real feature's
    mean magnitude, so layers of different scale weigh alike)."""
    adv = 0.0
    feat = 0.0
    n_layers = 0
    for (_, real_feats), (fake, fake_feats) in zip(real_outputs, fake_outputs):
        adv = adv + F.relu(1 - fake).mean()
        for r, f in zip(real_feats, fake_feats):
            feat = feat + F.l1_loss(f, r.detach()) / (r.detach().abs().mean() + 1e-8)
            n_layers += 1
    return adv / len(fake_outputs), feat / max(n_layers, 1)
