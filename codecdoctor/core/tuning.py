"""Process-wide speed settings, all of them, each with what it buys.

codecdoctor's numpy commands (audit-data, compare, check-ckpt, merge) spread their work themselves,
over worker processes (core/pool.py). Three settings of the process serve that; each is listed with
its share of a row of bench/bench_speed.py, measured by bench/bench_tuning.py (the row run with the
setting and without it, interleaved, medians; see docs/BENCHMARKS.md for the machine):

- One BLAS thread (`one_blas_thread`, `tune_worker`). The command line sets OPENBLAS_NUM_THREADS=1
  before numpy loads (cli.entry). A program that calls `codecdoctor.compare` has numpy loaded with
  one BLAS thread per core; each forked worker then runs its small matrix products (the mel
  filterbank) on a thread pool whose idle threads spin on the cores the other workers need. The
  count is set through threadpoolctl when it is installed (it is not a dependency); without it
  nothing is set and a library caller may set OPENBLAS_NUM_THREADS itself. In the calling
  process the limit also makes one process give the same float32 sums as its workers.
- Freed blocks kept in the heap (`keep_freed_memory`, glibc's mallopt). Every numpy temporary of
  a streamed block (1-8 MB) is above glibc's default mmap threshold, so each one is mapped,
  zero-filled page by page on first touch and unmapped again; with the thresholds raised, freed
  blocks stay for the next block (peak memory is unchanged: the same blocks are live at once).
- Exit without interpreter teardown (`exit_now`): freeing every module and object of numpy,
  jinja2, rich and typer one by one at the end of a short command.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator


def _blas_limits(count: int) -> Any:
    """threadpoolctl's limit on every loaded BLAS, or a no-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=int(count), user_api="blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block, the caller's count restored after it."""
    with _blas_limits(1):
        yield


# glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks instead of unmapping them (see the module doc). Not
    done when the user set either threshold, nor off glibc. Returns whether the thresholds were set."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 256 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 512 << 20))


def tune_worker() -> None:
    """A worker process of core/pool.py (its initializer): freed blocks kept, one BLAS thread for
    the worker's life (the limit object is not restored: the process ends with the pool)."""
    keep_freed_memory()
    _blas_limits(1)


def exit_now(code: int) -> None:
    """End the process without tearing the interpreter down. Only for the commands that run no
    user code and leave no thread behind (their pools are shut down when main returns): atexit
    handlers still run and both streams are flushed first."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing left to tell
            pass
    os._exit(code)
