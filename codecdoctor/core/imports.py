"""Module imports run in the background, one after another, while the caller reads its input.

Two threads that import different parts of one package at the same time can fail: CPython's
import-lock deadlock detection hands one of them the half-initialised package ("cannot import name
... from partially initialized module"). A `compare` of a header-only FLAC against a WAV at another
rate did so, scipy.signal (the resampler, in the calling thread) beside scipy.fft (in the
background). So every background import goes through `run_beside`, which runs each one after the
previous has finished, and code that imports another part of such a package in the calling thread
calls `settle()` first. Importing a module the background is importing is safe without it: the
caller then waits on that module's own lock.
"""
from __future__ import annotations

import threading
from typing import Callable

_last: threading.Thread | None = None
_guard = threading.Lock()


def run_beside(load: Callable[[], object], name: str) -> threading.Thread:
    """Start `load` (imports) in a daemon thread once the previous one has finished; the thread.
    Join it before forking: a fork during an import can leave a module lock held in the child."""
    global _last
    with _guard:
        previous = _last

        def run() -> None:
            if previous is not None:
                previous.join()
            try:
                load()
            except Exception:  # noqa: BLE001 - the caller's own import raises it again, where it is handled
                pass

        _last = threading.Thread(target=run, name=name, daemon=True)
        _last.start()
        return _last


def settle() -> None:
    """Wait for the background imports started so far."""
    with _guard:
        last = _last
    if last is not None:
        last.join()
