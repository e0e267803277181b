"""The run's structure under `watch`, read from the run: which module is the model, the
discriminator and the quantizer, which optimizer steps which, which backward is the generator's
loss (its series equals what the script prints), the discriminator's health (T613) and the codes
the quantizer really emits (T607). The script is a user's own GAN codec trainer
(tests/scripts/gan_codec/train_gan.py) whose flags switch the backward form and plant faults."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch
from host_reads import HostReadCounter
from torch.nn import functional as F

from codecdoctor.checks.training import codebook_usage, discriminator_domination, discriminator_not_learning
from codecdoctor.core.findings import Severity
from codecdoctor.measure.training import CodebookLevel, EmittedLevel, RunState, StepWindow, TrainingMeasurements
from codecdoctor.monitor.monitor import Monitor
from codecdoctor.monitor.tap import ModelTap
from codecdoctor.watch import WatchRequest, watch

SCRIPT = Path(__file__).resolve().parent / "scripts" / "gan_codec" / "train_gan.py"
STRUCTURE_CHECKS = ("T604", "T607", "T609", "T610", "T612", "T613")


def _watch(*args: str, read_every: int = 5):
    """(result, the script's printed per-step records)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = watch(WatchRequest(script=str(SCRIPT), args=list(args), read_every=read_every, checks="warn"))
    printed = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return result, printed


@pytest.mark.parametrize("form, expected", [
    ([], "scalar backward"),
    (["--balancer"], "backward(gradient) into the output: effective loss of 3 terms + scalar backward"),
    (["--parts"], "scalar backward"),
    (["--autograd-backward"], "scalar backward"),
])
def test_the_watched_loss_is_the_generators_total_as_the_script_prints_it(form, expected):
    # the discriminator is backpropagated first every step: it must not be taken for the loss
    result, printed = _watch("--steps", "8", *form)
    measured = result.report.measurements
    series = dict((step, value) for step, value in measured["loss_series"])
    assert len(printed) == 8 and sorted(series) == list(range(8))
    for record in printed:
        assert series[record["step"]] == pytest.approx(record["gen_loss"], rel=1e-5)
    assert measured["structure"]["watched_loss"]["form"] == expected
    # the discriminator's own loss is a series of its own, equal to what the script prints
    disc = [c["loss"]["disc_loss"] for c in measured["curves"]]
    assert disc and all(math.isfinite(v) and 1.5 < v < 2.5 for v in disc)
    assert measured["latest"]["losses"]["disc_loss"] == pytest.approx(printed[-1]["disc_loss"], rel=1e-5)


def test_the_report_names_the_model_the_discriminator_the_quantizer_and_the_optimizers_roles():
    result, _ = _watch("--steps", "6", "--balancer")
    structure = result.report.measurements["structure"]
    assert structure["model"] == "Codec" and structure["discriminator"] == "Discriminator"
    assert structure["quantizer"] == "quantizer"
    roles = {o["role"]: o for o in structure["optimizers"]}
    assert set(roles) == {"generator", "discriminator"}
    assert roles["discriminator"]["parameters"] == 2113  # the Discriminator's three convs
    assert structure["backward_calls"] == {"generator": 12, "discriminator": 6, "other": 0}
    line = next(n for n in result.report.notes if n.startswith("structure: "))
    assert "model Codec" in line and "discriminator Discriminator" in line
    assert "quantizer quantizer (3 levels emitting codes)" in line
    assert "watched loss 'loss'" in line and "effective loss of 3 terms" in line


def test_codebook_blowup_is_named_at_every_level_from_the_codes_emitted_while_the_buffers_disagree():
    result, printed = _watch("--steps", "12", "--codebook-blowup")
    assert printed[-1]["distinct"] == [1, 1, 1]  # the script's own count agrees
    t607 = [f for f in result.report.findings if f.id == "T607"]
    assert [f.evidence["level"] for f in t607] == [0, 1, 2]
    for level, f in enumerate(t607):
        assert f.severity == Severity.ERROR and f.evidence["source"] == "emitted codes"
        assert f.evidence["module"] == f"quantizer.layers.{level}" and f.subject == f"level {level} (quantizer.layers.{level})"
        assert f.evidence["distinct_codes"] == 1 and f.evidence["frames"] == 4 * 4096 // 16
        assert f.evidence["codebook_size"] == 64
        assert f.evidence["buffer_perplexity"] > 2  # the EMA counts still read many codes in use


@pytest.mark.parametrize("how", ["--silent-quantizer", "--encode-quantizer"])
def test_codes_picked_inside_a_forward_that_returns_none_are_measured(how):
    # by argmin over distances, or by the level's own encode() call
    result, printed = _watch("--steps", "6", how, "--codebook-blowup")
    assert printed[-1]["distinct"] == [1, 1, 1]
    t607 = [f for f in result.report.findings if f.id == "T607"]
    assert [f.evidence["module"] for f in t607] == [f"quantizer.layers.{i}" for i in range(3)]
    assert all(f.evidence["distinct_codes"] == 1 and f.evidence["frames"] == 1024 for f in t607)
    healthy, printed = _watch("--steps", "6", how)
    codes = healthy.report.measurements["curves"][0]["codes"]
    assert [c["module"] for c in codes] == [f"quantizer.layers.{i}" for i in range(3)]
    assert all(c["distinct"] > 2 for c in codes)
    assert not [f for f in healthy.report.findings if f.id == "T607"]
    assert torch.Tensor.argmin is torch._C.TensorBase.argmin  # unwrapped after each capture


def test_a_discriminator_zeroed_between_its_backward_and_its_step_gives_T613():
    result, _ = _watch("--steps", "12", "--disc-zero-grad")
    errors = [f for f in result.report.findings if f.severity >= Severity.ERROR]
    assert [f.id for f in errors] == ["T613"]
    t613 = errors[0]
    assert t613.evidence["disc_grad_norm_max"] == 0 and t613.evidence["disc_steps"] == 5
    assert t613.evidence["disc_param_change"] == 0
    assert t613.subject.startswith("discriminator Discriminator, steps ")
    assert t613.evidence["discriminator"] == "Discriminator"


def test_a_healthy_20_step_gan_run_gives_nothing_above_info():
    result, _ = _watch("--steps", "20", read_every=25)
    loud = [f for f in result.report.findings if f.severity > Severity.INFO]
    assert not loud, [(f.id, f.message) for f in loud]
    curves = result.report.measurements["curves"]
    assert curves[-1]["disc_grad_norm"] > 0 and curves[-1]["disc_param_change"] > 0
    assert all(lv["distinct"] > 2 for c in curves for lv in c["codes"])
    assert set(STRUCTURE_CHECKS) - {"T604", "T612"} <= set(result.report.checks_run)


def _window(disc_loss, adv, grads=None, changes=None, steps=range(100, 110)):
    steps = list(steps)
    nan = [math.nan] * len(steps)
    columns = {"disc_grad_norm": grads if grads is not None else nan,
               "disc_param_change": changes if changes is not None else nan}
    return StepWindow(steps=steps, columns=columns, losses={"disc_loss": [disc_loss] * len(steps), "adv": [adv] * len(steps)},
                      in_samples=[1] * len(steps), out_samples=[1] * len(steps))


def test_T613_names_a_hinge_loss_stuck_at_the_margin_while_the_adversarial_term_collapses():
    state = RunState()
    state.first_loss_median = {"disc_loss": 2.0, "adv": 1.0}
    stuck = discriminator_not_learning(TrainingMeasurements(state=state, output_bound=1.0, warmup_steps=0,
                                                            window=_window(2.01, 0.05)))
    assert [f.id for f in stuck] == ["T613"] and stuck[0].evidence["collapsed_terms"] == ["adv"]
    # a discriminator that learns moves below the margin; an adversarial term that holds is no collapse
    assert discriminator_not_learning(TrainingMeasurements(state=state, output_bound=1.0, warmup_steps=0,
                                                           window=_window(1.2, 0.05))) == []
    assert discriminator_not_learning(TrainingMeasurements(state=state, output_bound=1.0, warmup_steps=0,
                                                           window=_window(2.0, 0.5))) == []


def test_T613_names_a_step_that_left_the_discriminators_parameters_unchanged_despite_gradients():
    state = RunState()
    changes = [0.0] + [math.nan] * 9  # measured once per window
    m = TrainingMeasurements(state=state, output_bound=1.0, warmup_steps=0, discriminator="MPD",
                             window=_window(1.2, 0.5, grads=[0.3] * 10, changes=changes))
    found = discriminator_not_learning(m)
    assert [f.id for f in found] == ["T613"] and found[0].subject == "discriminator MPD, steps 100-109"
    assert "did not change across its optimizer step at step 100" in found[0].message
    m.window = _window(1.2, 0.5, grads=[0.3] * 10, changes=[2e-4] + [math.nan] * 9)
    assert discriminator_not_learning(m) == []


def test_T607_takes_the_emitted_codes_first_and_the_ema_buffers_second():
    buffers = [CodebookLevel(level=0, name="rvq.layers.0._codebook", codebook_size=1024, perplexity=1.2,
                             dead_codes=1000, initted=True)]
    healthy = [EmittedLevel(level=0, name="rvq.layers.0", step=50, codebook_size=1024, frames=600, distinct=310,
                            perplexity=180.0)]
    m = TrainingMeasurements(state=RunState(), output_bound=1.0, warmup_steps=0, levels=buffers, emitted=healthy)
    (stale,) = codebook_usage(m)  # the buffers read a collapse the codes contradict
    assert stale.severity == Severity.INFO and stale.evidence["emitted_distinct_codes"] == 310
    m.emitted = [EmittedLevel(level=0, name="rvq.layers.0", step=50, codebook_size=1024, frames=99, distinct=1,
                              perplexity=1.0)]
    assert [f.severity for f in codebook_usage(m)] == [Severity.WARNING]  # 99 frames: the buffers judge
    m.emitted[0].frames = 100
    (collapsed,) = codebook_usage(m)
    assert collapsed.severity == Severity.ERROR and collapsed.evidence["source"] == "emitted codes"
    assert collapsed.subject == "level 0 (rvq.layers.0)" and "its EMA buffers agree (perplexity 1.2)" in collapsed.message


def test_T610_reads_the_discriminator_loss_watch_records_and_names_the_discriminator():
    m = TrainingMeasurements(state=RunState(), output_bound=1.0, warmup_steps=50, discriminator="MPD",
                             window=_window(0.01, 3.0))
    found = discriminator_domination(m)
    assert [f.id for f in found] == ["T610"] and "discriminator (MPD) loss 'disc_loss' median 0.01" in found[0].message
    m.window = _window(1.1, 1.0)
    assert discriminator_domination(m) == []


def _gan_steps(gan, steps: int, tap: ModelTap | None) -> list[int]:
    """Host reads per step of a GAN loop (the script's own included), with or without the tap."""
    torch.manual_seed(0)
    model, disc = gan.Codec(), gan.Discriminator()
    # SGD: Adam's CPU step reads its step counter on the host, which is the optimizer's, not ours
    opt_g, opt_d = torch.optim.SGD(model.parameters(), 1e-3), torch.optim.SGD(disc.parameters(), 1e-3)
    g = torch.Generator().manual_seed(1)
    per_step = []
    for step in range(steps):
        x = gan.batch(step, 4, 4096, g)
        with HostReadCounter() as reads:
            y, commit = model(x)
            d_loss = F.relu(1 - disc(x)[0]).mean() + F.relu(1 + disc(y.detach())[0]).mean()
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            loss = F.l1_loss(y, x) + F.relu(1 - disc(y)[0]).mean() + commit
            opt_g.zero_grad()
            loss.backward()
            opt_g.step()
        per_step.append(reads.total)
    return per_step


def test_structure_and_codes_add_no_host_read_between_read_backs():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_gan", SCRIPT)
    gan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gan)
    own = _gan_steps(gan, 12, None)  # the quantizer's one_hot checks its codes on the host
    tap = ModelTap(lambda m, b: Monitor(m, 16000, mode="warn", output_bound=b, read_every=5)).install()
    try:
        watched = _gan_steps(gan, 12, tap)
    finally:
        tap.remove()
    report = tap.finish("test")
    # step 0 builds the monitor (its alarm's host view: one .numpy()); steps 5 and 10 start with the
    # scheduled read-back; the codes captured at steps 1, 5 and 10 and the discriminator's
    # statistics wait for it
    assert watched[0] - own[0] == 1
    assert [s for s in range(1, 12) if watched[s] != own[s]] == [5, 10]
    assert report.measurements["structure"]["discriminator"] == "Discriminator"
    assert [c["codes"][0]["step"] for c in report.measurements["curves"]] == [1, 5, 10]


