"""T607 on a hand-written quantizer: `nn.Embedding` codebooks with a `usage` count buffer next to
them (the story's telugu_codec.py style), found by the monitor without EMA `cluster_size` buffers."""
from __future__ import annotations

import torch
from monitor_loops import crops, speech_bank
from torch import nn

import codecdoctor
from codecdoctor.monitor.device_stats import find_codebooks


class HandVQ(nn.Module):
    def __init__(self, codes: int = 32, dim: int = 8):
        super().__init__()
        self.codebook = nn.Embedding(codes, dim)
        self.register_buffer("usage", torch.ones(codes))
        self.initialised = False

    def forward(self, z):  # z [B, D, T]
        flat = z.transpose(1, 2).reshape(-1, z.shape[1])
        if not self.initialised:  # codes drawn from the first batch's vectors (a one-shot data init)
            with torch.no_grad():
                self.codebook.weight.copy_(flat[torch.randperm(flat.shape[0])[: self.codebook.num_embeddings]])
            self.initialised = True
        idx = torch.cdist(flat, self.codebook.weight).argmin(1)
        if self.training:
            with torch.no_grad():  # EMA of code counts, as hand-written RVQs keep them
                self.usage.mul_(0.8).add_(0.2 * torch.bincount(idx, minlength=self.usage.numel()).float())
        q = self.codebook(idx).reshape(z.shape[0], z.shape[2], -1).transpose(1, 2)
        return z + (q - z).detach()


class HandCodec(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Conv1d(1, 8, 8, stride=8)
        self.quantizers = nn.ModuleList([HandVQ(), HandVQ()])
        self.decoder = nn.Sequential(nn.ConvTranspose1d(8, 1, 8, stride=8), nn.Tanh())

    def forward(self, x):
        z = self.encoder(x)
        residual, out = z, 0
        for q in self.quantizers:
            qz = q(residual)
            out = out + qz
            residual = residual - qz.detach()
        return self.decoder(out)


def _run(collapse_at: int | None, steps: int = 30):
    torch.manual_seed(0)
    model = HandCodec()
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, codebook_warmup_steps=10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    bank = speech_bank(2.0)
    for step in range(steps):
        if step == collapse_at:
            with torch.no_grad():  # every code of level 0 made identical: one code wins every vector
                w = model.quantizers[0].codebook.weight
                w.copy_(w[:1].expand_as(w))
        x = crops(bank, step)
        y = model(x)
        loss = (y - x).abs().mean()
        monitor.on_batch(x, y, {"l1": loss})
        opt.zero_grad()
        loss.backward()
        monitor.on_backward(model)
        opt.step()
        monitor.on_step()
    return monitor.close()


def test_usage_buffers_next_to_embedding_codebooks_are_found_per_level():
    levels = find_codebooks(HandCodec())
    assert [lv.name for lv in levels] == ["quantizers.0", "quantizers.1"]
    assert [lv.cluster_size for lv in levels] == ["quantizers.0.usage", "quantizers.1.usage"]


def test_collapse_of_a_hand_written_codebook_gives_T607_on_its_level():
    report = _run(collapse_at=15)
    t607 = [f for f in report.findings if f.id == "T607"]
    assert t607 and t607[0].evidence["level"] == 0, report.ids()
    assert t607[0].evidence["perplexity"] < 0.5 * t607[0].evidence["peak_perplexity"]


def test_healthy_hand_written_codebooks_give_no_T607():
    report = _run(collapse_at=None)
    assert "T607" in report.checks_run and "T607" not in report.ids()
    assert len(report.measurements["curves"][-1]["perplexity"]) == 2
