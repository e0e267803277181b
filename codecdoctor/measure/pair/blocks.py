"""Blocks of a pass and the one helper thread that overlaps them."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class InlineExecutor:
    """An executor that runs each task at once in the caller's thread: a pair of one block has no
    next block to overlap with, and a thread hand-off per pass only costs (folders of short pairs
    are spread over worker processes instead)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by result(), as a thread's would be
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        pass


def helper_for(samples: int, block: int) -> "ThreadPoolExecutor | InlineExecutor":
    """One helper thread for a pass over several blocks, none for a single block."""
    return ThreadPoolExecutor(max_workers=1) if samples > block else InlineExecutor()


def read_ahead(items: Any, read: Callable[[Any], Any]):
    """(item, read(item)) for each item, the next item's read running in a reader thread while the
    caller works on this one: soundfile releases the GIL while it reads and converts, and the two
    reads of a block took a third of a pass's main thread. Only that thread touches the sources
    while the pass runs (the helper threads get arrays), so a file handle is never shared."""
    items = list(items)
    if len(items) <= 1:
        for item in items:
            yield item, read(item)
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read, items[0])
        for index, item in enumerate(items):
            data = pending.result()
            if index + 1 < len(items):
                pending = reader.submit(read, items[index + 1])
            yield item, data


def block_spans(total: int, block: int):
    for start in range(0, total, block):
        yield start, min(start + block, total)
