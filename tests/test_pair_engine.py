"""The one pair engine (codecdoctor.measure.pair): `measure_pair` over arrays is the streaming engine
over array sources, whatever array it is given, and the package stays small steps."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import speech_like
from pair_reference import measure_pair_whole
from test_compare_stream import assert_same_measurements

from codecdoctor.measure.pair import ArraySource, measure_pair, measure_pair_stream

SR = 16000
PACKAGE = Path(__file__).resolve().parents[1] / "codecdoctor" / "measure" / "pair"


def test_measure_pair_is_the_engine_over_array_sources():
    ref = speech_like(2.0, SR, seed=3).astype(np.float64)
    est = 0.5 * np.concatenate([np.zeros(40), ref[:-40]]) + 1e-3 * np.random.default_rng(0).standard_normal(ref.size)
    arrays = dataclasses.asdict(measure_pair(ref, est, SR, subject="p"))
    sources = dataclasses.asdict(measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, subject="p"))
    assert arrays == sources
    assert arrays["lag_samples"] == 40


def test_measure_pair_takes_torch_tensors_and_float32():
    torch = pytest.importorskip("torch")
    ref = speech_like(1.0, SR, seed=4).astype(np.float32)
    est = 0.8 * ref
    from_torch = measure_pair(torch.from_numpy(ref)[None, None], torch.from_numpy(est)[None, None], SR)
    from_numpy = measure_pair(ref.astype(np.float64), est.astype(np.float64), SR)
    assert from_torch.ref_samples == ref.size and from_torch.compared_samples == ref.size
    assert from_torch.output_level_db == pytest.approx(20 * np.log10(0.8), abs=1e-4)
    assert from_torch.snr_db == pytest.approx(from_numpy.snr_db, abs=1e-9)


def test_stereo_against_mono_is_each_pooled_into_one_signal_first():
    # different leading shapes: each side is joined end to end into one signal, then the two are
    # compared over their common length (lengths are still reported along the last axis)
    ref = np.stack([speech_like(1.0, SR, seed=5), speech_like(1.0, SR, seed=6)]).astype(np.float64)
    est = ref.reshape(-1)[: ref.size - 100] * 0.9
    engine = measure_pair(ref, est, SR)
    assert (engine.ref_samples, engine.est_samples, engine.compared_samples) == (SR, 2 * SR - 100, 2 * SR - 100)
    assert engine.output_level_db == pytest.approx(20 * np.log10(0.9), abs=1e-6)
    pooled = measure_pair_whole(ref.reshape(-1), est, SR)
    pooled.ref_samples = SR
    assert_same_measurements(pooled, engine, "stereo against mono")


@pytest.mark.parametrize("rate", [None, 0, -1])
def test_a_missing_sample_rate_is_16_khz_as_the_reference_takes_it(rate):
    ref = speech_like(0.5, SR, seed=7).astype(np.float64)
    m = measure_pair(ref, 0.5 * ref, rate)
    assert m.sample_rate == SR
    assert_same_measurements(measure_pair_whole(ref, 0.5 * ref, rate), m, f"rate {rate}")


@pytest.mark.parametrize("ref, est", [(np.zeros(0), np.zeros(0)), (np.array(0.5), np.array(0.5)),
                                      (np.zeros(5), np.ones(3))])
def test_tiny_and_empty_arrays_measure_as_the_reference_does(ref, est):
    assert_same_measurements(measure_pair_whole(ref, est, SR), measure_pair(ref, est, SR), repr((ref, est)))


def test_no_function_in_the_engine_is_over_80_lines():
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_a_pass_has_one_helper_thread_that_runs_the_handed_work_in_order():
    import threading

    from codecdoctor.measure.pair.blocks import Overlap, block_spans

    workers, done = set(), []
    overlap = Overlap(10, 3)

    def work(index):
        workers.add(threading.get_ident())
        done.append(index)

    for a, _ in block_spans(10, 3):
        overlap.later(work, a)
    overlap.finish()
    assert done == [0, 3, 6, 9]
    assert len(workers) == 1 and threading.get_ident() not in workers   # one thread, not the caller's

    failing = Overlap(10, 3)

    def fail(index):
        raise ValueError(f"block {index}")

    with pytest.raises(ValueError, match="block 0"):   # raised by the next hand-over or at the end
        failing.later(fail, 0)
        failing.finish()


def test_a_single_block_pass_starts_no_thread():
    from codecdoctor.measure.pair.blocks import Overlap

    overlap = Overlap(3, 3)
    ran = []
    overlap.later(ran.append, 1)
    assert overlap.thread is None and ran == [1]
    overlap.finish()
