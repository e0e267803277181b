"""A HiFi-GAN-style trainer's structure, turned into a small codec: argparse under
`if __name__ == "__main__":`, a Dataset class defined in this script and read by DataLoader workers
(fork or spawn: spawn pickles the class through `__main__`), a generator (conv encoder, EMA RVQ,
conv decoder ending in tanh) and a multi-period discriminator with their own optimizers `optim_g`
and `optim_d`. Each step backpropagates the discriminator's least-squares loss first, then the
generator's total loss; validation runs every `--validation_interval` steps in eval mode.

    python train_hifigan_style.py --steps 20 --num_workers 1 --mp_context spawn --fault none

Prints `step N gen_loss X` per step (X is `loss_gen_all`, the scalar the generator's backward starts
from) and `validation step N mse X snr_db Y`.
"""
import argparse

import codec_parts as parts
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SpeechCrops(Dataset):
    """Item i is a crop of a synthetic utterance seeded by (seed, i): the same in any worker."""

    def __init__(self, items, seed, peak):
        self.items, self.seed, self.peak = items, seed, peak

    def __len__(self):
        return self.items

    def __getitem__(self, index):
        rng = np.random.default_rng((self.seed, index))
        return torch.from_numpy(parts.speech(rng, parts.SEGMENT, self.peak))[None]


class Generator(nn.Module):
    def __init__(self, levels=4, codebook_size=32, **codebook):
        super().__init__()
        self.encoder = parts.ConvEncoder()
        self.quantizer = parts.ResidualVQ(levels, codebook_size, 16, **codebook)
        self.decoder = parts.ConvDecoder(tanh=True)

    def forward(self, x):
        z, codes, commitment = self.quantizer(self.encoder(x))
        self.commitment, self.codes = commitment, codes
        return self.decoder(z)


class PeriodDiscriminator(nn.Module):
    def __init__(self, period, channels=8):
        super().__init__()
        self.period = period
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, (5, 1), (3, 1), padding=(2, 0)),
                                    nn.Conv2d(channels, channels, (5, 1), (3, 1), padding=(2, 0))])
        self.conv_post = nn.Conv2d(channels, 1, (3, 1), padding=(1, 0))

    def forward(self, x):
        b, c, t = x.shape
        pad = (-t) % self.period
        x = F.pad(x, (0, pad), "reflect").view(b, c, (t + pad) // self.period, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            fmap.append(x)
        return self.conv_post(x).flatten(1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods=(2, 3, 5)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p) for p in periods)

    def forward(self, y, y_hat):
        outs = [(d(y), d(y_hat)) for d in self.discriminators]
        return [r[0] for r, _ in outs], [g[0] for _, g in outs], [r[1] for r, _ in outs], [g[1] for _, g in outs]


def discriminator_loss(real_outputs, generated_outputs):
    return sum(torch.mean((1 - dr) ** 2) + torch.mean(dg ** 2) for dr, dg in zip(real_outputs, generated_outputs))


def generator_loss(generated_outputs):
    return sum(torch.mean((1 - dg) ** 2) for dg in generated_outputs)


def feature_loss(fmap_r, fmap_g):
    return sum(torch.mean(torch.abs(r.detach() - g)) for dr, dg in zip(fmap_r, fmap_g) for r, g in zip(dr, dg))


def validate(step, generator, validation_loader):
    generator.eval()
    errors, snrs, codes = [], [], []
    with torch.no_grad():
        for y in validation_loader:
            y_g_hat = generator(y)
            errors.append(F.mse_loss(y_g_hat, y).item())
            snrs.append(parts.snr_db(y, y_g_hat))
            codes.append(generator.codes)
    codes = torch.cat(codes)
    distinct = [len(torch.unique(codes[:, level])) for level in range(codes.shape[1])]
    print(f"validation step {step} mse {np.mean(errors):.6f} snr_db {np.mean(snrs):.3f} codes_per_level {distinct}",
          flush=True)
    generator.train()


def train(a):
    torch.manual_seed(a.seed)
    peak = 1.3 if a.fault == "data_beyond_tanh" else 0.5
    blowup = a.fault == "codebook_blowup"
    generator = Generator(4, 512, init="kmeans", init_scale=1e4, dead_code_threshold=0.0) if blowup else Generator(init="kmeans")
    if a.fault == "nan_decoder_weight":
        with torch.no_grad():
            generator.decoder.last_conv().weight[0, 0, 0] = float("nan")
    mpd = MultiPeriodDiscriminator()
    lr, schedule = (1e-7, parts.rising_lr) if a.fault == "lr_tiny" else (a.learning_rate, lambda step: a.lr_decay ** step)
    optim_g = torch.optim.AdamW(generator.parameters(), lr, betas=(0.8, 0.99))
    optim_d = torch.optim.AdamW(mpd.parameters(), a.learning_rate, betas=(0.8, 0.99))
    scheduler_g = torch.optim.lr_scheduler.LambdaLR(optim_g, schedule)
    scheduler_d = torch.optim.lr_scheduler.LambdaLR(optim_d, schedule)
    train_loader = DataLoader(SpeechCrops(a.steps * a.batch_size, a.seed, peak), batch_size=a.batch_size,
                              shuffle=False, num_workers=a.num_workers, drop_last=True,
                              multiprocessing_context=a.mp_context if a.num_workers > 0 else None)
    validation_loader = DataLoader(SpeechCrops(8, a.seed + 1000, peak), batch_size=4, num_workers=0)
    generator.train()
    mpd.train()
    for step, y in enumerate(train_loader):
        y_g_hat = generator(y)

        optim_d.zero_grad() if a.fault != "disc_zero_grad_after_step" else None
        y_df_hat_r, y_df_hat_g, _, _ = mpd(y, y_g_hat.detach())
        loss_disc_all = discriminator_loss(y_df_hat_r, y_df_hat_g)
        loss_disc_all.backward()
        if a.fault == "disc_zero_grad_after_step":
            optim_d.zero_grad()  # planted: clears the gradients the step below was to use
        optim_d.step()

        optim_g.zero_grad()
        _, y_df_hat_g, fmap_r, fmap_g = mpd(y, y_g_hat)
        loss_mel = parts.multi_resolution_stft_loss(y, y_g_hat)
        loss_gen_all = (generator_loss(y_df_hat_g) * 0.3 + feature_loss(fmap_r, fmap_g) * 0.3 + loss_mel * 0.3
                        + F.l1_loss(y_g_hat, y) + F.mse_loss(y_g_hat, y) * 30 + generator.commitment)
        loss_gen_all.backward()
        optim_g.step()
        scheduler_g.step()
        scheduler_d.step()
        print(f"step {step} gen_loss {loss_gen_all.item():.6f} disc_loss {loss_disc_all.item():.6f}", flush=True)
        if step % a.validation_interval == 0 or step + 1 == a.steps:
            validate(step, generator, validation_loader)
    torch.save({"generator": generator.state_dict(), "steps": a.steps}, a.checkpoint_path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fault", default="none", choices=["none", "codebook_blowup", "lr_tiny",
                                                             "disc_zero_grad_after_step", "nan_decoder_weight",
                                                             "data_beyond_tanh"])
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--lr_decay", type=float, default=0.9999)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--mp_context", choices=["fork", "spawn", "forkserver"], default=None)
    parser.add_argument("--validation_interval", type=int, default=5)
    parser.add_argument("--checkpoint_path", default="ckpt_hifigan_style.pt")
    parser.add_argument("--seed", type=int, default=0)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
