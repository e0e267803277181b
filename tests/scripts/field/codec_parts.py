"""Small parts shared by the field trainers in this folder, as a user's own `modules/` would be:
synthetic speech, a conv encoder and decoder, an EMA residual vector quantizer with k-means init, a
multi-scale STFT discriminator and the usual GAN codec losses. Sized so that 20 steps take seconds on
one CPU core. No import of codecdoctor: the scripts run under plain `python`.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16000
SEGMENT = 4096  # 0.256 s
HOP = 64  # encoder strides 4 x 4 x 4: 250 frames per second
# (F1, F2, F3) in Hz of a few vowels
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def speech(rng, samples, peak=0.5):
    """One voiced utterance: harmonics of a gliding 90-220 Hz pitch, shaped by the formants of a vowel
    that changes every syllable (~5 per second), under a syllable envelope, with a little breath noise."""
    t = np.arange(samples) / SAMPLE_RATE
    f_start, f_end = rng.uniform(120, 220), rng.uniform(90, 160)
    f0 = np.linspace(f_start, f_end, samples) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    syllable = (t * rng.uniform(4, 6) + rng.uniform(0, 1)).astype(int)
    formants = np.array(VOWELS)[rng.integers(len(VOWELS), size=syllable.max() + 1)][syllable]  # [T, 3]
    x = np.zeros(samples)
    for k in range(1, int(7000 / f_start)):
        freq = k * f0
        gain = sum(g * np.exp(-0.5 * ((freq - formants[:, i]) / 120.0) ** 2) for i, g in enumerate((1.0, 0.5, 0.25)))
        x += np.where(freq < 7600, gain * np.sin(k * phase) / math.sqrt(k), 0.0)
    envelope = np.abs(np.sin(np.pi * (t * rng.uniform(4, 6) + rng.uniform(0, 1)))) ** 0.6
    x = x * envelope + 0.003 * rng.standard_normal(samples)
    return (peak * x / np.abs(x).max()).astype(np.float32)


def speech_batch(rng, batch, samples=SEGMENT, peak=0.5):
    return torch.from_numpy(np.stack([speech(rng, samples, peak) for _ in range(batch)]))[:, None, :]


class ConvEncoder(nn.Module):
    def __init__(self, channels=16, dim=16, strides=(4, 4, 4)):
        super().__init__()
        layers = [nn.Conv1d(1, channels, 7, padding=3), nn.ELU()]
        for s in strides:
            layers += [nn.Conv1d(channels, channels, 2 * s, stride=s, padding=s // 2), nn.ELU()]
        layers.append(nn.Conv1d(channels, dim, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class ConvDecoder(nn.Module):
    def __init__(self, channels=16, dim=16, strides=(4, 4, 4), tanh=False):
        super().__init__()
        layers = [nn.Conv1d(dim, channels, 3, padding=1), nn.ELU()]
        for s in strides:
            layers += [nn.ConvTranspose1d(channels, channels, 2 * s, stride=s, padding=s // 2), nn.ELU()]
        layers.append(nn.Conv1d(channels, 1, 7, padding=3))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def last_conv(self):
        return [m for m in self.net if isinstance(m, nn.Conv1d)][-1]

    def forward(self, z):
        return self.net(z)


class EMACodebook(nn.Module):
    """One VQ level: nearest code, EMA updates of the codes in training mode, initialised on the first
    training batch (k-means, as EnCodec does, or random frames of that batch). A code whose EMA count
    falls below `dead_code_threshold` is restarted on a random frame of the batch (0: never)."""

    def __init__(self, size, dim, decay=0.9, init="kmeans", init_scale=None, kmeans_iters=10, dead_code_threshold=0.5):
        super().__init__()
        self.decay, self.init, self.init_scale, self.kmeans_iters = decay, init, init_scale, kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.register_buffer("inited", torch.tensor(False))
        self.register_buffer("embed", torch.zeros(size, dim))
        self.register_buffer("embed_avg", torch.zeros(size, dim))
        self.register_buffer("cluster_size", torch.zeros(size))

    def _first_batch(self, x):
        size = self.embed.shape[0]
        if self.init_scale is not None:  # centroids drawn at a fixed scale, not from the data
            centroids = torch.randn(size, x.shape[1]) * self.init_scale
        else:
            centroids = x[torch.randint(0, x.shape[0], (size,))].clone()
        counts = torch.ones(size)
        for _ in range(self.kmeans_iters if self.init == "kmeans" else 0):
            assign = torch.cdist(x, centroids).argmin(1)
            counts = torch.bincount(assign, minlength=size).float()
            sums = torch.zeros_like(centroids).index_add_(0, assign, x)
            centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        counts = counts.clamp(min=1)
        self.embed.copy_(centroids)
        self.embed_avg.copy_(centroids * counts[:, None])  # EMA sums: code = embed_avg / cluster_size
        self.cluster_size.copy_(counts)
        self.inited.fill_(True)

    def encode(self, x):
        return torch.cdist(x, self.embed).argmin(1)

    def forward(self, x):  # x: [N, D] frames
        if self.training and not bool(self.inited):
            self._first_batch(x.detach())
        codes = self.encode(x)
        quantized = self.embed[codes]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.embed.shape[0]).float()
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(onehot.t() @ x.detach(), alpha=1 - self.decay)
                n = self.cluster_size.sum()
                smoothed = (self.cluster_size + 1e-5) / (n + 1e-5 * len(self.cluster_size)) * n
                self.embed.copy_(self.embed_avg / smoothed[:, None])
                dead = self.cluster_size < self.dead_code_threshold
                if dead.any():
                    restart = x.detach()[torch.randint(0, x.shape[0], (int(dead.sum()),))]
                    self.embed[dead] = restart
                    self.embed_avg[dead] = restart
                    self.cluster_size[dead] = 1.0
        return codes, quantized


class ResidualVQ(nn.Module):
    """Several EMA levels, each quantizing what the levels before it left; straight-through gradient.
    forward(z [B, D, T]) -> (quantized [B, D, T], codes [B, levels, T], commitment loss)."""

    def __init__(self, levels=4, size=32, dim=16, **codebook):
        super().__init__()
        self.layers = nn.ModuleList(EMACodebook(size, dim, **codebook) for _ in range(levels))

    def forward(self, z):
        frames = z.transpose(1, 2).reshape(-1, z.shape[1])
        residual, total, codes = frames, torch.zeros_like(frames), []
        for layer in self.layers:
            level_codes, q = layer(residual)
            residual = residual - q
            total = total + q
            codes.append(level_codes)
        quantized = total.reshape(z.shape[0], z.shape[2], -1).transpose(1, 2)
        commitment = F.mse_loss(z, quantized.detach())
        codes = torch.stack(codes, 1).reshape(z.shape[0], z.shape[2], -1).transpose(1, 2)
        return z + (quantized - z).detach(), codes, commitment

    @torch.no_grad()
    def encode(self, z):
        frames = z.transpose(1, 2).reshape(-1, z.shape[1])
        codes = []
        for layer in self.layers:
            level_codes = layer.encode(frames)
            frames = frames - layer.embed[level_codes]
            codes.append(level_codes)
        return torch.stack(codes, 1).reshape(z.shape[0], z.shape[2], -1).transpose(1, 2)


class STFTDiscriminator(nn.Module):
    """2-D convolutions over the complex STFT (real and imaginary as channels), EnCodec-style."""

    def __init__(self, n_fft, channels=8):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            nn.Conv2d(2, channels, (3, 9), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(channels, channels, (3, 3), padding=(1, 1)),
        ])
        self.out = nn.Conv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x):
        spec = torch.stft(x[:, 0], self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        h = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)  # [B, 2, frames, bins]
        fmaps = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            fmaps.append(h)
        return self.out(h), fmaps


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts=(128, 256, 512), channels=8):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, x):
        logits, fmaps = [], []
        for d in self.discriminators:
            logit, fmap = d(x)
            logits.append(logit)
            fmaps.append(fmap)
        return logits, fmaps


def hinge_discriminator_loss(real_logits, fake_logits):
    """Mean over scales; 2.0 for a discriminator whose logits sit at 0."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)) / len(real_logits)


