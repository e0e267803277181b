"""Monitor mechanics: read-back schedule, no host reads between read-backs, strict vs warn, dedupe,
event log and end-of-run report."""
from __future__ import annotations

import json
import math

import pytest
import torch
from host_reads import HostReadCounter
from monitor_loops import crops, host_reads_per_step, run_codec, speech_bank, tiny_codec
from torch import nn

import codecdoctor


class Identity(nn.Module):
    """A trainable near-identity 'codec': a 1x1 conv, optionally ending in tanh."""

    def __init__(self, tanh: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
        self.tanh = nn.Tanh() if tanh else nn.Identity()

    def forward(self, x):
        return self.tanh(self.conv(x))


def _step(monitor, model, opt, x, losses_fn=None):
    y = model(x)
    losses = losses_fn(x, y) if losses_fn else {"l1": (y - x).abs().mean()}
    monitor.on_batch(x, y, losses)
    opt.zero_grad()
    sum(losses.values()).backward()
    monitor.on_backward(model)
    opt.step()
    monitor.on_step()


def test_hooks_do_no_host_read_between_read_backs():
    model = Identity()
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5)
    per_step = host_reads_per_step(mon, model, speech_bank(2.0), 12)
    # steps 5 and 10 start with the scheduled read-back of the previous window; all others read nothing
    assert [s for s, n in enumerate(per_step) if n] == [5, 10]
    assert all(per_step[s] == 0 for s in range(12) if s not in (5, 10))
    assert mon.read_backs == 2
    mon.close()


def test_read_back_is_one_transfer_including_codebooks():
    model, loss_fn = tiny_codec()
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=4)
    bank = speech_bank(2.0)
    run_codec(mon, model, loss_fn, 4, lambda s: crops(bank, s))
    with HostReadCounter() as reads:
        mon.flush()
    # one .cpu() and one .numpy() of one packed tensor (on the CPU .cpu() is a no-op, still counted)
    assert reads.counts["Tensor.cpu"] == 1 and reads.counts["Tensor.numpy"] == 1
    assert reads.counts["aten._local_scalar_dense"] == 0
    assert len(mon.latest["perplexity"]) == 2  # both RVQ levels of the tiny codec
    mon.close()


def test_nonfinite_input_is_reported_with_step_and_item_and_strict_stops():
    model = Identity()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    mon = codecdoctor.Monitor(model, 16000, mode="strict", read_every=50, optimizer=opt)
    bank = speech_bank(2.0)
    with pytest.raises(codecdoctor.CheckFailed) as failure:
        for step in range(10):
            x = crops(bank, step)
            if step == 6:
                x[2, 0, 100] = float("nan")
            _step(mon, model, opt, x)
    ids = {f.id for f in failure.value.findings}
    assert "T601" in ids
    t601 = next(f for f in failure.value.findings if f.id == "T601")
    assert t601.evidence["step"] == 6 and t601.evidence["item"] == 2
    # the alarm made the monitor read back at step 6 itself, 44 steps before the schedule
    assert mon.read_backs == 1
    mon.close()


def test_warn_mode_never_raises_and_dedupes_a_persistent_fault():
    model = Identity(tanh=True)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, output_bound=1.0, optimizer=opt)
    bank = speech_bank(2.0, peak=1.2)
    for step in range(20):
        _step(mon, model, opt, crops(bank, step))
    report = mon.close()
    t601 = [f for f in report.findings if f.id == "T601"]
    assert len(t601) == 1
    assert t601[0].evidence["repeats"] == 3  # windows 2-4 repeat the first finding
    assert report.exit_code("warning") == 1


def test_event_log_and_report(tmp_path):
    model, loss_fn = tiny_codec()
    log = tmp_path / "events.jsonl"
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, event_log=log)
    bank = speech_bank(2.0)
    run_codec(mon, model, loss_fn, 10, lambda s: crops(bank, s))
    ref = torch.stack([crops(bank, 100 + i)[0] for i in range(3)])
    with torch.no_grad():
        est = model(ref).audio
    mon.on_validation(ref, est)
    report = mon.close(html=tmp_path / "m.html", json=tmp_path / "m.json")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "close"
    assert kinds.count("readback") == 2 and kinds.count("validation") == 1
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["command"] == "monitor"
    curves = data["measurements"]["curves"]
    assert [c["step"] for c in curves] == [4, 9]
    assert {"total", "mel", "l1", "commit"} <= set(curves[0]["loss"])  # every term the loss returned
    assert len(curves[0]["perplexity"]) == 2
    html = (tmp_path / "m.html").read_text()
    assert html.count('<svg class="chart"') >= 2 and "<strong>Training curves</strong>" in html
    assert report.measurements["validation"][0]["pairs"] == 3


