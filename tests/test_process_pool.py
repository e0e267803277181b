"""core/pool.py: the one process pool. A worker that dies isolates the item that killed it, the
other items' results are kept, and nothing runs in the calling process."""
from __future__ import annotations

import os
import signal

import numpy as np
from audio_fixtures import speech_like, write_audio

from codecdoctor.core.pool import Lost, batches, run_isolated

SR = 16000


def _square_or_die(item: int) -> tuple[int, int]:
    if item == 13:
        os._exit(3)            # a decoder crash: the process ends without a Python exception
    if item == 21:
        os.kill(os.getpid(), signal.SIGKILL)   # the out-of-memory killer
    if item == 30:
        raise ValueError("not a number")
    return item * item, os.getpid()


def test_a_worker_death_isolates_its_item_and_keeps_every_other_result():
    items = list(range(40))
    results = dict(run_isolated(_square_or_die, items, jobs=2, groups=batches([1] * 40, max_bytes=100, max_items=8)))
    assert sorted(results) == items
    lost = {i: r for i, r in results.items() if isinstance(r, Lost)}
    assert sorted(lost) == [13, 21, 30]
    assert lost[13].died and lost[21].died and "worker process" in lost[13].reason
    assert not lost[30].died and "ValueError: not a number" in lost[30].reason
    measured = {i: r for i, r in results.items() if i not in lost}
    assert all(square == i * i for i, (square, _) in measured.items())
    assert os.getpid() not in {pid for _, pid in measured.values()}   # nothing ran in this process


def test_one_culprit_among_many_items_is_set_apart_without_running_every_item_alone(monkeypatch):
    """A round that keeps nothing runs only its first item alone: one crashing item among 120 costs
    a few one-worker pools, not one per item."""
    import codecdoctor.core.pool as pool

    alone: list[int] = []
    real = pool._run_alone
    monkeypatch.setattr(pool, "_run_alone", lambda work, item, init: (alone.append(item), real(work, item, init))[1])
    items = [0, 1, 2, 13, *range(100, 216)]   # 13 dies early; the rest are fine
    results = dict(run_isolated(_square_or_die, items, jobs=2, groups=[[i] for i in range(len(items))]))
    assert sorted(results) == list(range(len(items)))
    assert isinstance(results[3], Lost) and results[3].died
    assert all(results[i][0] == items[i] ** 2 for i in range(len(items)) if i != 3)
    assert 13 in alone and len(alone) <= 4


def test_batches_are_consecutive_and_bounded_by_count_and_bytes():
    sizes = [10, 10, 10, 95, 10, 10, 200, 10]
    groups = batches(sizes, max_bytes=100, max_items=3)
    assert groups == [[0, 1, 2], [3], [4, 5], [6], [7]]
    assert batches([], max_bytes=1, max_items=1) == []


def test_compare_a_pair_that_kills_its_worker_is_r315_and_the_rest_is_measured(tmp_path, monkeypatch):
    import codecdoctor.compare as compare_module

    ref, est = tmp_path / "ref", tmp_path / "est"
    rng = np.random.default_rng(5)
    for i in range(6):
        x = speech_like(1.0, SR, seed=40 + i)
        write_audio(ref / f"{i}.wav", x, SR)
        write_audio(est / f"{i}.wav", (x + 0.01 * rng.standard_normal(x.size)).astype(np.float32), SR)
    alone = compare_module.compare(ref, est, jobs=1, quality=False)
    real = compare_module._open_pair

    def crashing(pair, sample_rate):   # forked workers inherit this: 2.wav "segfaults" its worker
        if pair.subject == "2.wav":
            os._exit(1)
        return real(pair, sample_rate)

    monkeypatch.setattr(compare_module, "_open_pair", crashing)
    report = compare_module.compare(ref, est, jobs=2, quality=False)
    r315 = [f for f in report.findings if f.id == "R315" and f.subject == "2.wav"]
    assert r315 and "worker process" in r315[0].message
    records = {p["ref"]: p for p in report.measurements["pairs"]}
    assert "worker process" in records["2.wav"]["error"] and "snr_db" not in records["2.wav"]
    expected = {p["ref"]: p["snr_db"] for p in alone.measurements["pairs"] if p["ref"] != "2.wav"}
    assert {k: v["snr_db"] for k, v in records.items() if k != "2.wav"} == expected
    assert report.measurements["aggregate"]["unreadable_or_missing"] == 1


AFTER_TORCH_THREADS = """
import sys, torch
from codecdoctor.core.pool import run_isolated
from test_process_pool import _torch_work

torch.set_num_threads(2)
torch.nn.functional.pad(torch.randn(64, 1, 1 << 16), (1024, 1024), mode="reflect")  # OpenMP threads run here
print(sorted(dict(run_isolated(_torch_work, [1, 2, 3], jobs=2)).values()))
"""


def _torch_work(item: int) -> float:
    import torch

    x = torch.nn.functional.pad(torch.full((64, 1, 1 << 16), float(item)), (1024, 1024), mode="reflect")
    return float(x.mean())


def test_workers_forked_after_torch_ran_its_threads_finish(tmp_path):
    """A child forked after torch's OpenMP threads ran once hung at its first parallel region (a
    folder check-ckpt from a session that had used torch): workers run torch on one thread."""
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", AFTER_TORCH_THREADS], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)   # the hung workers too
        child.communicate()
        raise AssertionError("the workers hung") from None
    assert child.returncode == 0, stderr
    assert stdout.strip().splitlines()[-1] == "[1.0, 2.0, 3.0]"
