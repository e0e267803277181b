"""A GAN codec trainer's structure after descript-audio-codec's scripts/train.py, small: an argbind
entry point reading the keyword arguments' real annotations, a `State` holding the generator and the
discriminator with their own optimizers and schedulers, and a `train_loop` that backpropagates and
steps the discriminator first, then the generator's weighted sum of losses (`lambdas`). The codec ends
in tanh, its RVQ codebooks start from random frames of the first batch and follow EMA updates.

    python train_dac_style.py --steps 20 --fault none

Prints `step N gen_loss X` per step (X is the scalar the generator's backward starts from) and
`val step N loss X snr_db Y` at each validation.
"""
from dataclasses import dataclass

import argbind
import codec_parts as parts
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAMBDAS = {"stft/loss": 1.0, "waveform/loss": 30.0, "adv/gen_loss": 0.3, "adv/feat_loss": 0.3, "vq/commitment_loss": 0.25}


class DAC(nn.Module):
    def __init__(self, levels: int = 4, codebook_size: int = 32, init: str = "sample", init_scale: float = None):
        super().__init__()
        self.encoder = parts.ConvEncoder()
        self.quantizer = parts.ResidualVQ(levels, codebook_size, 16, init=init, init_scale=init_scale,
                                            dead_code_threshold=0.0 if init_scale else 0.5)
        self.decoder = parts.ConvDecoder(tanh=True)

    def forward(self, audio_data: torch.Tensor) -> dict:
        z, codes, commitment = self.quantizer(self.encoder(audio_data))
        return {"audio": self.decoder(z), "codes": codes, "vq/commitment_loss": commitment}


@dataclass
class State:
    generator: DAC
    optimizer_g: torch.optim.Optimizer
    scheduler_g: torch.optim.lr_scheduler.LRScheduler
    discriminator: parts.MultiScaleSTFTDiscriminator
    optimizer_d: torch.optim.Optimizer
    scheduler_d: torch.optim.lr_scheduler.LRScheduler
    fault: str


def train_loop(state: State, signal: torch.Tensor) -> dict:
    state.generator.train()
    state.discriminator.train()
    out = state.generator(signal)
    recons = out["audio"]

    real_logits, _ = state.discriminator(signal)
    fake_logits, _ = state.discriminator(recons.detach())
    output = {"adv/disc_loss": parts.hinge_discriminator_loss(real_logits, fake_logits)}
    if state.fault == "disc_zero_grad_after_step":
        output["adv/disc_loss"].backward()
        state.optimizer_d.zero_grad()  # planted: clears the gradients the step below was to use
        state.optimizer_d.step()
    else:
        state.optimizer_d.zero_grad()
        output["adv/disc_loss"].backward()
        torch.nn.utils.clip_grad_norm_(state.discriminator.parameters(), 10.0)
        state.optimizer_d.step()
    state.scheduler_d.step()

    fake_logits, fake_fmaps = state.discriminator(recons)
    _, real_fmaps = state.discriminator(signal)
    output["stft/loss"] = parts.multi_resolution_stft_loss(signal, recons)
    output["waveform/loss"] = F.mse_loss(recons, signal)
    output["adv/gen_loss"] = parts.hinge_generator_loss(fake_logits)
    output["adv/feat_loss"] = parts.feature_matching_loss(real_fmaps, fake_fmaps)
    output["vq/commitment_loss"] = out["vq/commitment_loss"]
    output["loss"] = sum(weight * output[name] for name, weight in LAMBDAS.items())
    state.optimizer_g.zero_grad()
    output["loss"].backward()
    torch.nn.utils.clip_grad_norm_(state.generator.parameters(), 1e3)
    state.optimizer_g.step()
    state.scheduler_g.step()
    return {k: v.item() for k, v in output.items()}


@torch.no_grad()
def val_loop(state: State, signal: torch.Tensor) -> dict:
    state.generator.eval()
    out = state.generator(signal)
    state.generator.train()
    codes = out["codes"]
    return {"loss": F.mse_loss(out["audio"], signal).item(), "snr_db": parts.snr_db(signal, out["audio"]),
            "codes_per_level": [len(torch.unique(codes[:, level])) for level in range(codes.shape[1])]}


@argbind.bind(without_prefix=True)
def train(steps: int = 20, fault: str = "none", val_freq: int = 5, batch_size: int = 4, lr: float = 3e-3,
          seed: int = 0, save_path: str = "ckpt_dac_style.pt"):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    peak = 1.3 if fault == "data_beyond_tanh" else 0.5
    held_out = parts.speech_batch(np.random.default_rng(seed + 1000), 8, peak=peak)
    generator = DAC(4, 512, "kmeans", 1e4) if fault == "codebook_blowup" else DAC()
    if fault == "nan_decoder_weight":
        with torch.no_grad():
            generator.decoder.last_conv().weight[0, 0, 0] = float("nan")
    discriminator = parts.MultiScaleSTFTDiscriminator()
    lr_g, schedule = (1e-7, parts.rising_lr) if fault == "lr_tiny" else (lr, lambda step: 0.9999 ** step)
    optimizer_g = torch.optim.AdamW(generator.parameters(), lr=lr_g, betas=(0.8, 0.99))
    optimizer_d = torch.optim.AdamW(discriminator.parameters(), lr=1e-3, betas=(0.8, 0.99))
    state = State(generator, optimizer_g, torch.optim.lr_scheduler.LambdaLR(optimizer_g, schedule),
                  discriminator, optimizer_d, torch.optim.lr_scheduler.LambdaLR(optimizer_d, schedule), fault)
    for step in range(steps):
        output = train_loop(state, parts.speech_batch(rng, batch_size, peak=peak))
        print(f"step {step} gen_loss {output['loss']:.6f} disc_loss {output['adv/disc_loss']:.6f}", flush=True)
        if (step + 1) % val_freq == 0 or step + 1 == steps:
            val = val_loop(state, held_out)
            print(f"val step {step} loss {val['loss']:.6f} snr_db {val['snr_db']:.3f} "
                  f"codes_per_level {val['codes_per_level']}", flush=True)
    torch.save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict()}, save_path)


if __name__ == "__main__":
    args = argbind.parse_args()
    with argbind.scope(args):
        train()
