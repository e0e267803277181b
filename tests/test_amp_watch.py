"""`watch` on a user's own mixed-precision script (tests/scripts/amp_codec/train_amp.py:
torch.autocast + torch.amp.GradScaler on the CPU, no import of codecdoctor): no false alarm on a
healthy float16 or bfloat16 run, and each planted AMP fault named by its ID."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from codecdoctor.measure.stft_risk import FP16_MAX
from codecdoctor.watch import WatchRequest, watch

SCRIPT = Path(__file__).resolve().parent / "scripts" / "amp_codec" / "train_amp.py"
AMP_IDS = ("S501", "S502", "S503", "S504", "T604", "T606", "T614")


def _run(*args: str, checks: str = "nonfinite"):
    return watch(WatchRequest(script=str(SCRIPT), args=list(args), read_every=5, checks=checks))


def _found(report, check_id):
    return [f for f in report.findings if f.id == check_id]


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_healthy_amp_script_at_a_loud_peak_gives_no_amp_finding(amp):
    # peak 0.95: loud enough that the same mel loss left under fp16 autocast overflows (next test)
    result = _run("--amp", amp, "--peak", "0.95", "--steps", "20", "--val-every", "10")
    assert result.ending == "exit" and result.exit_code == 0
    loud = [f for f in result.report.findings if f.id in AMP_IDS and f.severity.label != "info"]
    assert not loud, loud
    steps = result.report.measurements["optimizer_steps"]
    if amp == "fp16":
        assert "T606" in result.report.checks_run
        # the scaler's calibration skips (fp16 gradients times 65536 overflow) are steps the
        # optimizer never took: each one halved the scale the monitor read back
        halvings = math.log2(65536.0 / result.report.measurements["curves"][-1]["scale"])
        assert steps == 20 - halvings and halvings <= 3
    else:
        assert steps == 20


def test_fp16_stft_loss_that_overflows_is_S501_and_S503_measured_on_the_batch():
    result = _run("--fault", "stft-overflow", "--peak", "0.95", "--steps", "10")
    assert result.ending == "check"  # the non-finite loss stopped the script at its first step
    s501, s503 = _found(result.report, "S501")[0], _found(result.report, "S503")[0]
    assert s501.severity.label == "error" and s501.message.startswith("measured under real float16 autocast")
    assert s501.evidence["overflowed"] == 1 and s501.evidence["measured_max_power"] > FP16_MAX
    assert s501.evidence["step"] == 0 and s501.subject.startswith("step 0: n_fft=")
    assert s503.evidence["measured"] == 1 and s503.evidence["scales_nonfinite"] >= 1
    assert _found(result.report, "T604")  # the loss itself, with every module output finite


def test_half_precision_log_of_1e_8_is_S502_measured_from_the_loss_graph():
    result = _run("--fault", "half-log", "--steps", "10")
    assert result.ending == "check"
    s502 = _found(result.report, "S502")[0]
    assert s502.severity.label == "error" and s502.message.startswith("measured")
    assert s502.subject == "step 0: LogBackward0" and s502.evidence["silent_bins"] > 0
    assert not any(f.id == "S501" and f.severity.label != "info" for f in result.report.findings)  # no overflow


def test_optimizer_stepped_outside_the_scaler_is_T614_at_the_first_bypassed_step():
    result = _run("--fault", "bypass", "--fault-step", "6", "--steps", "12")
    t614 = _found(result.report, "T614")
    assert len(t614) == 1 and t614[0].severity.label == "error"
    assert t614[0].evidence["first_step"] == 6 and t614[0].evidence["scaler_steps"] == 6
    assert t614[0].subject == "step 6" and "Adam.step()" in t614[0].message
    assert result.ending == "exit"  # reported; the default policy stops only on non-finite values


def test_nan_weights_under_fp16_give_T606_collapse_beside_T602():
    result = _run("--fault", "nan-weights", "--fault-step", "3", "--steps", "30", checks="warn")
    assert result.ending == "exit"
    collapse = [f for f in _found(result.report, "T606") if f.severity.label == "error"]
    assert collapse and collapse[0].evidence["scale"] < 1.0
    assert _found(result.report, "T602")[0].evidence["module_params_nonfinite"] is True
