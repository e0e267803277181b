"""The user guide's (docs/GUIDE.md) plain PyTorch loop around a codec that is not this project's: a small conv
autoencoder with vector-quantize-pytorch's `ResidualVQ`, monitored by the same `Monitor`."""
from __future__ import annotations

import pytest
import torch
from monitor_loops import crops, speech_bank
from torch import nn

import codecdoctor

vqp = pytest.importorskip("vector_quantize_pytorch", reason="vector-quantize-pytorch (dev extra) is not installed")


class ConvRVQCodec(nn.Module):
    """Conv encoder (hop 8) -> ResidualVQ (EMA codebooks) -> conv decoder ending in tanh."""

    def __init__(self, dim: int = 16, levels: int = 2, codebook_size: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, dim, 7, padding=3), nn.ELU(),
                                     nn.Conv1d(dim, dim, 8, stride=8))
        self.rvq = vqp.ResidualVQ(dim=dim, num_quantizers=levels, codebook_size=codebook_size, kmeans_init=True,
                                  kmeans_iters=2, decay=0.9)
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, dim, 8, stride=8), nn.ELU(),
                                     nn.Conv1d(dim, 1, 7, padding=3), nn.Tanh())

    def forward(self, x):
        z = self.encoder(x).transpose(1, 2)
        q, codes, commit = self.rvq(z)
        return self.decoder(q.transpose(1, 2)), commit.sum()


def train(model, steps, make_batch, *, settings=None, poison=None):
    """The user guide's loop: ten monitor lines around an ordinary training loop."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = codecdoctor.MonitorConfig(mode="warn", output_bound=1.0, read_every=5, **(settings or {}))
    monitor = codecdoctor.Monitor(model, sample_rate=16000, config=config, optimizer=optimizer,
                                  forward=lambda m, x: m(x))
    for step in range(steps):
        if poison:
            poison(step, model)
        x = make_batch(step)
        y, commit_loss = model(x)
        losses = {"l1": (y - x).abs().mean(), "commit": commit_loss}
        monitor.on_batch(x, y, losses)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        monitor.on_backward(model)
        optimizer.step()
        monitor.on_step()
    return monitor, monitor.close()


def _quiet_loguru():
    try:  # vector-quantize-pytorch logs a k-means warning for small batches through loguru
        from loguru import logger
        logger.remove()
    except Exception:
        pass


def test_healthy_foreign_loop_has_no_error_and_reads_its_codebooks():
    _quiet_loguru()
    torch.manual_seed(0)
    bank = speech_bank(4.0)
    monitor, report = train(ConvRVQCodec(), 15, lambda s: crops(bank, s, batch=8, samples=2000))
    assert report.worst() is None or report.worst() < codecdoctor.Severity.ERROR, report.ids()
    assert len(monitor.curves[-1]["perplexity"]) == 2  # both ResidualVQ levels found by their EMA buffers
    assert {"T601", "T602", "T604", "T605", "T607"} <= set(report.checks_run)


def test_foreign_loop_faults_are_found():
    _quiet_loguru()
    torch.manual_seed(0)
    hot = speech_bank(4.0, peak=1.01)  # data beyond the tanh's reach
    model = ConvRVQCodec()
    nan_step = 17

    def poison(step, m):
        if step == nan_step:  # a decoder weight goes NaN (e.g. an fp16 overflow in a custom kernel)
            with torch.no_grad():
                m.decoder[2].weight[0, 0, 0] = float("nan")

    monitor, report = train(model, 20, lambda s: crops(hot, s, batch=8, samples=2000), poison=poison)
    by_id = {f.id: f for f in report.findings}
    # a few crops reach 1.01: a finite ceiling (about 74 dB on these crops), stated in the message
    assert "T601" in by_id and 20 < by_id["T601"].evidence["snr_ceiling_db"] < 200
    assert f"{by_id['T601'].evidence['snr_ceiling_db']:.1f} dB" in by_id["T601"].message
    t604 = by_id["T604"]
    assert t604.evidence["step"] == nan_step and t604.evidence["module"] == "decoder.2"
    assert t604.evidence["module_params_nonfinite"] is True


def test_foreign_codebook_collapse_gives_T607():
    _quiet_loguru()
    torch.manual_seed(0)
    bank = speech_bank(4.0)
    model = ConvRVQCodec()
    collapse_step = 25

    def collapse(step, m):
        if step == collapse_step:  # every code of level 0 made identical: one code wins every vector
            with torch.no_grad():
                codebook = m.rvq.layers[0]._codebook
                codebook.embed.copy_(codebook.embed[:, :1].expand_as(codebook.embed))
                codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[..., None])

    monitor, report = train(model, 45, lambda s: crops(bank, s, batch=8, samples=2000), poison=collapse,
                            settings={"codebook_warmup_steps": 10})
    t607 = [f for f in report.findings if f.id == "T607"]
    assert t607 and t607[0].evidence["level"] == 0
    assert t607[0].evidence["perplexity"] < 0.5 * t607[0].evidence["peak_perplexity"]
