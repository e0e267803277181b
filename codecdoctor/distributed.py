"""Dask distributed as the engine for many machines (`--scheduler ADDRESS`, library `client=`).

Generic over the work: `run_on_cluster` maps a function over file-sized items, one Dask task per
item, and combines the returned accumulators on the cluster in a tree (8 at a time), so only the
final accumulator travels to the client, where the command judges it once. A worker that dies
mid-task is replaced by the nanny and its tasks are rescheduled (Dask's `allowed-failures`); a
task marked KilledWorker runs once more on its own (it may only have shared a worker with the
crashing one); an item whose task still fails becomes `failed(item, reason)` (audit-data turns that into a D100 row
naming the reason), so no item is ever silently lost.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Sequence

from codecdoctor.core.errors import InputError
from codecdoctor.measure.audio.sources import public_url

COMBINE_FAN_IN = 8
RETRIES = 2  # an exception inside a task (not a dead worker) is retried this often, then reported


def _require() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'codecdoctor[distributed]' (dask[distributed])") from None
    return distributed


def connect(scheduler: str, timeout_s: float = 20.0) -> Any:
    """A Client for a scheduler address (tcp://host:8786) or a scheduler file (dask-scheduler
    --scheduler-file); a one-line InputError when it cannot be reached."""
    distributed = _require()
    where = os.fspath(scheduler)
    try:
        if os.path.isfile(where):
            return distributed.Client(scheduler_file=where, timeout=f"{timeout_s}s")
        return distributed.Client(where, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {public_url(where)}: cannot connect ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no answer'})") from None


def _combine_many(*parts: Any) -> Any:
    total = parts[0]
    for part in parts[1:]:
        total = total.combine(part)
    return total


def run_on_cluster(client: Any, function: Callable[..., Any], items: Sequence[Any], *args: Any,
                   failed: Callable[[Any, str], Any], empty: Any, label: str = "task",
                   split: Callable[[Any], list[Any]] | None = None,
                   on_started: Callable[[], None] | None = None,
                   on_done: Callable[[Any], None] | None = None) -> tuple[Any, list[str]]:
    """combine() of `function(item, *args)` over all items, computed on the cluster; returns the
    total and notes (items that failed and why). `split(item)` gives the pieces an item whose
    workers died is retried as, one at a time (default: the item itself)."""
    distributed = _require()
    run = uuid.uuid4().hex[:8]
    keys = [f"codecdoctor-{label}-{i:06d}-{run}" for i in range(len(items))]
    futures = client.map(function, items, *[[a] * len(items) for a in args], key=keys, pure=False,
                         retries=RETRIES)
    if on_started is not None:
        on_started()
    index = {f.key: i for i, f in enumerate(futures)}
    good: list[tuple[int, Any]] = []
    fallbacks: list[Any] = []
    notes: list[str] = []
    second_chance: list[int] = []
    for future in distributed.as_completed(futures):
        i = index[future.key]
        if future.status == "finished":
            good.append((i, future))
        elif isinstance(future.exception(), distributed.KilledWorker):
            second_chance.append(i)
            continue
        else:
            exc = future.exception()
            reason = f"failed on the Dask cluster: {type(exc).__name__}: {str(exc).strip()}"
            fallbacks.append(failed(items[i], reason))
            notes.append(f"{label} {i}: {reason}")
        if on_done is not None:
            on_done(items[i])
    # A task is marked KilledWorker also when it only shared a worker with one that crashed it:
    # each (piece of it) gets one more run on its own, so only what really kills workers is lost.
    for i in sorted(second_chance):
        for j, piece in enumerate(split(items[i]) if split is not None else [items[i]]):
            future = client.submit(function, piece, *args, key=f"codecdoctor-{label}-solo-{i:06d}-{j:04d}-{run}",
                                   pure=False, retries=RETRIES)
            distributed.wait(future)
            if future.status == "finished":
                good.append((i, future))
                continue
            exc = future.exception()
            reason = ("the Dask workers running it died repeatedly (KilledWorker: out of memory or a crash "
                      "while reading it)" if isinstance(exc, distributed.KilledWorker)
                      else f"failed on the Dask cluster: {type(exc).__name__}: {str(exc).strip()}")
            fallbacks.append(failed(piece, reason))
            notes.append(f"{label} {i}.{j}: {reason}")
        if on_done is not None:
            on_done(items[i])
    level = [f for _, f in sorted(good, key=lambda pair: pair[0])]
    depth = 0
    while len(level) > 1:  # tree reduction where the data already is
        depth += 1
        level = [client.submit(_combine_many, *level[k:k + COMBINE_FAN_IN], pure=False,
                               key=f"codecdoctor-{label}-combine-{depth}-{k:06d}-{run}")
                 for k in range(0, len(level), COMBINE_FAN_IN)]
    total = level[0].result() if level else empty
    for part in fallbacks:
        total = total.combine(part)
    return total, notes