def test_latest_holds_the_live_display_values():
    model, loss_fn = tiny_codec()
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=3)
    bank = speech_bank(2.0)
    run_codec(mon, model, loss_fn, 6, lambda s: crops(bank, s))
    # the window of steps 3-5 is read back at step 6 (or on flush): latest trails by one window
    assert mon.latest["step"] == 2
    mon.flush()
    latest = mon.latest
    assert latest["step"] == 5
    for key in ("losses", "input_peak", "output_peak", "rms_ratio_db", "grad_norm", "perplexity", "scale",
                "newest_finding", "findings", "lr"):
        assert key in latest
    assert 0.3 < latest["input_peak"] <= 0.5 + 1e-6
    assert latest["grad_norm"] > 0 and math.isfinite(latest["grad_norm"])
    assert latest["lr"] == pytest.approx(1e-3)
    mon.close()


def test_output_bound_is_read_from_the_codec_config():
    tanh_model, _ = tiny_codec("tanh")
    free_model, _ = tiny_codec("none")
    assert codecdoctor.Monitor(tanh_model, 16000).output_bound == 1.0
    assert codecdoctor.Monitor(free_model, 16000).output_bound is None
    assert codecdoctor.Monitor(Identity(), 16000).output_bound is None
    assert codecdoctor.Monitor(Identity(), 16000, output_bound="tanh").output_bound == 1.0


def test_training_checks_are_registered_with_docs():
    from codecdoctor.core.registry import all_checks

    ids = [c.id for c in all_checks("training")]
    assert ids == sorted(ids) and [f"T6{n:02d}" for n in range(1, 15)] == ids[:14]


def test_host_read_counter_sees_the_reads_it_must_rule_out():
    t = torch.ones(3)
    with HostReadCounter() as reads:
        t.sum().item()
        bool(t.sum() > 0)
        float(t[0])
        t.tolist()
    assert reads.counts["aten._local_scalar_dense"] == 3  # item, bool, float
    assert reads.counts["Tensor.tolist"] == 1 and reads.counts["Tensor.item"] == 1
    with HostReadCounter() as none:
        (t * 2).sum()
    assert none.total == 0


def test_strict_nonfinite_policy_reports_drift_but_stops_only_on_nan():
    """`stop_on="nonfinite"` (what `codecdoctor train` uses by default): an output beyond the bound
    is reported (T602) without stopping; a NaN loss stops the run (T604)."""
    model = Identity()
    opt = torch.optim.SGD(model.parameters(), 0.0)
    mon = codecdoctor.Monitor(model, 16000, mode="strict", read_every=2, optimizer=opt, output_bound=1.0,
                              stop_on="nonfinite")
    bank = speech_bank(2.0)
    for step in range(4):
        x = crops(bank, step) * 3.0  # output beyond the declared bound of 1.0: drift, not a lost run
        _step(mon, model, opt, x)
    mon.flush()
    assert "T602" in {f.id for f in mon.findings}
    with pytest.raises(codecdoctor.CheckFailed) as stopped:
        _step(mon, model, opt, crops(bank, 9), lambda x, y: {"l1": (y - x).abs().mean() * float("nan")})
        mon.flush()
    assert "T604" in {f.id for f in stopped.value.findings}


def test_an_early_bad_validation_is_marked_resolved_by_a_later_healthy_one():
    model = Identity()
    mon = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5)
    ref = crops(speech_bank(2.0), 0)
    mon.on_validation(ref, -0.5 * ref, step=40)  # SNR -3.5 dB: an error at this validation
    t608 = [f for f in mon.findings if f.id == "T608"]
    assert t608 and t608[0].severity == codecdoctor.Severity.ERROR
    mon.on_validation(ref, 0.99 * ref, step=80)  # healthy now
    assert t608[0].severity == codecdoctor.Severity.INFO
    assert "resolved" in t608[0].message and t608[0].evidence["resolved_at_step"] == 80
    report = mon.close()
    assert report.worst() is None or report.worst() < codecdoctor.Severity.ERROR
