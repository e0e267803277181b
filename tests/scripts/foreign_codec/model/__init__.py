"""The user's own `model` package (shadows the sibling model.py, as Python's import rules say)."""
import torch
from torch import nn


class TinyCodec(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, dim, 7, padding=3), nn.ELU(), nn.Conv1d(dim, dim, 4, stride=4))
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, dim, 4, stride=4), nn.ELU(),
                                     nn.Conv1d(dim, 1, 7, padding=3), nn.Tanh())

    def forward(self, x: torch.Tensor):
        return self.decoder(self.encoder(x))
