"""A user's own GAN codec trainer (no import of codecdoctor), small enough for a test: a conv
encoder, a residual VQ whose levels return their codes and keep EMA usage counts, a tanh decoder, a
waveform discriminator with its own optimizer and a hinge loss, feature matching. Each step prints
one JSON line with the generator's loss as the script computed it (`gen_loss`) and the
discriminator's (`disc_loss`).

Structure switches: --balancer (each term's gradient at the output scaled to unit norm and the sum
sent with `y.backward(gradient)`, as a loss balancer does; its effective loss printed; the
commitment term backpropagated apart), --parts (each term's own backward),
--autograd-backward (`torch.autograd.backward([...])`). Faults: --codebook-blowup (codebooks
scaled to ~2000 after a k-means-like init: every frame picks one code while the EMA counts stay
uniform), --disc-zero-grad (the discriminator's zero_grad between its backward and its step).
"""
import argparse
import json
import math

import torch
from torch import nn
from torch.nn import functional as F


class Level(nn.Module):
    def __init__(self, size, dim):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(size, dim) * 0.1, requires_grad=False)
        self.register_buffer("cluster_size", torch.ones(size))

    def nearest(self, z):  # z [B, D, T] -> codes [B*T]
        flat = z.permute(0, 2, 1).reshape(-1, z.shape[1])
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])
        return dist.argmin(1)

    def forward(self, z):  # (quantized, codes [B, T])
        codes = self.nearest(z)
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.codebook.shape[0]).float()
                self.cluster_size.mul_(0.99).add_(onehot.sum(0), alpha=0.01)
        q = self.codebook[codes].reshape(z.shape[0], z.shape[2], -1).permute(0, 2, 1)
        return q, codes.reshape(z.shape[0], z.shape[2])


class SilentLevel(Level):
    """A level that returns only its quantized output: its codes exist only as an argmin inside."""

    def forward(self, z):
        return super().forward(z)[0]


class CodebookLevel(Level):
    """A level whose forward calls its own encode() and returns only the quantized output."""

    def encode(self, z):
        return self.nearest(z).reshape(z.shape[0], z.shape[2])

    def forward(self, z):
        codes = self.encode(z)
        return self.codebook[codes.reshape(-1)].reshape(z.shape[0], z.shape[2], -1).permute(0, 2, 1)


class Quantizer(nn.Module):
    def __init__(self, levels, size, dim, level=Level):
        super().__init__()
        self.layers = nn.ModuleList(level(size, dim) for _ in range(levels))

    def forward(self, z):
        residual, out = z, torch.zeros_like(z)
        for layer in self.layers:
            q = layer(residual)
            q = q[0] if isinstance(q, tuple) else q
            out = out + q
            residual = residual - q.detach()
        commit = F.mse_loss(z, out.detach())
        return z + (out - z).detach(), commit


class Codec(nn.Module):
    def __init__(self, dim=8, levels=3, size=64, level=Level):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, 16, 7, padding=3), nn.ELU(), nn.Conv1d(16, dim, 16, stride=16))
        self.quantizer = Quantizer(levels, size, dim, level)
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, 16, 16, stride=16), nn.ELU(),
                                     nn.Conv1d(16, 1, 7, padding=3), nn.Tanh())

    def forward(self, x):
        z = self.encoder(x)
        q, commit = self.quantizer(z)
        return self.decoder(q), commit


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv1d(1, 8, 15, stride=4, padding=7), nn.Conv1d(8, 16, 15, stride=4, padding=7),
                                     nn.Conv1d(16, 1, 3, padding=1)])

    def forward(self, x):
        fmaps = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.leaky_relu(x, 0.2)
            fmaps.append(x)
        return x, fmaps


def batch(step, size, samples, generator):
    t = torch.arange(samples) / 16000.0
    f0 = 100 + 300 * torch.rand(size, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(size, 1, generator=generator)
    x = 0.5 * torch.sin(2 * math.pi * f0 * t + phase) + 0.05 * torch.randn(size, samples, generator=generator)
    return (x / x.abs().amax(1, keepdim=True) * 0.6).unsqueeze(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--balancer", action="store_true")
    p.add_argument("--parts", action="store_true")
    p.add_argument("--autograd-backward", action="store_true")
    p.add_argument("--codebook-blowup", action="store_true")
    p.add_argument("--disc-zero-grad", action="store_true")
    p.add_argument("--silent-quantizer", action="store_true", help="levels return no codes (argmin inside)")
    p.add_argument("--encode-quantizer", action="store_true", help="levels return no codes (encode() inside)")
    args = p.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    level = SilentLevel if args.silent_quantizer else CodebookLevel if args.encode_quantizer else Level
    model, disc = Codec(level=level), Discriminator()
    opt_g = torch.optim.Adam(model.parameters(), 1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), 1e-3)
    with torch.no_grad():  # k-means-like init: codebooks from encoder outputs of the first batch
        z = model.encoder(batch(0, args.batch, args.samples, g))
        frames = z.permute(0, 2, 1).reshape(-1, z.shape[1])
        for layer in model.quantizer.layers:
            layer.codebook.copy_(frames[torch.randint(0, frames.shape[0], (layer.codebook.shape[0],), generator=g)])
            if args.codebook_blowup:
                layer.codebook.mul_(2000.0)
    for step in range(args.steps):
        x = batch(step, args.batch, args.samples, g)
        y, commit = model(x)
        # the discriminator first, on the detached output and the reference
        real, _ = disc(x)
        fake, _ = disc(y.detach())
        d_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        opt_d.zero_grad()
        d_loss.backward()
        if args.disc_zero_grad:
            opt_d.zero_grad()
        opt_d.step()
        # then the generator
        fake, fmap_fake = disc(y)
        _, fmap_real = disc(x)
        adv = F.relu(1 - fake).mean()
        feat = sum(F.l1_loss(a, b.detach()) for a, b in zip(fmap_fake, fmap_real)) / len(fmap_fake)
        l1 = F.l1_loss(y, x)
        terms = {"adv": adv, "feat": feat, "l1": l1}
        opt_g.zero_grad()
        if args.balancer:
            grads = [torch.autograd.grad(t, [y], retain_graph=True)[0] for t in terms.values()]
            scales = [1.0 / (gr.norm().item() + 1e-8) for gr in grads]
            y.backward(sum(s * gr for s, gr in zip(scales, grads)), retain_graph=True)
            commit.backward()
            # the balancer's effective loss: the scalar whose gradient at y is the one sent
            gen_loss = sum(s * t.item() for s, t in zip(scales, terms.values())) + commit.item()
        elif args.parts:
            for t in list(terms.values()) + [commit]:
                t.backward(retain_graph=True)
            gen_loss = sum(t.item() for t in terms.values()) + commit.item()
        elif args.autograd_backward:
            total = sum(terms.values()) + commit
            torch.autograd.backward([total])
            gen_loss = total.item()
        else:
            total = sum(terms.values()) + commit
            total.backward()
            gen_loss = total.item()
        opt_g.step()
        with torch.no_grad():
            z, distinct = model.encoder(x), []
            for layer in model.quantizer.layers:
                c = layer.nearest(z)
                distinct.append(int(c.unique().numel()))
                z = z - layer.codebook[c].reshape(z.shape[0], z.shape[2], -1).permute(0, 2, 1)
        print(json.dumps({"step": step, "gen_loss": gen_loss, "disc_loss": d_loss.item(), "distinct": distinct}),
              flush=True)


if __name__ == "__main__":
    main()