class _CheckpointedCodec(torch.nn.Module):
    """A codec whose encoder runs under reentrant activation checkpointing: its backward calls
    torch.autograd.backward again from inside the outer backward."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Conv1d(1, 8, 16, stride=16)
        self.decoder = torch.nn.ConvTranspose1d(8, 1, 16, stride=16)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        return torch.tanh(self.decoder(checkpoint(self.encoder, x, use_reentrant=True)))


def test_a_backward_nested_in_the_generators_backward_is_part_of_it_not_a_second_loss():
    torch.manual_seed(0)
    model = _CheckpointedCodec()
    opt = torch.optim.SGD(model.parameters(), 1e-2)
    tap = ModelTap(lambda m, b: Monitor(m, 16000, mode="warn", output_bound=b, read_every=4)).install()
    printed = []
    try:
        for _ in range(6):
            x = 0.5 * torch.randn(2, 1, 4096).clamp(-1, 1).requires_grad_()
            y = model(x)
            loss = F.l1_loss(y, x.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            printed.append(loss.item())
    finally:
        tap.remove()
    report = tap.finish("test")
    assert [v for _, v in report.measurements["loss_series"]] == pytest.approx(printed, rel=1e-6)
    assert report.measurements["structure"]["backward_calls"] == {"generator": 6, "discriminator": 0, "other": 0}


def test_a_trainable_module_fed_the_output_but_stepped_by_no_optimizer_is_only_a_candidate():
    torch.manual_seed(0)
    model = _CheckpointedCodec()
    critic = torch.nn.Conv1d(1, 1, 9)  # a learned loss network that this loop never updates
    opt = torch.optim.SGD(model.parameters(), 1e-2)
    tap = ModelTap(lambda m, b: Monitor(m, 16000, mode="warn", output_bound=b, read_every=4)).install()
    try:
        for _ in range(3):
            x = 0.5 * torch.randn(2, 1, 4096).clamp(-1, 1).requires_grad_()  # reentrant checkpointing needs it
            y = model(x)
            loss = F.l1_loss(y, x.detach()) + critic(y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        tap.remove()
    structure = tap.finish("test").measurements["structure"]
    assert structure["discriminator"] is None and structure["discriminator_candidate"] == "Conv1d"
    assert structure["discriminator_loss"] is None
    assert [o["role"] for o in structure["optimizers"]] == ["generator"]
