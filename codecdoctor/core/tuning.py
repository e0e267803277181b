"""Process-wide speed settings, all of them, each with what it buys.

codecdoctor's numpy commands (audit-data, compare, check-ckpt, merge) spread their work
themselves, over the worker processes of core/pool.py. Three settings of the process serve them.
Each is kept because it saves at least a tenth of a row of bench/bench_speed.py, measured by
bench/bench_tuning.py (the command with the setting and without it, interleaved, medians of five
runs on 2 shared cores; wall and CPU time of the command and its workers):

- One BLAS thread (`before_command`): OPENBLAS_NUM_THREADS=1 before numpy loads, so that OpenBLAS
  adds no thread pool of its own whose idle threads spin on the cores the workers need. It saves
  57% of the wall time and 55% of the CPU time of a compare of a 1.8 h pair, 11% of the wall time
  of a compare of ten minutes of 10 s pairs.
  Set through the environment only: a program that calls the library keeps its own threading,
  and its forked workers inherit it (the same float32 sums in every process).
- Freed blocks kept in the heap (`keep_freed_memory`, glibc's mallopt). Every numpy temporary of a
  streamed block (1-8 MB) is above glibc's default mmap threshold, so without it each one is
  mapped, zero-filled page by page on first touch and unmapped again; with the thresholds raised,
  freed blocks stay for the next block (peak memory is unchanged: the same blocks are live at
  once). It saves 21% of the CPU time and 18% of the wall time of a compare of ten minutes of
  10 s pairs (--no-quality), and 10% of the CPU time of a compare of a 1.8 h pair. Not set for
  audit-data: an audit of one 1.8 h file took the same time with and without it (+1% CPU,
  -3% wall, 7 runs), of three 1.6-1.8 h files within 2% either way: its block buffer is reused,
  and glibc raises its own mmap threshold to a freed mapped block's size (4 MB here) anyway.
- Exit without interpreter teardown (`exit_now`): freeing every module and object of numpy,
  jinja2, rich and typer one by one at the end. Teardown is a fixed cost, 0.03-0.05 s: 7% of the
  wall time and 8% of the CPU time of an audit of one 1.8 h file measured on a busy machine
  (0.67 s), about a tenth of that row on a quiet one (0.4 s); 3% or less of the compare rows.

Measured and dropped: limiting BLAS threads through threadpoolctl in each worker and around a
pair measured in the calling process cost 11% more CPU time on the folder row than no limit.
"""
from __future__ import annotations

import os
import sys

# Commands whose numpy work codecdoctor spreads itself (worker processes); the ones that run torch
# (train, watch, probe, demo) and a user's own code keep their threading.
OWN_PARALLELISM = {"audit-data", "compare", "check-ckpt", "merge"}
# Commands whose streamed blocks of a few MB gain from malloc keeping freed blocks (see above).
BLOCK_STREAMING = {"compare"}


def before_command(command: str) -> None:
    """The settings for one command line, before numpy is first imported; a user's own
    environment wins."""
    if command in OWN_PARALLELISM:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if command in BLOCK_STREAMING:
        keep_freed_memory()


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
    """A worker process of core/pool.py (its initializer): freed blocks kept, also when the
    library is called from a program that did not go through the command line."""
    keep_freed_memory()


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
