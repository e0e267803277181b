"""Blocks of a pass, and the one helper thread that measures a block while the next is read."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class Overlap:
    """The pass's one helper thread: it runs the work handed to it with `later` (the unaligned STFT,
    chunk and segmental-SNR sums, about half of a pass), block after block in order, while the
    caller reads the next block and adds the pair sums; numpy releases the GIL in its loops, so
    both cores work. The helper gets arrays only: the sources are read on the caller's thread. A
    pass of one block has no thread: a hand-off only costs there, and folders of short pairs are
    spread over worker processes instead."""

    def __init__(self, samples: int, block: int):
        self.thread = ThreadPoolExecutor(max_workers=1) if samples > block else None
        self.pending: list[Future] = []

    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """fn(*args) on the helper thread after what is queued there (at once without a thread)."""
        if self.thread is None:
            fn(*args)
            return
        self.pending.append(self.thread.submit(fn, *args))
        # at most two blocks' work waits (memory of a few blocks); a failed block's exception is raised here
        while self.pending and (len(self.pending) > 2 or self.pending[0].done()):
            self.pending.pop(0).result()

    def finish(self) -> None:
        """Wait for the work handed over (its exceptions are raised here) and end the thread."""
        for future in self.pending:
            future.result()
        if self.thread is not None:
            self.thread.shutdown()


def block_spans(total: int, block: int):
    for start in range(0, total, block):
        yield start, min(start + block, total)
