"""core/imports.py: background imports run one after another, `settle` waits for them, and a
failing one is left for the caller's own import to report (no traceback from the thread)."""
from __future__ import annotations

import threading
import time

from codecdoctor.core import imports


def test_background_imports_run_one_after_another_and_settle_waits_for_them():
    spans: list[tuple[str, float, float]] = []

    def load(name: str, seconds: float):
        def run():
            start = time.perf_counter()
            time.sleep(seconds)
            spans.append((name, start, time.perf_counter()))
        return run

    imports.run_beside(load("first", 0.2), "test-first")
    imports.run_beside(load("second", 0.01), "test-second")
    imports.settle()
    assert [name for name, _, _ in spans] == ["first", "second"]
    assert spans[1][1] >= spans[0][2]          # the second began after the first had finished


def test_a_failing_background_import_prints_nothing(monkeypatch):
    seen: list[object] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args))

    def broken():
        raise ImportError("cannot import name 'X' from partially initialized module 'y'")

    thread = imports.run_beside(broken, "test-broken")
    thread.join()
    imports.settle()
    assert seen == []


def test_the_resampler_waits_for_the_background_imports_before_importing_scipy_signal():
    """The race the fault campaign met: scipy.fft imported in the background (a one-pair compare
    does so while it opens its files) and scipy.signal in the calling thread (the resampler, for a
    pair at two rates). In fresh interpreters that did both at once, 6 of 40 and then 3 of 30 threw
    KeyError 'scipy' or "partially initialized module"; with `settle` first, 0 of 40. So
    `resample` must not return (or import) before a background import still under way is done."""
    import numpy as np
    import scipy.signal  # noqa: F401 - loaded already: only the wait can make resample take 0.3 s

    from codecdoctor.measure.audio.reader import resample

    finished: list[float] = []
    imports.run_beside(lambda: (time.sleep(0.3), finished.append(time.perf_counter())), "test-slow-import")
    out = resample(np.ones(480), 48000, 16000)
    returned = time.perf_counter()
    assert out.shape == (160,)
    assert finished and finished[0] <= returned
