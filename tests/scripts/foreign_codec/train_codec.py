"""A user's own codec training script, in the style of the story's `train_codec.py`: argparse, its
own loop, its own validation, and no import of codecdoctor. The watch tests run it unmodified.

Faults are switched on by flags, as a user's mistakes would be in their own code: data peaking above
1.0 into a tanh decoder (--peak 1.0129), a NaN written into a decoder weight (--nan-step K),
per-example normalisation of the input against a raw target (--normalize), an exception
(--raise-at K), a chosen exit status (--exit-code N), and a Ctrl-C or SIGTERM arriving at step K
(--signal-at K --signal INT|TERM, sent by the script to itself, as a user or a scheduler would).
"""
import argparse
import math
import os
import signal
import sys
import time

import numpy as np
import torch
from torch import nn


def speech_bank(seconds, sample_rate, peak, seed):
    """Voiced syllables: harmonics of a gliding 100-220 Hz pitch under a 4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 160 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * k * t)) for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    x = x * envelope + 0.01 * rng.standard_normal(t.size)
    return (peak * x / np.abs(x).max()).astype(np.float32)


class TinyCodec(nn.Module):
    """Conv encoder (hop 4) and conv decoder ending in tanh; returns (audio, latent)."""

    def __init__(self, dim=16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, dim, 7, padding=3), nn.ELU(), nn.Conv1d(dim, dim, 4, stride=4))
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, dim, 4, stride=4), nn.ELU(),
                                     nn.Conv1d(dim, 1, 7, padding=3), nn.Tanh())

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z


class GainCodec(nn.Module):
    """A trainable 1x1 conv starting as the identity (the level is all it can learn)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()

    def forward(self, x):
        return self.conv(x)


def main():
    p = argparse.ArgumentParser(description="train a tiny codec")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--peak", type=float, default=0.5)
    p.add_argument("--arch", choices=["conv", "gain"], default="conv")
    p.add_argument("--model-package", action="store_true", help="import the codec from the local model/ package")
    p.add_argument("--normalize", action="store_true", help="normalise each example to unit peak (raw target)")
    p.add_argument("--nan-step", type=int, default=None)
    p.add_argument("--raise-at", type=int, default=None)
    p.add_argument("--signal-at", type=int, default=None)
    p.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scaler", action="store_true", help="train through a GradScaler (AMP style, on the CPU)")
    p.add_argument("--overflow-every", type=int, default=None, help="with --scaler: every N-th loss overflows")
    p.add_argument("--eval-mode", action="store_true", help="train without ever calling model.train() (some "
                   "constructors return the model in eval mode)")
    p.add_argument("--ddp", action="store_true", help="DistributedDataParallel on gloo (under torchrun)")
    p.add_argument("--nan-rank", type=int, default=None, help="with --nan-step: only this rank's weight goes NaN")
    args = p.parse_args()
    rank = 0
    if args.ddp:
        torch.distributed.init_process_group("gloo")
        rank = torch.distributed.get_rank()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    sample_rate = 16000
    if args.model_package:
        from model import TinyCodec as Codec  # the user's own model/ package next to this script
    else:
        Codec = TinyCodec if args.arch == "conv" else GainCodec
    model = Codec()
    if args.eval_mode:
        model.eval()
    net = torch.nn.parallel.DistributedDataParallel(model) if args.ddp else model
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    bank = torch.from_numpy(speech_bank(3.0, sample_rate, args.peak, args.seed + rank))
    rng = torch.Generator().manual_seed(args.seed + rank)
    scaler = torch.amp.GradScaler("cpu") if args.scaler else None

    def batch():
        starts = torch.randint(0, bank.numel() - args.samples, (args.batch,), generator=rng)
        x = torch.stack([bank[s: s + args.samples] for s in starts.tolist()]).unsqueeze(1)
        if args.normalize:
            # quiet recordings at varied levels (peaks 0.02-0.1), fed normalised, compared raw
            levels = torch.empty(args.batch, 1, 1).uniform_(0.02, 0.1, generator=rng)
            raw = x / x.abs().amax(-1, keepdim=True) * levels
            return raw / raw.abs().amax(-1, keepdim=True), raw
        return x, x

    val_in, val_target = zip(*[batch() for _ in range(2)])
    val_in, val_target = torch.cat(val_in), torch.cat(val_target)
    for step in range(args.steps):
        if args.raise_at == step:
            raise RuntimeError(f"data loader failed at step {step}")
        if args.signal_at == step:
            os.kill(os.getpid(), getattr(signal, f"SIG{args.signal}"))
            time.sleep(5)  # the signal is handled here, as it would be mid-step
        if args.nan_step == step and args.nan_rank in (None, rank):
            with torch.no_grad():
                model.decoder[2].weight[0, 0, 0] = float("nan")
        x, target = batch()
        out = net(x)
        y = out[0] if isinstance(out, tuple) else out
        loss = (y - target).abs().mean() + 0.5 * (y - target).pow(2).mean()
        optimizer.zero_grad()
        if scaler is not None:
            if args.overflow_every and step % args.overflow_every == 0:
                loss = loss * 1e38  # times the scale: the gradients overflow and the scaler skips the step
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
        if args.val_every and (step + 1) % args.val_every == 0 and rank == 0:
            model.eval()
            with torch.no_grad():
                out = model(val_in)
                est = out[0] if isinstance(out, tuple) else out
            snr = 10 * math.log10(val_target.pow(2).sum() / (val_target - est).pow(2).sum())
            print(f"validation at step {step}: SNR {snr:.2f} dB", flush=True)
            model.train(not args.eval_mode)
    print("done", flush=True)
    if args.ddp:
        torch.distributed.destroy_process_group()
    sys.exit(args.exit_code)


if __name__ == "__main__":
    main()
