"""The codec's receptive field in input samples: how far apart two samples can be and still meet in
one output sample's computation (encoder -> per-frame quantizer -> decoder).

Read from the layers the config builds (kernel, stride, dilation and padding of every convolution;
a residual unit or the lapped linear path is a parallel branch, so the window is the union), not
from a formula kept beside them: a change of the architecture changes the answer with it. The
quantizer maps each latent frame on its own and adds no context.

The trainer uses it for the gap between training and validation regions of one file: with a gap of
at least one receptive field, no window the model ever saw during training reaches into audio it
is validated on.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import CodecConfig


def _conv_span(layer: nn.Module, lo: int, hi: int) -> tuple[int, int]:
    """The input positions [lo', hi'] that output positions [lo, hi] of one conv layer read."""
    kernel, stride = layer.kernel_size[0], layer.stride[0]
    dilation, padding = layer.dilation[0], layer.padding[0]
    if isinstance(layer, nn.ConvTranspose1d):
        # output o receives input i for o = i * stride - padding + j * dilation, j in [0, kernel)
        extent = dilation * (kernel - 1)
        return math.ceil((lo + padding - extent) / stride), (hi + padding) // stride
    return lo * stride - padding, hi * stride - padding + dilation * (kernel - 1)


def _span(module: nn.Module, lo: int, hi: int) -> tuple[int, int]:
    """Input positions module(x)[lo..hi] depends on. Sequential chains compose; a module with a
    `block` (a residual unit: x + block(x)) or a `linear` path beside `net` takes the union."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        return _conv_span(module, lo, hi)
    if isinstance(module, nn.Sequential):
        for layer in reversed(module):
            lo, hi = _span(layer, lo, hi)
        return lo, hi
    if hasattr(module, "block"):  # residual: the identity branch reads [lo, hi] itself
        inner = _span(module.block, lo, hi)
        return min(lo, inner[0]), max(hi, inner[1])
    if hasattr(module, "net"):
        spans = [_span(module.net, lo, hi)]
        if getattr(module, "linear", None) is not None:
            spans.append(_span(module.linear.conv, lo, hi))
        return min(s[0] for s in spans), max(s[1] for s in spans)
    return lo, hi  # pointwise (ELU, tanh)


def receptive_field_samples(config: CodecConfig) -> int:
    """Widest input window (in samples at the codec's rate) that one output sample depends on,
    over every phase of the output within a hop."""
    from .seanet import Decoder, Encoder

    with torch.device("meta"):  # shapes and hyper-parameters only: no weights are allocated
        encoder, decoder = Encoder(config), Decoder(config)
    hop = config.hop_length
    middle = 64 * hop  # far from the signal's edges, where padding would clip the window
    widest = 1
    for phase in range(hop):
        frames = _span(decoder, middle + phase, middle + phase)
        lo, hi = _span(encoder, *frames)
        widest = max(widest, hi - lo + 1)
    return widest
