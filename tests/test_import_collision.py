"""A user's own `model.py` and `model/` in the working directory must not shadow the codec.

`python -m`, `torchrun -m` and `codecdoctor watch` put the working directory first on sys.path; the
codec installs as `codecdoctor_model`, so a user's `model` package is simply another module. Each
test runs from a folder holding both a `model.py` and a `model/__init__.py` that raise on import.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

POISON = "raise ImportError('the user\\'s own model package was imported instead of the codec')\n"


@pytest.fixture()
def user_folder(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "__init__.py").write_text(POISON)
    (tmp_path / "model.py").write_text(POISON)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        t = np.arange(16000) / 16000
        sf.write(data / f"utt{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)
                                        + 0.01 * rng.standard_normal(t.size)).astype(np.float32), 16000)
    return tmp_path


def _run(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_help_works_next_to_a_users_model_package(user_folder):
    for args in ([sys.executable, "-m", "codecdoctor", "--help"],
                 [str(Path(sys.executable).parent / "codecdoctor"), "--help"]):
        done = _run(args, user_folder)
        assert done.returncode == 0, done.stderr
        assert "train" in done.stdout


def test_train_under_python_m_next_to_a_users_model_package(user_folder):
    done = _run([sys.executable, "-m", "codecdoctor", "train", "--data_dir", "data", "--checkpoint_dir", "ckpt",
                 "--config", "tiny", "--max-steps", "2", "--batch_size", "2", "--segment-seconds", "0.25",
                 "--html", "none", "--json", "none"], user_folder)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert (user_folder / "ckpt" / "codec" / "last.pt").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_next_to_a_users_model_package(user_folder):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this interpreter")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
                 "-m", "codecdoctor.cli", "train", "--data_dir", "data", "--checkpoint_dir", "ckpt", "--config", "tiny",
                 "--max-steps", "2", "--batch_size", "2", "--segment-seconds", "0.25", "--device", "cpu",
                 "--html", "none", "--json", "none"], user_folder, timeout=400)
    assert done.returncode in (0, 1), (done.stdout[-2000:], done.stderr[-3000:])
    assert (user_folder / "ckpt" / "codec" / "last.pt").exists()
