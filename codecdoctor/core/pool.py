"""The one way codecdoctor runs work in worker processes (audit, compare and check-ckpt folders).

`run_isolated(work, items, jobs=...)` runs `work(item)` for every item in a
`concurrent.futures.ProcessPoolExecutor`, items grouped into batches (`batches`), and yields
`(index, result)` in completion order. A worker process that dies (a decoder crash, the
out-of-memory killer) breaks the whole pool and fails every batch still in it, so the items of a
failed batch are run again in fresh pools, one item per future in order, round after round: every
item that finishes before the culprit takes its pool down again is kept. A round that keeps
nothing had the culprit among its first items (the ones running when it broke), so its first
item then runs alone in a one-worker pool, and the rounds go on with the rest: each round keeps
something or sets one item apart, however many items there are. An item that kills its worker
alone, or raises, comes back as a `Lost` value naming why; the caller turns it into a finding.
Nothing is ever run again in the calling process: a file that crashed a worker would crash it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence


@dataclass(frozen=True)
class Lost:
    """An item whose result never came back. `died`: its worker process died while it ran alone
    (rather than `work` raising an exception, whose text `reason` then carries)."""
    reason: str
    died: bool


DIED = "the worker process measuring it died twice (a crash while decoding it, or out of memory)"


def batches(sizes: Sequence[int], *, max_bytes: int, max_items: int) -> list[list[int]]:
    """Indices of consecutive items grouped so that a batch holds at most `max_items` items and,
    unless it is a single item, at most `max_bytes` bytes. One hand-off per item costs the parent
    process pickling and a wake-up per result; batches bound that without leaving one worker alone
    with a long tail."""
    groups: list[list[int]] = []
    size = 0
    for index, item_bytes in enumerate(sizes):
        if not groups or len(groups[-1]) >= max_items or size + item_bytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += item_bytes
    return groups


def _run_batch(work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return [work(item) for item in items]


def _start_worker(initializer: Callable[[], None] | None) -> None:
    """Each worker's start: one torch thread when this process had imported torch before it forked
    (a child forked after torch's OpenMP threads ran hangs at its first parallel region, as GNU
    libgomp is not fork-safe; one thread never enters one, which is what torch's own DataLoader
    workers do), then the caller's initializer."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    if initializer is not None:
        initializer()


def _pool(jobs: int, initializer: Callable[[], None] | None) -> Any:
    import concurrent.futures as cf
    import functools

    return cf.ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=_context(),
                                  initializer=functools.partial(_start_worker, initializer))


def _context() -> Any:
    import multiprocessing as mp

    # fork: the work function, its items and the modules the parent imported travel without pickling
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _describe(exc: BaseException) -> str:
    return f"measuring it failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def run_isolated(work: Callable[[Any], Any], items: Sequence[Any], *, jobs: int,
                 groups: list[list[int]] | None = None,
                 initializer: Callable[[], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(index, work(items[index])) for every item, in completion order; `Lost` for an item whose
    worker died with it alone or that raised. `groups`: batches of indices (default: one item
    each). `work` must be a module-level function (it travels to the workers)."""
    import concurrent.futures as cf

    groups = groups if groups is not None else [[i] for i in range(len(items))]
    failed: list[int] = []
    with _pool(jobs, initializer) as pool:
        futures = {pool.submit(_run_batch, work, [items[i] for i in group]): group for group in groups}
        for future in cf.as_completed(futures):
            try:
                results = future.result()
            except Exception:  # noqa: BLE001 - a worker that died (BrokenProcessPool) or raised: run again below
                failed.extend(futures[future])
                continue
            yield from zip(futures[future], results)
    yield from _rerun(work, items, sorted(failed), jobs, initializer)


def _rerun(work: Callable[[Any], Any], items: Sequence[Any], indices: list[int], jobs: int,
           initializer: Callable[[], None] | None) -> Iterator[tuple[int, Any]]:
    """The items of failed batches, one per future in a fresh pool, round after round; the first
    item of a round that kept nothing runs alone."""
    import concurrent.futures as cf

    while len(indices) > 1:
        broken: list[int] = []
        with _pool(jobs, initializer) as pool:
            futures = {pool.submit(_run_batch, work, [items[i]]): i for i in indices}
            for future in cf.as_completed(futures):
                try:
                    yield futures[future], future.result()[0]
                except Exception:  # noqa: BLE001 - as above
                    broken.append(futures[future])
        indices = sorted(broken)
        if len(broken) == len(futures):  # nothing kept: the first item, running when it broke, alone
            yield indices[0], _run_alone(work, items[indices[0]], initializer)
            indices = indices[1:]
    for index in indices:
        yield index, _run_alone(work, items[index], initializer)


def _run_alone(work: Callable[[Any], Any], item: Any, initializer: Callable[[], None] | None) -> Any:
    import concurrent.futures as cf

    with _pool(1, initializer) as pool:
        try:
            return pool.submit(_run_batch, work, [item]).result()[0]
        except cf.process.BrokenProcessPool:
            return Lost(DIED, died=True)
        except Exception as exc:  # noqa: BLE001 - the caller records it as a finding
            return Lost(_describe(exc), died=False)
