"""`codecdoctor watch`: a user's own training script (tests/scripts/foreign_codec/train_codec.py:
argparse, its own loop and validation, no import of codecdoctor) run unmodified under the live
checks. Faults are switched on by the script's own flags; each test asserts the check ID and the
step / module it names. The check tests run the script in this process through the library call;
the CLI tests run `codecdoctor watch` as a user would (output, exit code, signals)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import codecdoctor
from codecdoctor.core.errors import InputError
from codecdoctor.core.findings import Severity
from codecdoctor.watch import WatchRequest, watch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(codecdoctor.__file__).resolve().parent
SCRIPT_DIR = Path(__file__).resolve().parent / "scripts" / "foreign_codec"
SCRIPT = SCRIPT_DIR / "train_codec.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(*args: str, read_every: int = 5):
    return watch(WatchRequest(script=str(SCRIPT), args=list(args), read_every=read_every))


def _by_id(report):
    out: dict[str, list] = {}
    for f in report.findings:
        out.setdefault(f.id, []).append(f)
    return out


def test_data_peaking_at_1_0129_into_a_tanh_decoder_gives_T601_with_the_ceiling():
    result = _run("--steps", "20", "--peak", "1.0129", "--val-every", "0")
    found = _by_id(result.report)
    assert result.exit_code == 0 and result.ending == "exit"
    assert result.report.measurements["output_bound"] == 1.0  # inferred from the final nn.Tanh
    assert result.report.measurements["output_bound_source"] == "final Tanh"
    t601 = found["T601"][0]
    assert t601.severity == Severity.WARNING
    assert t601.evidence["max_abs"] == pytest.approx(1.0129, abs=1e-4)
    ceiling = t601.evidence["snr_ceiling_db"]
    assert 30 < ceiling < 120 and f"{ceiling:.1f} dB" in t601.message
    assert t601.subject.startswith("step ")


def test_nan_planted_in_a_decoder_weight_stops_the_script_naming_decoder_2_and_the_step():
    nan_step = 7
    result = _run("--steps", "40", "--nan-step", str(nan_step))
    assert result.ending == "check" and result.exit_code == 1
    t602 = _by_id(result.report)["T602"][0]
    assert t602.severity >= Severity.ERROR
    assert t602.evidence["step"] == nan_step and t602.subject == f"step {nan_step}"
    assert t602.evidence["module"] == "decoder.2" and t602.evidence["module_params_nonfinite"] is True
    # stopped at once: no training step after the faulty one was monitored
    assert result.report.measurements["training_forwards"] == nan_step + 1
    # the advice is about NaN/Inf, not about the output's range
    assert "NaN" in t602.fix and "NaN" in t602.cause and "tanh" not in t602.fix


def test_an_output_beyond_its_declared_bound_gives_T602_with_range_advice():
    """The gain codec starts as the identity (and its loss is 0, so it stays one): the data's peaks
    (up to 0.9) come out as they went in, beyond a declared bound of 0.25."""
    result = watch(WatchRequest(script=str(SCRIPT), args=["--arch", "gain", "--steps", "6", "--peak", "0.9",
                                                          "--val-every", "0"], output_bound=0.25, read_every=3,
                                checks="warn"))
    t602 = _by_id(result.report)["T602"][0]
    assert "beyond the declared output bound ±0.25" in t602.message
    assert t602.evidence["output_peak"] == pytest.approx(t602.evidence["input_peak"], rel=1e-3)
    assert 0.5 < t602.evidence["output_peak"] <= 0.9 + 1e-4
    assert "tanh" in t602.fix and "NaN" not in t602.fix


def test_input_normalised_per_example_against_a_raw_target_gives_T603_and_T608_with_R302():
    result = _run("--steps", "80", "--arch", "gain", "--normalize", "--lr", "0.02", "--val-every", "40")
    found = _by_id(result.report)
    assert "T603" in found and found["T603"][0].evidence["rms_ratio_db"] < -20
    t608 = found["T608"][0]
    assert "R302" in t608.evidence["diagnosis"]
    r302 = found["R302"][0]
    assert r302.evidence["gain"] > 3  # the output sits >10 dB below the normalised input it was fed
    assert r302.evidence["snr_after_gain_db"] > t608.evidence["snr_db"] + 20
    assert r302.subject.startswith("validation pair")


def test_a_plain_run_has_no_range_nan_or_drift_finding():
    result = _run("--steps", "40", "--val-every", "20")
    bad = [f for f in result.report.findings if f.id in ("T601", "T602", "T603", "T604", "T605")
           and f.severity >= Severity.WARNING]
    assert not bad, [(f.id, f.message) for f in bad]
    assert {"T601", "T602", "T603", "T604", "T605"} <= set(result.report.checks_run)
    m = result.report.measurements
    assert m["training_forwards"] == 40 and m["optimizer_steps"] == 40 and len(m["validation"]) == 2
    assert m["final_val_snr_db"] > 3  # the script's own validation, judged by T608


@pytest.mark.parametrize("name, code, ending", [("INT", 130, "sigint"), ("TERM", 143, "sigterm")])
def test_ctrl_c_and_sigterm_mid_run_still_give_the_report_of_the_steps_before(name, code, ending):
    result = _run("--steps", "40", "--signal-at", "12", "--signal", name, "--val-every", "0")
    assert result.exit_code == code and result.ending == ending
    m = result.report.measurements
    assert m["training_forwards"] == 12 and m["steps"] == 12 and m["read_backs"] >= 3
    assert any(ending.replace("sig", "") in note.lower() or "interrupted" in note for note in result.report.notes)


def test_an_exception_in_the_script_prints_its_traceback_and_keeps_the_report(capfd):
    result = _run("--steps", "20", "--raise-at", "8", "--val-every", "0")
    err = capfd.readouterr().err
    assert result.exit_code == 1 and result.ending == "exception"
    assert "RuntimeError: data loader failed at step 8" in err
    # the first frame printed is the script's, and no frame is codecdoctor's own (its package folder:
    # the word alone is also in the path of a clone that lives in a folder named codecdoctor)
    first_frame = err.split("Traceback (most recent call last):", 1)[1].lstrip("\n").splitlines()[0]
    assert first_frame.startswith(f'  File "{SCRIPT}", line'), first_frame
    assert f"{PACKAGE_DIR}{os.sep}" not in err
    assert result.report.measurements["training_forwards"] == 8


def test_the_script_keeps_its_argv_and_sys_path_0_and_a_module_runs_as_python_m_runs_it(tmp_path, monkeypatch, capsys):
    probe = "import sys\nprint('argv', sys.argv)\nprint('path0', sys.path[0])\nprint('name', __name__)\nsys.exit(4)\n"
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "probe.py").write_text(probe)
    result = watch(WatchRequest(script=str(scripts / "probe.py"), args=["--epochs", "3"]))
    out = capsys.readouterr().out
    assert result.exit_code == 4 and result.ending == "exit"
    assert f"argv {[str(scripts / 'probe.py'), '--epochs', '3']}" in out
    assert f"path0 {scripts.resolve()}" in out and "name __main__" in out
    assert sys.argv[0] != str(scripts / "probe.py")  # restored afterwards
    assert any("nothing was monitored" in note for note in result.report.notes)  # no model in it
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(probe)
    monkeypatch.chdir(tmp_path)
    result = watch(WatchRequest(module="mypkg.train", args=["-x"]))
    out = capsys.readouterr().out
    assert result.exit_code == 4
    assert f"argv {[str(package / 'train.py'), '-x']}" in out and f"path0 {tmp_path}" in out


def test_a_model_trained_in_eval_mode_is_still_monitored_step_by_step():
    """Some constructors (EnCodec's) return the model in eval mode and the script never calls
    train(): a grad-enabled forward followed by a backward is a training step all the same."""
    result = _run("--steps", "20", "--eval-mode", "--val-every", "10")
    m = result.report.measurements
    assert m["training_forwards"] == 20 and m["steps"] == 20
    assert m["validation_forwards"] == 2 and [v["step"] for v in m["validation"]] == [10, 20]


def test_a_grad_scaler_skipping_steps_gives_T606_and_a_steady_scaler_does_not():
    skipping = _run("--steps", "30", "--scaler", "--overflow-every", "2", "--val-every", "0")
    t606 = [f for f in skipping.report.findings if f.id == "T606"]
    assert t606 and any(f.evidence.get("skipped", 0) >= 2 for f in t606), skipping.report.ids()
    steady = _run("--steps", "30", "--scaler", "--val-every", "0")
    assert "T606" in steady.report.checks_run and "T606" not in steady.report.ids()
    assert steady.report.measurements["optimizer_steps"] == 30


def test_missing_script_and_syntax_error_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="script not found"):
        watch(WatchRequest(script=str(tmp_path / "nope.py")))
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef f(:\n    pass\n")
    with pytest.raises(InputError, match=r"broken.py:2: syntax error"):
        watch(WatchRequest(script=str(broken)))
    with pytest.raises(InputError, match="no module named"):
        watch(WatchRequest(module="no_such_module_xyz"))


def test_cli_bad_script_is_one_line_exit_2(cli, tmp_path):
    code, out, err = cli("watch", "--", "missing.py")
    assert code == 2 and err.strip().count("\n") == 0 and "script not found: missing.py" in err
    (tmp_path / "broken.py").write_text("for\n")
    code, out, err = cli("watch", "broken.py", "--epochs", "3")
    assert code == 2 and "broken.py:1: syntax error" in err and "Traceback" not in err + out
    code, out, err = cli("watch", "--checks", "sometimes", "--", "broken.py")
    assert code == 2 and "sometimes" in err and "Traceback" not in err


# -- the command line -------------------------------------------------------------------------------

def _user_folder(tmp_path: Path) -> Path:
    """The user's project folder: the script, their own model/ package and a stray model.py."""
    folder = tmp_path / "project"
    shutil.copytree(SCRIPT_DIR, folder)
    return folder


def _cli(*script_args: str, html: str = "none"):
    return [sys.executable, "-m", "codecdoctor", "watch", "--read-every", "5", "--html", html,
            "--json", "reports/w.json", "--", "train_codec.py", *script_args]


def test_cli_passes_output_and_exit_code_through_from_a_folder_with_its_own_model_package(tmp_path):
    folder = _user_folder(tmp_path)
    proc = subprocess.run(_cli("--model-package", "--steps", "12", "--val-every", "0", "--exit-code", "3"),
                          cwd=folder, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "step 0 loss" in proc.stdout and "step 10 loss" in proc.stdout and "done" in proc.stdout
    data = json.loads((folder / "reports" / "w.json").read_text())
    assert data["command"] == "watch" and data["measurements"]["exit_code"] == 3
    assert data["measurements"]["model"]["class"] == "TinyCodec"  # the user's model/ package, not model.py
    assert data["measurements"]["training_forwards"] == 12


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_under_torchrun_every_rank_reports_and_a_nan_on_one_rank_stops_both(tmp_path):
    folder = _user_folder(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "codecdoctor", "watch", "--read-every", "5", "--html", "none",
           "--json", "reports/w.json", "--", "train_codec.py", "--ddp", "--steps", "12", "--val-every", "0",
           "--nan-step", "6", "--nan-rank", "1"]
    proc = subprocess.run(cmd, cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    rank0 = json.loads((folder / "reports" / "w.json").read_text())
    rank1 = json.loads((folder / "reports" / "w.rank1.json").read_text())
    for data in (rank0, rank1):
        # both stopped at the faulty step (the stop is voted after it), not at a collective timeout
        assert data["measurements"]["ending"] == "check" and data["measurements"]["training_forwards"] == 7
    t602 = [f for f in rank1["findings"] if f["id"] == "T602"]
    assert t602 and t602[0]["evidence"]["module"] == "decoder.2" and t602[0]["evidence"]["step"] == 6
    # rank 0's own data and weights were fine: its report names rank 1's finding
    assert any(f["id"] == "T602" and f["subject"].startswith("rank 1: ") for f in rank0["findings"])
