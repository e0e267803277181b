"""Fault injection for the optimizer-side checks (T605 gradients, T606 grad scaler, T610 GAN balance)
and a healthy run that must stay free of errors."""
from __future__ import annotations

import math

import pytest
import torch
from monitor_loops import PassThroughCodec, crops, run_codec, speech_bank, tiny_codec

import codecdoctor

# gain 0.8: the pass-through starts 2 dB off, so it has a non-zero gradient to learn from


def _loop(monitor, model, steps, *, edit_grads=None, extra_losses=None, scaler=None, lr=1e-3):
    bank = speech_bank(2.0)
    opt = torch.optim.Adam(model.parameters(), lr)
    monitor.optimizer = opt
    for step in range(steps):
        x = crops(bank, step)
        y = model(x)
        losses = {"l1": (y - x).abs().mean()}
        if extra_losses:
            losses.update(extra_losses(step))
        monitor.on_batch(x, y, losses)
        opt.zero_grad()
        if scaler is not None:
            scaler.scale(losses["l1"]).backward()
            if edit_grads:
                edit_grads(step, model)
            scaler.unscale_(opt)
        else:
            losses["l1"].backward()
            if edit_grads:
                edit_grads(step, model)
        monitor.on_backward(model)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
            monitor.on_step(scaler)
        else:
            opt.step()
            monitor.on_step()


def test_gradient_explosion_names_the_step():
    k = 33
    monitor = codecdoctor.Monitor(PassThroughCodec(gain=0.8), 16000, mode="warn", read_every=10)

    def spike(step, model):
        if step == k:
            for p in model.parameters():
                p.grad.mul_(1e4)

    _loop(monitor, monitor.model, 45, edit_grads=spike)
    t605 = [f for f in monitor.close().findings if f.id == "T605"]
    assert len(t605) == 1 and t605[0].evidence["step"] == k
    assert t605[0].evidence["grad_norm"] / t605[0].evidence["median_grad_norm"] > 1000


def test_nonfinite_gradient_without_scaler_stops_strict_run_before_the_optimizer_step():
    k = 6
    model = PassThroughCodec(gain=0.8)
    monitor = codecdoctor.Monitor(model, 16000, mode="strict", read_every=25)

    def poison(step, m):
        if step == k:
            m.conv.weight.grad.fill_(float("inf"))

    with pytest.raises(codecdoctor.CheckFailed) as failure:
        _loop(monitor, model, 10, edit_grads=poison)
    t605 = next(f for f in failure.value.findings if f.id == "T605")
    assert t605.severity.label == "error" and t605.evidence["first_step"] == k
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())  # the inf never reached the weights
    monitor.close()


def test_grad_scaler_skipping_steps_gives_T606():
    model = PassThroughCodec(gain=0.8)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)

    def overflow(step, m):
        if step >= 20 and step % 2 == 0:  # every other step overflows from step 20 on
            m.conv.weight.grad.fill_(float("inf"))

    _loop(monitor, model, 40, edit_grads=overflow, scaler=scaler)
    report = monitor.close()
    t606 = [f for f in report.findings if f.id == "T606"]
    assert t606 and t606[0].evidence["skipped"] / t606[0].evidence["steps"] >= 0.4
    assert "T605" not in [f.id for f in report.findings if f.severity.label == "error"]  # skipped, not applied


def test_scaler_without_skips_gives_no_T606():
    model = PassThroughCodec(gain=0.8)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=10)
    _loop(monitor, model, 40, scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    report = monitor.close()
    assert "T606" in report.checks_run and "T606" not in report.ids()


@pytest.mark.parametrize("disc_loss, expected", [(0.01, True), (1.2, False)])
def test_discriminator_domination(disc_loss, expected):
    monitor = codecdoctor.Monitor(PassThroughCodec(gain=0.8), 16000, mode="warn", read_every=10)
    _loop(monitor, monitor.model, 31, extra_losses=lambda s: {"disc": torch.tensor(disc_loss), "adv": torch.tensor(3.0)})
    report = monitor.close()
    assert "T610" in report.checks_run
    assert ("T610" in report.ids()) is expected


def test_healthy_tiny_codec_run_has_no_error_findings():
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="strict", read_every=10)
    bank = speech_bank(6.0)
    run_codec(monitor, model, loss_fn, 40, lambda s: crops(bank, s), lr=1e-3)
    report = monitor.close()
    assert report.worst() is None or report.worst() < codecdoctor.Severity.ERROR, report.ids()
    assert {"T601", "T602", "T603", "T604", "T605", "T607", "T609"} <= set(report.checks_run)
    assert report.measurements["steps"] == 40 and all(math.isfinite(c["grad_norm"]) for c in report.measurements["curves"])
