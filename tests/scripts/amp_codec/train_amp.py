"""A user's own mixed-precision training script: `torch.autocast` + `torch.amp.GradScaler` on the
CPU (float16 or bfloat16), a conv codec, an L1 + multi-scale log-mel loss, and no import of
codecdoctor. The watch tests run it unmodified.

The healthy script computes the mel loss in float32 with autocast disabled (eps 1e-5). Faults, as a
user would write them: --fault stft-overflow (the power-mel loss left under autocast: the mel matmul
runs in float16 and |X|² of loud frames exceeds 65504), --fault half-log (a magnitude-mel loss under
autocast with log(x + 1e-8): 1e-8 is 0 in float16, and the data has digitally silent gaps),
--fault bypass (scaler.unscale_ then optimizer.step() directly, so inf gradients are not skipped),
--fault nan-weights (a NaN written into a decoder weight at --fault-step: every later step overflows).
"""
import argparse
import math

import numpy as np
import torch
from torch import nn

RATE = 16000
FFT_SIZES = (512, 1024, 2048)


def speech_with_gaps(seconds, peak, seed):
    """Voiced syllables (harmonics of a gliding pitch) separated by digital silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 150 + 50 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 10))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = x * envelope
    return (peak * x / np.abs(x).max()).astype(np.float32)


class Codec(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, dim, 7, padding=3), nn.ELU(), nn.Conv1d(dim, dim, 4, stride=4))
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, dim, 4, stride=4), nn.ELU(),
                                     nn.Conv1d(dim, 1, 7, padding=3), nn.Tanh())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def mel_filters(n_fft, n_mels=40):
    """Triangular filters on the mel scale, [n_fft // 2 + 1, n_mels]."""
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    edges = [700 * (10 ** (m / 2595) - 1) for m in np.linspace(mel(0), mel(RATE / 2), n_mels + 2)]
    freqs = np.linspace(0, RATE / 2, n_fft // 2 + 1)
    fb = np.zeros((freqs.size, n_mels), np.float32)
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[:, i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return torch.from_numpy(fb)


FILTERS = {n: mel_filters(n) for n in FFT_SIZES}


def log_mel(x, n_fft, power, eps):
    spec = torch.stft(x.float().reshape(-1, x.shape[-1]), n_fft, n_fft // 4, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    return torch.log(spec.pow(power).transpose(-1, -2) @ FILTERS[n_fft] + eps)


def mel_loss(y, x, power, eps):
    return sum((log_mel(y, n, power, eps) - log_mel(x, n, power, eps)).abs().mean() for n in FFT_SIZES) / len(FFT_SIZES)


def main():
    p = argparse.ArgumentParser(description="mixed-precision codec training")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=8192)
    p.add_argument("--peak", type=float, default=0.5)
    p.add_argument("--amp", choices=["fp16", "bf16"], default="fp16")
    p.add_argument("--fault", choices=["none", "stft-overflow", "half-log", "bypass", "nan-weights"], default="none")
    p.add_argument("--fault-step", type=int, default=5)
    p.add_argument("--val-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    audio = torch.from_numpy(speech_with_gaps(8.0, args.peak, args.seed))
    model = Codec()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dtype = torch.float16 if args.amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler("cpu", enabled=args.amp == "fp16")
    rng = np.random.default_rng(args.seed)
    for step in range(args.steps):
        starts = rng.integers(0, audio.numel() - args.samples, args.batch)
        x = torch.stack([audio[s: s + args.samples] for s in starts])[:, None]
        if args.fault == "nan-weights" and step == args.fault_step:
            with torch.no_grad():
                model.decoder[2].weight[0, 0, 0] = float("nan")
        model.train()
        with torch.autocast("cpu", dtype=dtype):
            y = model(x)
            l1 = (y.float() - x).abs().mean()
            if args.fault == "stft-overflow":
                spectral = mel_loss(y, x, power=2.0, eps=1e-5)
            elif args.fault == "half-log":
                spectral = mel_loss(y, x, power=1.0, eps=1e-8)
            else:
                with torch.autocast("cpu", enabled=False):
                    spectral = mel_loss(y.float(), x, power=2.0, eps=1e-5)
            loss = l1 + 0.1 * spectral
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if args.fault == "bypass" and step >= args.fault_step:
            scaler.unscale_(optimizer)
            optimizer.step()
        else:
            scaler.step(optimizer)
        scaler.update()
        if args.val_every and (step + 1) % args.val_every == 0:
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
                model(x)
    print(f"done: {args.steps} steps, scale {scaler.get_scale() if scaler.is_enabled() else 'off'}")


if __name__ == "__main__":
    main()
