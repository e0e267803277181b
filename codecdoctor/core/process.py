"""Process settings for codecdoctor's own numpy processes (the streaming commands, compare's workers).

keep_freed_memory: glibc's malloc keeps freed blocks for the next streamed block.

limit_openblas_threads: the `codecdoctor` executable sets OPENBLAS_NUM_THREADS=1 before numpy loads (cli.entry), but a
program that calls `codecdoctor.compare.compare` has numpy loaded already with one BLAS thread per
core. Each forked worker then ran its small matrix products (the mel filterbank) on a thread pool
whose idle threads spin on the cores the other workers need: a folder of 360 short pairs took
11 s instead of 4 s on 2 cores. OpenBLAS reads the variable only when it loads, so the worker sets
the count through OpenBLAS's own call, found in the libraries this process has mapped.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

# numpy's wheels bundle scipy-openblas (64-bit interface, prefixed names); a system OpenBLAS has the plain names
_CONTROLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
             ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
             ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
             ("openblas_set_num_threads", "openblas_get_num_threads"))


def _openblas_controls() -> list[tuple[Any, Any]]:
    """(set, get) of every OpenBLAS this process has loaded; none off Linux (it reads
    /proc/self/maps) or for MKL and Accelerate builds."""
    import ctypes  # here: the command line imports this module and must start fast

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    controls = []
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _CONTROLS:
            setter, getter = getattr(library, set_name, None), getattr(library, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                controls.append((setter, getter))
                break
    return controls


def limit_openblas_threads(count: int = 1) -> bool:
    """Set every loaded OpenBLAS to `count` threads; whether one was found."""
    controls = _openblas_controls()
    for setter, _ in controls:
        setter(int(count))
    return bool(controls)


@contextmanager
def one_openblas_thread() -> Iterator[None]:
    """OpenBLAS on one thread inside the block, the caller's count restored after it: compare in
    the caller's process measures with the same single-threaded kernels as its workers (float32
    matrix products round differently with another thread count) and without idle BLAS threads."""
    controls = _openblas_controls()
    before = [getter() for _, getter in controls]
    for setter, _ in controls:
        setter(1)
    try:
        yield
    finally:
        for (setter, _), count in zip(controls, before):
            setter(count)


# glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks instead of unmapping them.

    Every numpy temporary of a streamed block (1-8 MB) is above glibc's default mmap threshold, so
    each one was mapped, zero-filled page by page on first touch and unmapped again: a 1.8 h
    compare spent 2.1 s of its 7.2 s of CPU in the kernel doing that, and a 160 k-sample moving
    average took 7.1 ms instead of 1.2 ms. With the thresholds raised, freed blocks stay in the heap
    for the next block (peak memory is unchanged: the same blocks are live at once). Not done when
    the user set either threshold, nor off glibc. Returns whether the thresholds were set."""
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
    """A compare worker process (the pool's initializer): both settings above."""
    keep_freed_memory()
    limit_openblas_threads(1)
