"""SEANet-style convolutional encoder and decoder (the EnCodec / SoundStream family, without LSTM).

Every strided block changes the length by exactly its stride when the input length is a multiple of
the hop, so decode(encode(x)) has the input's length without any cropping arithmetic downstream.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .config import CodecConfig


def wn_conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, dilation: int = 1,
            padding: int | None = None) -> nn.Module:
    if padding is None:  # "same" length for odd kernels at stride 1
        padding = dilation * (kernel - 1) // 2
    return weight_norm(nn.Conv1d(in_ch, out_ch, kernel, stride=stride, dilation=dilation, padding=padding))


def strided_conv(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    # kernel 2·s with padding ceil(s/2) maps length L·s to exactly L (checked for s = 2..8)
    return wn_conv(in_ch, out_ch, 2 * stride, stride=stride, padding=(stride + 1) // 2)


def strided_deconv(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    padding = (stride + 1) // 2
    # output_padding 2p - s (0 for even strides, 1 for odd) makes the output exactly L·s long
    return weight_norm(nn.ConvTranspose1d(in_ch, out_ch, 2 * stride, stride=stride, padding=padding,
                                          output_padding=2 * padding - stride))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ELU(), wn_conv(channels, channels // 2 or 1, kernel, dilation=dilation),
            nn.ELU(), wn_conv(channels // 2 or 1, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _residual_stack(channels: int, config: CodecConfig) -> list[nn.Module]:
    return [ResidualUnit(channels, config.residual_kernel_size, d) for d in config.residual_dilations]


class LappedLinear(nn.Module):
    """A learned lapped transform between the waveform and the latent (strided conv / transposed conv
    with 2-hop frames, one hop apart, no bias, no activation).

    Why: the deep SEANet path starts as a product of ~10 random non-residual layers around the
    bottleneck, and gradient descent leaves such a deep map near zero for hundreds of steps (the
    saddle of deep linear networks) before the output begins to follow the input. A two-layer
    linear path learns the principal subspace of 2-hop speech frames in a few dozen steps, so the
    codec's output follows its input early; the deep path then learns what the linear one misses.
    The 50% overlap keeps the transform free of frame-edge discontinuities."""

    def __init__(self, channels: int, latent_dim: int, hop: int, *, decode: bool):
        super().__init__()
        padding = (hop + 1) // 2
        if decode:
            self.conv = nn.ConvTranspose1d(latent_dim, channels, 2 * hop, stride=hop, padding=padding,
                                           output_padding=2 * padding - hop, bias=False)
        else:
            self.conv = nn.Conv1d(channels, latent_dim, 2 * hop, stride=hop, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Encoder(nn.Module):
    """[B, channels, T] -> [B, latent_dim, T / hop]."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        width = config.base_channels
        layers: list[nn.Module] = [wn_conv(config.channels, width, config.kernel_size)]
        for stride in config.strides:
            layers += _residual_stack(width, config)
            layers += [nn.ELU(), strided_conv(width, width * 2, stride)]
            width *= 2
        layers += [nn.ELU(), wn_conv(width, config.latent_dim, 3)]
        self.net = nn.Sequential(*layers)
        self.linear = (LappedLinear(config.channels, config.latent_dim, config.hop_length, decode=False)
                       if config.linear_path else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        return z if self.linear is None else z + self.linear(x)


class Decoder(nn.Module):
    """[B, latent_dim, frames] -> [B, channels, frames · hop], bounded by tanh unless output_bound='none'."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        width = config.base_channels * 2 ** len(config.strides)
        layers: list[nn.Module] = [wn_conv(config.latent_dim, width, config.kernel_size)]
        for stride in reversed(config.strides):
            layers += [nn.ELU(), strided_deconv(width, width // 2, stride)]
            width //= 2
            layers += _residual_stack(width, config)
        layers += [nn.ELU(), wn_conv(width, config.channels, config.kernel_size)]
        self.net = nn.Sequential(*layers)
        self.linear = (LappedLinear(config.channels, config.latent_dim, config.hop_length, decode=True)
                       if config.linear_path else None)
        self.output_bound = config.output_bound

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.net(z)
        if self.linear is not None:
            y = y + self.linear(z)
        if self.output_bound == "tanh":
            y = torch.tanh(y)
        return y
