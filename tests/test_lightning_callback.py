"""CodecDoctorCallback on a small LightningModule codec: the same monitor, no change to the module."""
from __future__ import annotations

import pytest
import torch
from monitor_loops import crops, speech_bank
from torch import nn

import codecdoctor
from codecdoctor.core.findings import Severity

pl = pytest.importorskip("lightning.pytorch", reason="lightning (dev extra) is not installed")

from codecdoctor.integrations.lightning import CodecDoctorCallback  # noqa: E402


class TinyCodec(nn.Module):
    def __init__(self, dim: int = 16):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, dim, 7, padding=3), nn.ELU(), nn.Conv1d(dim, dim, 4, stride=4))
        self.decoder = nn.Sequential(nn.ConvTranspose1d(dim, dim, 4, stride=4), nn.ELU(),
                                     nn.Conv1d(dim, 1, 7, padding=3), nn.Tanh())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class CodecModule(pl.LightningModule):
    """A user's LightningModule: the codec is a submodule, the loss lives in training_step."""

    def __init__(self, nan_at_step: int | None = None):
        super().__init__()
        self.codec = TinyCodec()
        self.nan_at_step = nan_at_step

    def training_step(self, batch, batch_idx):
        if self.nan_at_step is not None and self.global_step == self.nan_at_step:
            with torch.no_grad():
                self.codec.decoder[2].weight[0, 0, 0] = float("nan")
        (x,) = batch
        y = self.codec(x)
        return (y - x).abs().mean() + (y - x).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        return (self.codec(x) - x).abs().mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def _loaders(peak: float, steps: int):
    bank = speech_bank(3.0, peak=peak)
    train = torch.utils.data.TensorDataset(torch.cat([crops(bank, s, batch=4) for s in range(steps)]))
    val = torch.utils.data.TensorDataset(torch.cat([crops(bank, 1000 + s, batch=4) for s in range(2)]))
    return torch.utils.data.DataLoader(train, batch_size=4), torch.utils.data.DataLoader(val, batch_size=4)


def _fit(module, doctor, peak=0.5, steps=30):
    train, val = _loaders(peak, steps)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, val_check_interval=15,
                         num_sanity_val_steps=1, callbacks=[doctor])
    trainer.fit(module, train, val)


def test_callback_monitors_a_lightning_fit_and_finds_data_beyond_the_tanh(tmp_path):
    torch.manual_seed(0)
    doctor = CodecDoctorCallback(16000, read_every=5, json=tmp_path / "m.json")
    _fit(CodecModule(), doctor, peak=1.0129)
    report = doctor.report
    assert report is not None and (tmp_path / "m.json").exists()
    m = report.measurements
    assert m["steps"] == 30 and len(m["validation"]) == 2  # two validations; the sanity check skipped
    assert [v["step"] for v in m["validation"]] == [15, 30]
    t601 = [f for f in report.findings if f.id == "T601"]
    assert t601 and t601[0].evidence["max_abs"] == pytest.approx(1.0129, abs=1e-4)
    assert 30 < t601[0].evidence["snr_ceiling_db"] < 120
    assert not [f for f in report.findings if f.id in ("T602", "T603", "T604", "T605") and f.severity >= Severity.WARNING]
    assert {"T601", "T602", "T603", "T604", "T605", "T609"} <= set(report.checks_run)
    assert all(c["grad_norm"] > 0 for c in m["curves"])  # gradients read in on_before_optimizer_step
    assert "loss" in m["curves"][-1]["loss"]  # the loss from on_before_backward


def test_callback_stops_the_fit_on_nan_naming_the_decoder_layer():
    torch.manual_seed(0)
    doctor = CodecDoctorCallback(16000, read_every=5)
    with pytest.raises(codecdoctor.CheckFailed) as stopped:
        _fit(CodecModule(nan_at_step=9), doctor)
    t602 = next(f for f in stopped.value.findings if f.id == "T602")
    assert t602.evidence["step"] == 9 and t602.evidence["module"] == "decoder.2"
    assert doctor.report is not None and "T602" in doctor.report.ids()


def test_without_lightning_the_callback_says_how_to_install_it(monkeypatch):
    import importlib
    import sys

    import codecdoctor.integrations.lightning as module

    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    try:
        reloaded = importlib.reload(module)
        with pytest.raises(ImportError, match="pip install lightning"):
            reloaded.CodecDoctorCallback(16000)
    finally:
        monkeypatch.undo()
        importlib.reload(module)
