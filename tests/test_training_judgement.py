"""T608 and T609 judge a run by where it is: a baseline, early training, a stalled or ended run.

An untrained decoder's output is modelled by another utterance at 0.3x the reference's level
(SNR -1.78 dB over the two pairs, R314 + R301 and nothing else): what a decoder that has not learned produces.
"""
from __future__ import annotations

import pytest
import torch
from monitor_loops import PassThroughCodec, crops, speech_bank

import codecdoctor
from codecdoctor.core.findings import Severity

VAL_SAMPLES = 16000


def _validation_pair():
    ref = crops(speech_bank(6.0), 0, batch=2, samples=VAL_SAMPLES)
    unrelated = 0.3 * crops(speech_bank(6.0, seed=1), 0, batch=2, samples=VAL_SAMPLES)
    return ref, unrelated


def _train(monitor, model, steps: int, loss_at=lambda step: 1.0 / (1 + 0.05 * step), start: int = 0):
    """`steps` optimizer steps whose reported loss follows `loss_at` (a falling loss by default)."""
    optimizer = monitor.optimizer
    bank = speech_bank(2.0)
    for step in range(start, start + steps):
        x = crops(bank, step)
        y = model(x)
        monitor.on_batch(x, y, {"total": torch.tensor(loss_at(step))})
        optimizer.zero_grad()
        (y - x).abs().mean().backward()
        monitor.on_backward(model)
        optimizer.step()
        monitor.on_step()


def _monitor(read_every: int = 10):
    model = PassThroughCodec(gain=0.5)   # a real gradient every step (the identity's L1 gradient is 0)
    optimizer = torch.optim.Adam(model.parameters(), 3e-4)
    return model, codecdoctor.Monitor(model, 16000, mode="warn", read_every=read_every, optimizer=optimizer)


def _t608(findings):
    return [f for f in findings if f.id == "T608"]


def test_a_validation_before_the_first_optimizer_step_is_an_info_baseline():
    model, monitor = _monitor()
    ref, est = _validation_pair()
    monitor.on_validation(ref, est)
    t608 = _t608(monitor.findings)
    assert len(t608) == 1 and t608[0].severity == Severity.INFO
    assert t608[0].evidence["trained_steps"] == 0 and "baseline" in t608[0].message
    assert t608[0].evidence["snr_db"] == pytest.approx(-1.78, abs=0.01)
    # the diagnosis of an untrained output (R314, R301) is listed at the baseline's severity
    assert {f.id for f in monitor.findings} >= {"R314", "R301"}
    assert all(f.severity == Severity.INFO for f in monitor.findings)


def test_snr_near_0_early_is_not_learned_yet_and_a_20_step_smoke_run_exits_0():
    model, monitor = _monitor()
    ref, est = _validation_pair()
    monitor.on_validation(ref, est)                 # baseline
    _train(monitor, model, 20)
    monitor.on_validation(ref, est)                 # step 20, SNR -1.78 dB, loss still falling
    report = monitor.close()
    t608 = _t608(report.findings)
    assert len(t608) == 1, [f.message for f in t608]  # the latest validation replaced the baseline's
    assert t608[0].severity == Severity.INFO and "not learned yet" in t608[0].message
    assert t608[0].evidence["trained_steps"] == 20 and t608[0].evidence["repeats"] == 1
    assert report.worst() == Severity.INFO and report.exit_code() == 0


def test_a_run_that_ended_after_its_first_part_with_negative_snr_is_an_error():
    model, monitor = _monitor(read_every=25)
    ref, est = _validation_pair()
    _train(monitor, model, 150)                     # loss still falling: judged at the end
    monitor.on_validation(ref, est)
    assert _t608(monitor.findings)[0].severity == Severity.INFO
    report = monitor.close()
    t608 = _t608(report.findings)
    assert len(t608) == 1 and t608[0].severity == Severity.ERROR
    assert "ended after 150 steps" in t608[0].message and t608[0].evidence["run_ended"] is True
    assert report.exit_code() == 1


def test_a_plateaued_loss_with_snr_near_0_is_an_error_during_the_run():
    model, monitor = _monitor()
    ref, est = _validation_pair()
    _train(monitor, model, 60, loss_at=lambda step: 0.5)   # flat: 0.0% improvement over 60 steps
    monitor.on_validation(ref, est)
    t608 = _t608(monitor.findings)
    assert t608[0].severity == Severity.ERROR and "stopped improving (0.0%" in t608[0].message
    monitor.close()


