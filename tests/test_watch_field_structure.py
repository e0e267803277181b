"""The run's structure under `watch` on three field trainers (tests/scripts/field/: EnCodec-style
hydra + loss balancer + k-means, DAC-style argbind with the discriminator stepped first,
HiFi-GAN-style argparse + DataLoader): the watched loss is the generator's loss the script prints,
the model, discriminator and quantizer are named, the planted codebook blow-up is named at every
level from the codes emitted and ranked first, a discriminator zero_grad between its backward and its
step gives T613, lr 1e-7 under a rising schedule gives T609, a NaN decoder weight T602 naming the
module, data beyond the decoder's tanh T601 and R307, and a healthy 20-step smoke run gives nothing
above info."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from codecdoctor.core.findings import Severity
from codecdoctor.watch import WatchRequest, watch

FIELD = Path(__file__).resolve().parent / "scripts" / "field"
# checks that read the run's structure: the watched loss (T604, T609), the discriminator (T610,
# T613), the codes (T607), the loss balance (T612)
STRUCTURE_CHECKS = ("T604", "T607", "T609", "T610", "T612", "T613")
TRAINERS = {
    "encodec": ("train_encodec_style.py", "EncodecModel", "MultiScaleSTFTDiscriminator"),
    "dac": ("train_dac_style.py", "DAC", "MultiScaleSTFTDiscriminator"),
    "hifigan": ("train_hifigan_style.py", "Generator", "MultiPeriodDiscriminator"),
}


def _args(trainer: str, steps: int, fault: str, tmp_path: Path) -> list[str]:
    if trainer == "encodec":
        return [f"steps={steps}", f"fault={fault}", f"hydra.run.dir={tmp_path}"]
    if trainer == "dac":
        return ["--steps", str(steps), "--fault", fault, "--save_path", str(tmp_path / "dac.pt")]
    return ["--steps", str(steps), "--fault", fault, "--num_workers", "0",
            "--checkpoint_path", str(tmp_path / "hifigan.pt")]


def _watch(trainer: str, steps: int, fault: str, tmp_path: Path):
    """(result, {step: the gen_loss the script printed})."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = watch(WatchRequest(script=str(FIELD / TRAINERS[trainer][0]), args=_args(trainer, steps, fault, tmp_path),
                                    read_every=5, checks="warn"))
    printed = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^step (\d+) gen_loss (\S+)", out.getvalue(), re.M)}
    return result, printed


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_healthy_field_run_watches_the_printed_generator_loss_names_its_parts_and_stays_quiet(trainer, tmp_path):
    result, printed = _watch(trainer, 20, "none", tmp_path)
    measured = result.report.measurements
    assert result.exit_code == 0 and sorted(printed) == list(range(20))
    series = dict((step, value) for step, value in measured["loss_series"])
    for step, value in printed.items():  # printed with 6 decimals
        assert series[step] == pytest.approx(value, rel=1e-5, abs=1e-6)
    structure = measured["structure"]
    _, model, discriminator = TRAINERS[trainer]
    assert (structure["model"], structure["discriminator"], structure["quantizer"]) == (model, discriminator, "quantizer")
    assert structure["quantizer_levels"] == [f"quantizer.layers.{i}" for i in range(4)]
    assert sorted(o["role"] for o in structure["optimizers"]) == ["discriminator", "generator"]
    assert structure["backward_calls"]["discriminator"] == 20
    if trainer == "encodec":  # the balancer's output.backward(gradient) after the commitment's own backward
        assert structure["watched_loss"]["forms"] == {"scalar backward": 20,
                                                      "backward(gradient) into the output: effective loss of 4 terms": 20}
        # the balancer's terms are recorded by its own names too (T604, T610, T613 read them)
        assert {"loss", "disc_loss", "wave", "stft", "adv", "feat"} == set(measured["latest"]["losses"])
    # a smoke run with no fault in it: nothing above info from any check (an SNR near 0 dB this
    # early is "not learned yet")
    loud = [f for f in result.report.findings if f.severity > Severity.INFO]
    assert not loud, [(f.id, f.message) for f in loud]
    assert {"T607", "T610", "T613"} <= set(result.report.checks_run)
    assert any(n.startswith(f"structure: model {model} ") for n in result.report.notes)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_field_codebook_blowup_is_named_at_every_level_from_the_codes_emitted(trainer, tmp_path):
    result, _ = _watch(trainer, 8, "codebook_blowup", tmp_path)
    t607 = [f for f in result.report.findings if f.id == "T607" and f.severity >= Severity.ERROR]
    assert [f.evidence["module"] for f in t607] == [f"quantizer.layers.{i}" for i in range(4)]
    for f in t607:
        assert f.evidence["distinct_codes"] == 1 and f.evidence["codebook_size"] == 512
        assert f.evidence["buffer_perplexity"] > 2  # the EMA counts of the k-means init still read many codes
    # the root cause is listed first, and the validation findings it explains say so
    shown = result.report.sorted_findings()
    assert shown[0].id == "T607" and "quantizer.layers.0" in shown[0].subject
    explained = [f for f in result.report.findings if f.id in ("T608", "R314") and f.severity >= Severity.WARNING]
    assert explained and all("Explained by T607" in f.message for f in explained)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_field_discriminator_zeroed_before_its_step_gives_T613(trainer, tmp_path):
    result, _ = _watch(trainer, 8, "disc_zero_grad_after_step", tmp_path)
    t613 = [f for f in result.report.findings if f.id == "T613"]
    assert len(t613) == 1 and t613[0].severity == Severity.ERROR
    assert t613[0].evidence["disc_grad_norm_max"] == 0 and t613[0].evidence["disc_param_change"] == 0


def test_a_field_learning_rate_of_1e_7_under_a_rising_schedule_is_T609_first(tmp_path):
    result, _ = _watch("dac", 12, "lr_tiny", tmp_path)
    t609 = [f for f in result.report.findings if f.id == "T609"]
    assert t609 and t609[0].severity >= Severity.WARNING
    assert t609[0].evidence["peak_lr"] == pytest.approx(1e-7, rel=0.1) and t609[0].evidence["optimizer"] == "AdamW"
    assert result.report.sorted_findings()[0].id == "T609"


def test_a_field_nan_decoder_weight_is_T602_naming_the_decoder_module(tmp_path):
    result, _ = _watch("hifigan", 6, "nan_decoder_weight", tmp_path)
    t602 = [f for f in result.report.findings if f.id == "T602"]
    assert t602 and t602[0].severity >= Severity.ERROR
    assert "decoder.net.8" in t602[0].message and "non-finite" in t602[0].message


def test_field_data_beyond_the_decoders_tanh_is_T601_and_R307(tmp_path):
    result, _ = _watch("encodec", 12, "data_beyond_tanh", tmp_path)
    t601 = [f for f in result.report.findings if f.id == "T601"]
    assert t601 and t601[0].severity >= Severity.WARNING
    assert "beyond" in t601[0].message and "max |x| = 1.3000" in t601[0].message
    r307 = [f for f in result.report.findings if f.id == "R307"]
    assert r307 and "exceed the output bound" in r307[0].message


@pytest.mark.slow
def test_a_healthy_field_run_trained_long_enough_to_learn_gives_no_false_alarm(tmp_path):
    result, printed = _watch("dac", 120, "none", tmp_path)
    assert result.exit_code == 0 and len(printed) == 120
    history = result.report.measurements["history"]
    assert history[-1]["val_snr_db"] > 3.0  # it learned: the SNR rose from about 0 dB
    loud = [f for f in result.report.findings if f.severity > Severity.INFO]
    assert not loud, [(f.id, f.message) for f in loud]
