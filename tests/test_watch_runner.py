"""`codecdoctor watch` runs a script exactly as `python` runs it: the field trainers (hydra, argbind,
DataLoader workers under fork and spawn; tests/scripts/field) in the path form and with `-m` print
the same losses and exit with the same status as under `python`; a script's real annotations, its
`__spec__`, `__file__`, pickling through `__main__` and multiprocessing are what `python` gives; the
host's state comes back; and a stop by a live check reaches the user as one line naming the finding,
without codecdoctor's frames, even where hydra prints the tracebacks."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import codecdoctor
from codecdoctor.core.as_main import as_main, resolve_target, run_main
from codecdoctor.watch import WatchRequest, watch

FIELD = Path(__file__).resolve().parent / "scripts" / "field"
PACKAGE_DIR = Path(codecdoctor.__file__).resolve().parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": ""}
# the lines a trainer prints per step and per evaluation (the terminal report has other lines)
TRAINER_LINE = re.compile(r"^(step \d+ gen_loss|eval step|val step|validation step) ")


@pytest.fixture
def field(tmp_path) -> Path:
    folder = tmp_path / "field"
    shutil.copytree(FIELD, folder, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    return folder


def _python(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)


def _watch(folder: Path, args: list[str], json_name: str = "w.json",
           fail_on: str = "critical") -> subprocess.CompletedProcess:
    form = args if args[0] == "-m" else ["--", *args]
    command = [sys.executable, "-m", "codecdoctor", "watch", "--fail-on", fail_on, "--html", "none",
               "--json", f"reports/{json_name}", *form]
    return subprocess.run(command, cwd=folder, env=ENV, capture_output=True, text=True, timeout=300)


def _trainer_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if TRAINER_LINE.match(line)]


FIELD_RUNS = {
    "hydra-path": ["train_encodec_style.py", "steps=4", "eval_every=2"],
    "hydra-module": ["-m", "train_encodec_style", "steps=4", "eval_every=2"],
    "argbind-path": ["train_dac_style.py", "--steps", "4", "--val_freq", "2"],
    "argbind-module": ["-m", "train_dac_style", "--steps", "4", "--val_freq", "2"],
    "workers-fork-path": ["train_hifigan_style.py", "--steps", "4", "--validation_interval", "2",
                          "--mp_context", "fork"],
    "workers-spawn-path": ["train_hifigan_style.py", "--steps", "4", "--validation_interval", "2",
                           "--mp_context", "spawn"],
    "workers-spawn-module": ["-m", "train_hifigan_style", "--steps", "4", "--validation_interval", "2",
                             "--mp_context", "spawn"],
}


@pytest.mark.parametrize("name", sorted(FIELD_RUNS))
def test_a_field_trainer_prints_the_same_losses_and_exits_as_under_python(field, name):
    args = list(FIELD_RUNS[name])
    hydra = "encodec" in " ".join(args)
    plain = _python(field, args + (["hydra.run.dir=run_python"] if hydra else []))
    assert plain.returncode == 0, plain.stderr[-2000:]
    watched = _watch(field, args + (["hydra.run.dir=run_watch"] if hydra else []))
    assert watched.returncode == plain.returncode, watched.stderr[-3000:]
    expected = _trainer_lines(plain.stdout)
    assert len([line for line in expected if line.startswith("step ")]) == 4
    assert _trainer_lines(watched.stdout) == expected  # the monitor changes nothing the script computes
    report = json.loads((field / "reports" / "w.json").read_text())
    assert report["measurements"]["exit_code"] == 0 and report["measurements"]["ending"] == "exit"
    assert report["measurements"]["training_forwards"] >= 4  # the model was found and watched
    if hydra:  # hydra ran the job in its own folder, and watch came back to where the user stands
        assert (field / "run_watch" / "encodec_style.pt").is_file()
        assert not (field / "encodec_style.pt").exists()


ANNOTATED = '''\
import typing

import argbind


class Settings:
    pass


@argbind.bind(without_prefix=True)
def train(steps: int = 2, lr: float = 0.5, name: str = "run", settings: Settings = None) -> None:
    print("values", steps * 2, lr * 2, name.upper())


print("annotations", train.__annotations__)
print("hints", typing.get_type_hints(train))
if __name__ == "__main__":
    args = argbind.parse_args()
    with argbind.scope(args):
        train()
'''


def test_real_annotations_read_by_argbind_and_get_type_hints_give_the_same_output_as_python(tmp_path, capfd):
    script = tmp_path / "annotated.py"
    script.write_text(ANNOTATED)
    plain = _python(tmp_path, [str(script), "--steps", "5", "--lr", "0.25"])
    assert plain.returncode == 0, plain.stderr
    assert "values 10 0.5 RUN" in plain.stdout and "<class 'int'>" in plain.stdout
    capfd.readouterr()
    result = watch(WatchRequest(script=str(script), args=["--steps", "5", "--lr", "0.25"]))
    out = capfd.readouterr().out
    assert result.exit_code == 0 and result.ending == "exit"
    assert out == plain.stdout


PROBE = '''\
import multiprocessing
import os
import pickle
import sys


class Item:
    def __init__(self, value):
        self.value = value


def double(item):
    return item.value * 2


def describe():
    spec = __spec__.name if __spec__ is not None else None
    print("name", __name__, "spec", spec, "package", repr(__package__), "file", __file__)
    print("loader", type(__loader__).__name__, "cached", __cached__)
    print("argv", sys.argv, "path0", sys.path[0])
    print("pickled", pickle.loads(pickle.dumps(Item(21))).value, type(pickle.loads(pickle.dumps(Item(1)))).__module__)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print("spawn pool", pool.map(double, [Item(1), Item(2)]))


if __name__ == "__main__":
    describe()
    sys.exit(5)
'''


def test_main_module_spec_file_argv_path_pickling_and_spawn_are_as_under_python(tmp_path, monkeypatch, capfd):
    package = tmp_path / "tools"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "probe.py").write_text(PROBE)
    monkeypatch.chdir(tmp_path)
    for form in ("path", "module"):
        args = ["tools/probe.py", "-k", "1"] if form == "path" else ["-m", "tools.probe", "-k", "1"]
        plain = _python(tmp_path, args)
        assert plain.returncode == 5, plain.stderr
        assert "spawn pool [2, 4]" in plain.stdout and "pickled 21 __main__" in plain.stdout
        capfd.readouterr()
        request = WatchRequest(script=args[0], args=args[1:]) if form == "path" else \
            WatchRequest(module=args[1], args=args[2:])
        result = watch(request)
        out = capfd.readouterr().out
        assert result.exit_code == 5
        assert out == plain.stdout, form


def test_as_main_puts_the_host_state_back_after_a_script_that_changes_it_and_raises(tmp_path):
    script = tmp_path / "mess.py"
    script.write_text("import os, sys\nsys.path.insert(0, '/nowhere')\nsys.argv.append('x')\n"
                      f"os.chdir({str(tmp_path)!r})\nraise RuntimeError('boom')\n")
    before = (list(sys.argv), list(sys.path), sys.modules["__main__"], os.getcwd(),
              signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    target = resolve_target(script=str(script))
    with pytest.raises(RuntimeError, match="boom"):
        with as_main(target, ["--a"]) as namespace:
            assert sys.argv == [str(script), "--a"] and sys.path[0] == str(tmp_path.resolve())
            assert sys.modules["__main__"].__dict__ is namespace and namespace["__spec__"] is None
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            run_main(target, namespace)
    after = (sys.argv, sys.path, sys.modules["__main__"], os.getcwd(),
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert after == before


def _assert_one_line_stop(proc: subprocess.CompletedProcess, check_id_prefix: str = "T60") -> None:
    assert proc.returncode == 1, proc.stderr[-3000:]
    stop_lines = [line for line in proc.stderr.splitlines() if line.startswith("codecdoctor watch: stopped the script:")]
    assert len(stop_lines) == 1 and f"stopped the script: {check_id_prefix}" in stop_lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr
    assert str(PACKAGE_DIR) not in proc.stderr + proc.stdout  # no frame of codecdoctor's own


def test_a_stop_in_a_hydra_script_is_one_line_naming_the_finding_without_codecdoctor_frames(field):
    proc = _watch(field, ["train_encodec_style.py", "steps=6", "fault=nan_decoder_weight", "hydra.run.dir=run"],
                  fail_on="error")
    _assert_one_line_stop(proc)
    assert "decoder" in proc.stderr  # the finding names the module that made the NaN
    report = json.loads((field / "reports" / "w.json").read_text())
    assert report["measurements"]["ending"] == "check"


def test_a_stop_in_a_script_with_dataloader_workers_is_one_line_without_codecdoctor_frames(field):
    proc = _watch(field, ["train_hifigan_style.py", "--steps", "6", "--fault", "nan_decoder_weight"],
                  fail_on="error")
    _assert_one_line_stop(proc)
