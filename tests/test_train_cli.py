"""`codecdoctor train` on the command line: the user's flags, reports, bad input, kill -9 + resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(3 * 16000) / 16000
    for i in range(2):
        x = 0.3 * np.sin(2 * np.pi * (140 + 50 * i) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        sf.write(str(folder / f"f{i}.wav"), x.astype(np.float32), 16000, subtype="FLOAT")
    return folder


TINY = ["--config", "tiny", "--segment-seconds", "0.25", "--steps-per-epoch", "2"]


def test_users_original_flags_are_accepted_and_the_report_has_the_history(cli, tmp_path):
    data = _corpus(tmp_path / "telugu_data" / "raw")
    code, out, err = cli("train", "--data_dir", data, "--checkpoint_dir", tmp_path / "models" / "codec",
                         "--batch_size", "2", "--num_epochs", "2", "--learning_rate", "1e-5",
                         "--experiment_name", "telucodec_final_fixed", *TINY, "--checks", "off",
                         "--json", tmp_path / "train.json", "--html", tmp_path / "train.html")
    assert code == 0, err
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["command"] == "train"
    history = report["measurements"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all("val_snr_db" in h for h in history)
    assert "event_log" in report["measurements"]
    ckpt = tmp_path / "models" / "codec" / "telucodec_final_fixed" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["train_args"]["learning_rate"] == 1e-5 and state["step"] == 4
    assert (tmp_path / "train.html").read_text().count("Training history") >= 1


def test_dashed_forms_are_accepted(cli, tmp_path):
    data = _corpus(tmp_path / "data")
    code, _, err = cli("train", "--data-dir", data, "--checkpoint-dir", tmp_path / "ck", "--batch-size", "2",
                       "--num-epochs", "1", "--learning-rate", "1e-3", "--experiment-name", "x", *TINY,
                       "--checks", "off", "--json", "none", "--html", "none")
    assert code == 0, err
    assert (tmp_path / "ck" / "x" / "last.pt").exists()


def test_missing_data_dir_is_one_line_exit_2(cli, tmp_path):
    code, out, err = cli("train", "--data_dir", tmp_path / "nope", "--checkpoint_dir", tmp_path / "ck")
    assert code == 2
    assert err.strip().count("\n") == 0 and "data folder not found" in err


def test_folder_without_audio_is_exit_2(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    code, _, err = cli("train", "--data_dir", tmp_path / "empty", "--checkpoint_dir", tmp_path / "ck")
    assert code == 2 and "no audio files" in err


def test_unwritable_checkpoint_dir_is_exit_2_before_training(cli, tmp_path):
    data = _corpus(tmp_path / "data")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code, _, err = cli("train", "--data_dir", data, "--checkpoint_dir", blocker / "ck", *TINY)
    assert code == 2 and "not writable" in err


@pytest.mark.parametrize("flag, value", [("--speed_perturb", "2"), ("--speed_perturb", "nan"), ("--gain_db", "-3")])
def test_augmentation_out_of_range_is_one_line_exit_2(cli, tmp_path, flag, value):
    data = _corpus(tmp_path / "data")
    code, _, err = cli("train", "--data_dir", data, "--checkpoint_dir", tmp_path / "ck", *TINY, flag, value)
    assert code == 2 and err.strip().count("\n") == 0 and flag in err, err


def test_kill_9_during_training_then_resume_continues_from_last_checkpoint(tmp_path):
    data = _corpus(tmp_path / "data")
    ckpt_dir = tmp_path / "ck"
    last = ckpt_dir / "run" / "last.pt"
    base = [sys.executable, "-m", "codecdoctor", "train", "--data_dir", str(data), "--checkpoint_dir", str(ckpt_dir),
            "--batch_size", "2", "--experiment_name", "run", "--config", "tiny", "--segment-seconds", "0.25",
            "--steps-per-epoch", "1000", "--num_epochs", "1", "--checks", "off", "--json", "none", "--html", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(base + ["--save-every", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not last.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        assert last.exists(), "no checkpoint written in time"
        time.sleep(0.3)  # let it get into the middle of later steps / writes
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = torch.load(last, weights_only=True)["step"]  # still a complete, loadable file
    assert step_at_kill >= 2 and step_at_kill % 2 == 0
    target = step_at_kill + 3
    resumed = subprocess.run(base + ["--resume", "--max-steps", str(target), "--json", str(tmp_path / "r.json")],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = torch.load(last, weights_only=True)
    assert state["step"] == target
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["measurements"]["steps"] == target
    assert report["measurements"]["stop_reason"] == "max_steps"
