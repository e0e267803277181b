"""The codec: SEANet encoder -> residual VQ -> SEANet decoder.

The input is used at its own scale: no per-sample normalisation (which destroys level
information a codec must reproduce). Lengths that are not a multiple of the hop are zero-padded on
the right and the output is cropped back, so `audio` always has the input's shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig
from .quantizer import ResidualVectorQuantizer
from .seanet import Decoder, Encoder


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, C, T]
    codes: torch.Tensor  # [B, n_q, frames] long
    commit_loss: torch.Tensor  # scalar
    latent: torch.Tensor  # encoder output [B, D, frames]
    n_quantizers: torch.Tensor  # [B] levels used per example (quantizer dropout)


class Codec(nn.Module):
    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        self.config = config or CodecConfig()
        self.encoder = Encoder(self.config)
        self.quantizer = ResidualVectorQuantizer(self.config)
        self.decoder = Decoder(self.config)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def bitrate_bps(self) -> float:
        return self.config.bitrate_bps

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        if x.dim() != 3 or x.shape[1] != self.config.channels:
            raise ValueError(f"expected audio [batch, {self.config.channels}, time], got {tuple(x.shape)}")
        length = x.shape[-1]
        extra = (-length) % self.hop_length
        return (F.pad(x, (0, extra)) if extra else x), length

    def forward(self, x: torch.Tensor, n_quantizers: int | None = None) -> CodecOutput:
        padded, length = self._pad(x)
        latent = self.encoder(padded)
        q = self.quantizer(latent, n_quantizers=n_quantizers)
        # the quantizer works in float32; hand the decoder the encoder's dtype (bf16 under autocast)
        audio = self.decoder(q.quantized.to(latent.dtype))
        return CodecOutput(audio[..., :length], q.codes, q.commit_loss, latent, q.n_quantizers)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_quantizers: int | None = None) -> torch.Tensor:
        """[B, C, T] -> codes [B, n_q, ceil(T / hop)] (long). Uses eval-mode quantization (no EMA
        update) regardless of the module's mode."""
        padded, _ = self._pad(x)
        was_training = self.quantizer.training
        self.quantizer.eval()
        try:
            return self.quantizer(self.encoder(padded), n_quantizers=n_quantizers).codes
        finally:
            self.quantizer.train(was_training)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """codes [B, n_q, frames] -> audio [B, C, frames · hop] (cropped to `length` if given)."""
        latent = self.quantizer.decode(codes.long())
        param = next(self.decoder.parameters())
        audio = self.decoder(latent.to(param.dtype))
        return audio if length is None else audio[..., :length]

    def usage(self) -> list[dict]:
        return self.quantizer.usage()