def hinge_generator_loss(fake_logits):
    return sum(F.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_fmaps, fake_fmaps):
    pairs = [(r.detach(), f) for rs, fs in zip(real_fmaps, fake_fmaps) for r, f in zip(rs, fs)]
    return sum(F.l1_loss(f, r) / (r.abs().mean() + 1e-8) for r, f in pairs) / len(pairs)


def multi_resolution_stft_loss(x, y, n_ffts=(256, 512, 1024)):
    """L1 of log magnitudes plus L1 of magnitudes, averaged over resolutions."""
    total = 0.0
    for n in n_ffts:
        window = torch.hann_window(n, device=x.device)
        mx = torch.stft(x[:, 0], n, n // 4, window=window, return_complex=True).abs()
        my = torch.stft(y[:, 0], n, n // 4, window=window, return_complex=True).abs()
        total = total + F.l1_loss(torch.log(my + 1e-5), torch.log(mx + 1e-5)) + F.l1_loss(my, mx)
    return total / len(n_ffts)


def snr_db(ref, est):
    noise = (ref - est).pow(2).sum()
    return float(10 * torch.log10(ref.pow(2).sum() / noise.clamp(min=1e-12)))


def rising_lr(step, slope=1e-3):
    """A warm-up that rises slowly and never ends: the learning rate stays near its base value."""
    return 1.0 + slope * step


def warmup(step, steps=5):
    return min(1.0, (step + 1) / steps)
