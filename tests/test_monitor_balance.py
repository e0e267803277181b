"""T612 loss balance: each term's share of the gradient at the decoder output, measured on the
read-back schedule only. Fault: a hinge adversarial term weighted so it owns the gradient (the
discriminator-overpowering failure); healthy: the same loop with a modest adversarial weight, and
the built-in codec's own reconstruction losses."""
from __future__ import annotations

import pytest
import torch
from monitor_loops import PassThroughCodec, crops, run_codec, speech_bank, tiny_codec

import codecdoctor

READ_EVERY = 5
STEPS = 30


def _adversarial_run(adv_weight: float):
    torch.manual_seed(0)
    model = PassThroughCodec(gain=0.8)
    # a fixed random conv discriminator: hinge generator loss relu(1 - D(y))
    disc = torch.nn.Conv1d(1, 4, 31, stride=8)
    for p in disc.parameters():
        p.requires_grad_(False)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=READ_EVERY)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    monitor.optimizer = opt
    bank = speech_bank(2.0)
    for step in range(STEPS):
        x = crops(bank, step)
        y = model(x)
        losses = {"l1": (y - x).abs().mean(), "adv": adv_weight * torch.relu(1 - disc(y)).mean()}
        losses["total"] = losses["l1"] + losses["adv"]
        monitor.on_batch(x, y, losses)
        opt.zero_grad()
        losses["total"].backward()
        monitor.on_backward(model)
        opt.step()
        monitor.on_step()
    return monitor.close()


def test_an_adversarial_term_that_owns_the_gradient_gives_T612_naming_it():
    report = _adversarial_run(adv_weight=50.0)
    t612 = [f for f in report.findings if f.id == "T612"]
    assert t612, report.ids()
    evidence = t612[0].evidence
    assert evidence["dominant_term"] == "adv" and evidence["dominant_share"] > 0.8
    assert evidence["share_adv"] + evidence["share_l1"] == pytest.approx(1.0)  # "total" is not a term
    # measured once per read-back window (the first step of each), never every step
    balance = report.measurements["loss_balance"]
    assert [b["step"] for b in balance] == list(range(0, STEPS, READ_EVERY))


def test_a_modest_adversarial_weight_gives_no_T612():
    report = _adversarial_run(adv_weight=0.05)
    assert "T612" in report.checks_run and "T612" not in report.ids()
    shares = report.measurements["loss_balance"][-1]["shares"]
    assert 0.0 < shares[report.measurements["loss_balance"][-1]["terms"].index("adv")] < 0.8


def test_reconstruction_losses_of_the_built_in_codec_are_balanced_and_commitment_has_no_share():
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=READ_EVERY)
    bank = speech_bank(2.0)
    run_codec(monitor, model, loss_fn, 11, lambda s: crops(bank, s))
    report = monitor.close()
    assert "T612" in report.checks_run and "T612" not in report.ids()
    last = report.measurements["loss_balance"][-1]
    shares = dict(zip(last["terms"], last["shares"]))
    assert {"mel", "l1"} <= set(shares) and "total" not in shares
    assert shares.get("commit", 0.0) == 0.0  # the commitment loss does not reach the decoder output
