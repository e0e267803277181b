"""The Monitor under real CPU autocast (float16 with a real torch.amp.GradScaler, and bfloat16):
healthy runs give no S5xx / T606 warning; the scaler's own state gives T606 for skipped steps, a
collapsed scale and a scale stuck at a floor, also when the weights are already non-finite."""
from __future__ import annotations

import math

import torch
from monitor_loops import crops, speech_bank, tiny_codec

import codecdoctor

AMP_IDS = ("S501", "S502", "S503", "S504", "T604", "T606", "T614")


class FlooredScaler(torch.amp.GradScaler):
    """A GradScaler with a minimum scale, as some trainers add: it stops halving at the floor."""

    def __init__(self, floor: float, **kwargs):
        super().__init__("cpu", **kwargs)
        self.floor = floor

    def update(self, new_scale=None):
        super().update(new_scale)
        self._scale.clamp_(min=self.floor)


def _amp_run(steps: int, dtype: torch.dtype, scaler, *, nan_weight_step: int | None = None, read_every: int = 5):
    model, loss_fn = tiny_codec()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=read_every, optimizer=optimizer)
    bank = speech_bank(2.0)
    for step in range(steps):
        x = crops(bank, step, batch=2)
        if step == nan_weight_step:
            with torch.no_grad():
                next(model.decoder.parameters()).view(-1)[0] = float("nan")
        with torch.autocast("cpu", dtype=dtype):
            out = model(x)
            losses = loss_fn(out.audio, x, out.commit_loss)
        monitor.on_batch(x, out.audio, losses)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
        monitor.on_backward(model)
        scaler.step(optimizer)
        scaler.update()
        monitor.on_step(scaler)
    return monitor.close(), out.audio.dtype


def _loud(report):
    return [f for f in report.findings if f.id in AMP_IDS and f.severity.label != "info"]


def test_healthy_fp16_autocast_with_a_real_scaler_gives_no_amp_warning():
    scaler = torch.amp.GradScaler("cpu")
    report, out_dtype = _amp_run(12, torch.float16, scaler)
    assert out_dtype == torch.float16  # the codec really ran in half precision
    assert not _loud(report), _loud(report)
    assert "T606" in report.checks_run
    scales = [c["scale"] for c in report.measurements["curves"] if math.isfinite(c["scale"])]
    assert scales and scales[-1] == scaler.get_scale()  # the scale the monitor read is the scaler's


def test_healthy_bf16_autocast_gives_no_amp_warning():
    report, out_dtype = _amp_run(8, torch.bfloat16, torch.amp.GradScaler("cpu", enabled=False))
    assert out_dtype == torch.bfloat16
    assert not _loud(report), _loud(report)


def test_nonfinite_weights_still_give_T606_collapse_from_the_scaler_state():
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    report, _ = _amp_run(16, torch.float16, scaler, nan_weight_step=2)
    assert scaler.get_scale() < 1.0  # every step from 2 on skipped: 256 halved 14 times
    collapse = [f for f in report.findings if f.id == "T606" and f.severity.label == "error"]
    assert collapse and collapse[0].evidence["scale"] < 1.0, report.ids()
    assert collapse[0].evidence["skipped"] == collapse[0].evidence["steps"]
    assert any(f.id == "T602" for f in report.findings)  # the cause is named too


def test_scale_stuck_at_a_floor_is_T606_although_it_no_longer_falls():
    scaler = FlooredScaler(128.0, init_scale=1024.0)
    report, _ = _amp_run(14, torch.float16, scaler, nan_weight_step=1)
    assert scaler.get_scale() == 128.0
    stuck = [f for f in report.findings if f.id == "T606" and f.evidence.get("stuck")]
    assert stuck and stuck[0].severity.label == "error" and stuck[0].evidence["scale"] == 128.0, report.ids()
    assert stuck[0].evidence["skipped"] >= 5


def test_a_growing_scale_is_not_a_skip():
    """growth_interval 2: the tracker returns to 0 when the scale doubles; that is growth, not a skip."""
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2)
    report, _ = _amp_run(12, torch.float16, scaler, read_every=4)
    assert scaler.get_scale() >= 4.0 * 2 ** 5  # it doubled every other step, steps 8-11 included
    assert "T606" in report.checks_run and not [f for f in report.findings if f.id == "T606"]
