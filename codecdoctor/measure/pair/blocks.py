"""Blocks of a pass, and the one thread that overlaps reading them with measuring them."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator


class Overlap:
    """The pass's one worker thread: it reads the next block while the caller sums this one, and
    runs the work handed to it with `later` (block by block, in order) between reads. soundfile and
    numpy release the GIL, so both cores work. A pass of one block has no thread: a hand-off only
    costs there, and folders of short pairs are spread over worker processes instead. While
    `blocks` runs, only this thread touches the sources, so a file handle is never shared."""

    def __init__(self, samples: int, block: int):
        self.thread = ThreadPoolExecutor(max_workers=1) if samples > block else None
        self.pending: list[Future] = []

    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """fn(*args) on the thread after what is queued there (at once without a thread)."""
        if self.thread is None:
            fn(*args)
            return
        self.pending.append(self.thread.submit(fn, *args))
        # at most two blocks' work waits (memory of a few blocks); a failed block's exception is raised here
        while self.pending and (len(self.pending) > 2 or self.pending[0].done()):
            self.pending.pop(0).result()

    def blocks(self, items: Iterable[Any], read: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        """(item, read(item)) for each item, the next item read on the thread meanwhile."""
        items = list(items)
        if self.thread is None or len(items) <= 1:
            yield from ((item, read(item)) for item in items)
            return
        reading = self.thread.submit(read, items[0])
        for index, item in enumerate(items):
            data = reading.result()
            if index + 1 < len(items):
                reading = self.thread.submit(read, items[index + 1])
            yield item, data

    def finish(self) -> None:
        """Wait for the work handed over (its exceptions are raised here) and end the thread."""
        for future in self.pending:
            future.result()
        if self.thread is not None:
            self.thread.shutdown()


def block_spans(total: int, block: int):
    for start in range(0, total, block):
        yield start, min(start + block, total)
