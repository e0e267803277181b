"""A community EnCodec trainer's structure, small: a hydra entry point that changes the working
directory, an `EncodecModel` (conv encoder, EMA residual VQ initialised by k-means on the first
batch, unbounded conv decoder), an MS-STFT discriminator, and a loss balancer that backpropagates
the reconstruction and adversarial terms as one `output.backward(gradient)` after the commitment
loss's own scalar backward. The generator is stepped first, then the discriminator.

    python train_encodec_style.py steps=20 fault=none hydra.run.dir=/tmp/run

Prints `step N gen_loss X` per step, X being the generator's total loss: the balancer's effective
loss (each term times the scale the balancer gave its gradient) plus the weighted commitment loss;
`eval step N loss X snr_db Y codes_per_level [...]` at each evaluation.
"""
import codec_parts as parts
import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn


class EncodecModel(nn.Module):
    def __init__(self, encoder, quantizer, decoder):
        super().__init__()
        self.encoder, self.quantizer, self.decoder = encoder, quantizer, decoder

    def forward(self, x):
        quantized, codes, commitment = self.quantizer(self.encoder(x))
        return self.decoder(quantized), commitment, codes

    def encode(self, x):
        return self.quantizer.encode(self.encoder(x))

    @staticmethod
    def get_model(levels=4, codebook_size=32, tanh=False, kmeans_init_scale=None):
        return EncodecModel(parts.ConvEncoder(), parts.ResidualVQ(levels, codebook_size, 16, init="kmeans",
                                                                  init_scale=kmeans_init_scale,
                                                                  dead_code_threshold=0.0 if kmeans_init_scale else 0.5),
                            parts.ConvDecoder(tanh=tanh))


class Balancer:
    """Each term's gradient at the model output is rescaled so that its share of the total gradient
    norm follows its weight, whatever the term's own scale; the sum is backpropagated from the
    output with `output.backward(gradient)`. Returns the effective loss, sum(scale_k * loss_k): the
    scalar whose gradient at the output is that sum (what the trainer logs)."""

    def __init__(self, weights, decay=0.99):
        self.weights, self.decay, self.norms = dict(weights), decay, {}

    def backward(self, losses, output):
        total_weight = sum(self.weights[name] for name in losses)
        gradient, effective = torch.zeros_like(output), 0.0
        for name, loss in losses.items():
            grad, = torch.autograd.grad(loss, [output], retain_graph=True)
            norm = float(grad.norm())
            self.norms[name] = self.decay * self.norms.get(name, norm) + (1 - self.decay) * norm
            scale = self.weights[name] / total_weight / (self.norms[name] + 1e-12)
            gradient += scale * grad
            effective += scale * loss.item()
        output.backward(gradient)
        return effective


def train_one_step(step, model, disc, optimizer, optimizer_disc, scheduler, disc_scheduler, balancer, x, cfg):
    model.train()
    disc.train()
    optimizer.zero_grad()
    output, commitment, _ = model(x)
    logits_fake, fmap_fake = disc(output)
    _, fmap_real = disc(x)
    losses = {"wave": F.mse_loss(output, x), "stft": parts.multi_resolution_stft_loss(x, output),
              "adv": parts.hinge_generator_loss(logits_fake), "feat": parts.feature_matching_loss(fmap_real, fmap_fake)}
    weighted_commitment = cfg.balancer.commitment_weight * commitment
    weighted_commitment.backward(retain_graph=True)
    gen_loss = balancer.backward(losses, output) + weighted_commitment.item()
    optimizer.step()

    logits_real, _ = disc(x)
    logits_fake, _ = disc(output.detach())
    loss_disc = parts.hinge_discriminator_loss(logits_real, logits_fake)
    if cfg.fault == "disc_zero_grad_after_step":
        loss_disc.backward()
        optimizer_disc.zero_grad()  # planted: clears the gradients the step below was to use
        optimizer_disc.step()
    else:
        optimizer_disc.zero_grad()
        loss_disc.backward()
        optimizer_disc.step()
    scheduler.step()
    disc_scheduler.step()
    print(f"step {step} gen_loss {gen_loss:.6f} disc_loss {loss_disc.item():.6f}", flush=True)


@torch.no_grad()
def test(step, model, x):
    model.eval()
    output, _, codes = model(x)
    distinct = [len(torch.unique(codes[:, level])) for level in range(codes.shape[1])]
    print(f"eval step {step} loss {F.mse_loss(output, x).item():.6f} snr_db {parts.snr_db(x, output):.3f} "
          f"codes_per_level {distinct}", flush=True)
    model.train()


def train(cfg):
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    peak = 1.3 if cfg.fault == "data_beyond_tanh" else 0.5
    held_out = parts.speech_batch(np.random.default_rng(cfg.seed + 1000), 8, peak=peak)
    blowup = cfg.fault == "codebook_blowup"
    model = EncodecModel.get_model(cfg.model.levels, 512 if blowup else cfg.model.codebook_size,
                                   tanh=cfg.fault == "data_beyond_tanh", kmeans_init_scale=1e4 if blowup else None)
    if cfg.fault == "nan_decoder_weight":
        with torch.no_grad():
            model.decoder.last_conv().weight[0, 0, 0] = float("nan")
    disc = parts.MultiScaleSTFTDiscriminator()
    lr, schedule = (1e-7, parts.rising_lr) if cfg.fault == "lr_tiny" else (
        cfg.optimization.lr, lambda s: parts.warmup(s, cfg.optimization.warmup_steps))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    optimizer_disc = torch.optim.Adam(disc.parameters(), lr=cfg.optimization.disc_lr, betas=(0.5, 0.9))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    disc_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer_disc, schedule)
    balancer = Balancer(cfg.balancer.weights)
    for step in range(cfg.steps):
        x = parts.speech_batch(rng, cfg.datasets.batch_size, peak=peak)
        train_one_step(step, model, disc, optimizer, optimizer_disc, scheduler, disc_scheduler, balancer, x, cfg)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            test(step, model, held_out)
    torch.save({"model_state_dict": model.state_dict(), "cfg": OmegaConf.to_container(cfg)}, cfg.checkpoint.save_name)


@hydra.main(version_base="1.3", config_path="conf", config_name="encodec_style")
def main(cfg: DictConfig):
    train(cfg)


if __name__ == "__main__":
    main()