def test_the_t608_headline_quotes_the_latest_and_the_best_validation():
    model, monitor = _monitor()
    ref = crops(speech_bank(6.0), 0, batch=2, samples=VAL_SAMPLES)
    _train(monitor, model, 10)
    monitor.on_validation(ref, 0.25 * ref)          # SNR 2.50 dB
    _train(monitor, model, 10, start=10)
    monitor.on_validation(ref, 0.1 * ref)           # SNR 0.92 dB: the latest, worse than the best
    t608 = _t608(monitor.findings)
    assert len(t608) == 1
    message = t608[0].message
    assert message.startswith("validation SNR is 0.92 dB over 2 pairs at step 20 (latest; best 2.50 dB at step 10")
    assert t608[0].evidence["best_snr_db"] == pytest.approx(2.499, abs=0.01)
    monitor.close()


def _run_with_schedule(lr: float, lr_at_step, steps: int = 12, read_every: int = 10, scheduler=None):
    """Adam at `lr`; `lr_at_step(step)` multiplies it through a LambdaLR, or (scheduler=False) is
    written into the param group by hand each step."""
    model = PassThroughCodec()
    optimizer = torch.optim.Adam(model.parameters(), lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at_step) if scheduler is None else None
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=read_every, optimizer=optimizer)
    bank = speech_bank(2.0)
    for step in range(steps):
        if schedule is None:
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_at_step(step)
        x = crops(bank, step)
        y = model(x)
        loss = (y - x).abs().mean()
        monitor.on_batch(x, y, {"total": loss})
        optimizer.zero_grad()
        loss.backward()
        monitor.on_backward(model)
        optimizer.step()
        monitor.on_step()
        if schedule is not None:
            schedule.step()
    monitor.flush()
    return monitor


def test_lr_1e_7_under_a_slowly_rising_schedule_is_named_at_the_first_read_back():
    monitor = _run_with_schedule(1e-7, lambda step: 1.0 + step / 1000)
    t609 = [f for f in monitor.findings if f.id == "T609"]
    assert t609, [f.id for f in monitor.findings]
    assert t609[0].evidence["step"] == 9                     # the first read-back: steps 0-9
    assert t609[0].evidence["lr"] == pytest.approx(1.01e-7)  # rising, but toward 1e-7, not a rate in range
    assert t609[0].evidence["scheduled_peak_lr"] == pytest.approx(1e-7)
    assert t609[0].evidence["usual_min_lr"] == 1e-5 and t609[0].evidence["optimizer"] == "Adam"
    assert "99x below the usual minimum 1e-05 for Adam" in t609[0].message


def test_a_warm_up_toward_a_rate_in_range_is_not_named():
    # LambdaLR from 0 to 3e-4 over 1000 steps: after 12 steps the rate is 3.6e-6, below 1e-5,
    # but the schedule heads for 3e-4 (its initial_lr)
    monitor = _run_with_schedule(3e-4, lambda step: min(1.0, step / 1000))
    assert "T609" in monitor.checks_run and "T609" not in {f.id for f in monitor.findings}
    assert monitor.latest["lr"] == pytest.approx(3.6e-6)
    # the same warm-up written into the param group by hand: the rise, continued at its slope
    # (3e-7 per step), reaches 1e-5 in 33 steps
    monitor = _run_with_schedule(3e-4, lambda step: min(1.0, step / 1000), scheduler=False)
    assert "T609" in monitor.checks_run and "T609" not in {f.id for f in monitor.findings}


def test_sgd_is_judged_against_its_own_range():
    model = PassThroughCodec()
    optimizer = torch.optim.SGD(model.parameters(), 5e-5, momentum=0.9)   # 2x below SGD's 1e-4
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, optimizer=optimizer)
    _train(monitor, model, 6)
    t609 = [f for f in monitor.findings if f.id == "T609"]
    assert t609 and t609[0].evidence["family"] == "sgd" and t609[0].evidence["usual_min_lr"] == 1e-4


def test_a_rate_decayed_below_the_range_while_the_loss_is_flat_is_named():
    model, monitor = _monitor()
    _train(monitor, model, 20, loss_at=lambda step: 0.5)          # lr 3e-4
    for group in monitor.optimizer.param_groups:
        group["lr"] = 1e-7                                         # a schedule decayed to ~0
    _train(monitor, model, 30, loss_at=lambda step: 0.5, start=20)
    monitor.flush()
    t609 = [f for f in monitor.findings if f.id == "T609"]
    assert t609 and t609[0].evidence["peak_lr"] == pytest.approx(3e-4)
    assert t609[0].evidence["loss_improvement"] == 0.0
    assert "decayed to 1e-07 (peak 0.0003) and the loss plateaued" in t609[0].message
