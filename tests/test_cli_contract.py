"""The command line's contract: commands listed, exit codes 0/1/2, one-line errors, JSON on stdout."""
from __future__ import annotations

import json
import os
import sys

import pytest
import typer

from codecdoctor.commands.common import FailOn, Outputs, finish
from codecdoctor.core.findings import Finding, Report, Severity

DESIGN_COMMANDS = ("audit-data", "check-ckpt", "compare", "train", "probe", "checks", "explain", "env", "demo", "merge")


def test_help_lists_every_command_of_the_design(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in DESIGN_COMMANDS:
        assert name in out


def test_unknown_option_exits_2_without_traceback(cli):
    code, out, err = cli("env", "--no-such-option")
    assert code == 2
    assert "Traceback" not in out + err
    assert "no-such-option" in out + err


def test_unknown_command_exits_2(cli):
    code, out, err = cli("frobnicate")
    assert code == 2
    assert "Traceback" not in out + err


def test_explain_unknown_id_is_one_line_exit_2(cli):
    code, out, err = cli("explain", "Z999")
    assert code == 2
    assert err.strip().count("\n") == 0 and "Z999" in err


def test_explain_prints_the_three_parts(cli):
    code, out, _ = cli("explain", "E701")
    assert code == 0
    for heading in ("What it checks", "Why it matters", "How to fix"):
        assert heading in out


def test_checks_lists_every_registered_id(cli):
    from codecdoctor.core.registry import all_checks

    code, out, _ = cli("checks")
    assert code == 0
    ids = [info.id for info in all_checks()]
    assert ids, "the registry is empty"
    for check_id in ids:
        assert check_id in out


def test_checks_scope_filters(cli):
    code, out, _ = cli("checks", "--scope", "environment")
    assert code == 0
    assert "E701" in out and "D103" not in out


def test_env_writes_json_to_stdout_that_round_trips(cli):
    code, out, _ = cli("env", "--json", "-", "--html", "none")
    data = json.loads(out)
    assert code == 0
    assert data["schema_version"] == 1 and data["tool"] == "codecdoctor" and data["command"] == "env"
    assert set(data["checks_run"]) == {"E701", "E702", "E703"}
    assert Report.from_dict(data).to_dict()["findings"] == data["findings"]


def test_env_default_outputs_go_under_reports(cli, tmp_path):
    code, _, _ = cli("env")
    assert code == 0
    assert (tmp_path / "reports" / "env.html").is_file()
    assert (tmp_path / "reports" / "env.json").is_file()


def _report_with(severity: Severity) -> Report:
    report = Report(command="unit")
    report.findings.append(Finding(id="E703", severity=severity, title="t", message="m"))
    return report


@pytest.mark.parametrize(
    "severity, fail_on, expected",
    [
        (Severity.WARNING, FailOn.error, 0),
        (Severity.ERROR, FailOn.error, 1),
        (Severity.CRITICAL, FailOn.error, 1),
        (Severity.INFO, FailOn.info, 1),
        (Severity.WARNING, FailOn.warning, 1),
        (Severity.ERROR, FailOn.critical, 0),
    ],
)
def test_fail_on_maps_to_exit_codes(tmp_path, severity, fail_on, expected):
    with pytest.raises(typer.Exit) as raised:
        finish(_report_with(severity), Outputs(str(tmp_path / "r.html"), str(tmp_path / "r.json"), fail_on), name="unit")
    assert raised.value.exit_code == expected


def test_fail_on_option_is_parsed_by_the_cli(cli):
    # env has only info findings: 0 at the default threshold, 1 when info counts as failure
    assert cli("env", "--html", "none", "--json", "none")[0] == 0
    assert cli("env", "--html", "none", "--json", "none", "--fail-on", "info")[0] == 1
    assert cli("env", "--fail-on", "bogus")[0] == 2


@pytest.mark.parametrize(("command", "expected"), [("compare", "1"), ("audit-data", "1"), ("train", None)])
def test_commands_that_spread_their_own_work_start_numpy_blas_single_threaded(monkeypatch, command, expected):
    import codecdoctor.cli as cli_module

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(sys, "argv", ["codecdoctor", command, "--help"])
    monkeypatch.setattr(cli_module, "main", lambda: 0)
    with pytest.raises(SystemExit):
        cli_module.entry()
    assert os.environ.get("OPENBLAS_NUM_THREADS") == expected


def test_a_users_blas_setting_wins(monkeypatch):
    import codecdoctor.cli as cli_module

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    monkeypatch.setattr(sys, "argv", ["codecdoctor", "compare", "a", "b"])
    monkeypatch.setattr(cli_module, "main", lambda: 0)
    with pytest.raises(SystemExit):
        cli_module.entry()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"


@pytest.mark.parametrize(("command", "expected"), [("compare", True), ("audit-data", False), ("train", False)])
def test_block_streaming_commands_keep_freed_blocks_for_reuse(monkeypatch, command, expected):
    import codecdoctor.cli as cli_module

    called = []
    monkeypatch.setattr(sys, "argv", ["codecdoctor", command, "--help"])
    monkeypatch.setattr(cli_module, "main", lambda: 0)
    monkeypatch.setattr(cli_module.tuning, "keep_freed_memory", lambda: called.append(True) or True)
    with pytest.raises(SystemExit):
        cli_module.entry()
    assert bool(called) is expected


def test_malloc_thresholds_are_set_on_glibc_and_left_to_a_user_who_set_them(monkeypatch):
    import platform

    from codecdoctor.core.tuning import keep_freed_memory

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True


def test_the_numpy_commands_end_without_interpreter_teardown_and_keep_their_output(tmp_path):
    """compare ends through _exit_now: the exit code, the terminal text and both reports survive it."""
    import subprocess

    import numpy as np
    import soundfile as sf

    ref = np.sin(np.arange(16000) * 0.05) * 0.5
    sf.write(tmp_path / "ref.wav", ref, 16000)
    sf.write(tmp_path / "est.wav", -ref, 16000)
    run = subprocess.run([sys.executable, "-m", "codecdoctor", "compare", str(tmp_path / "ref.wav"),
                          str(tmp_path / "est.wav"), "--no-quality", "--html", str(tmp_path / "r.html"),
                          "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "R303" in run.stdout
    assert json.loads((tmp_path / "r.json").read_text())["findings"]
    assert (tmp_path / "r.html").stat().st_size > 1000
