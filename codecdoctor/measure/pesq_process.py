"""PESQ in a process of its own, for the compare of a long pair.

The `pesq` package runs its C code without releasing the GIL: a 20 s segment holds it for 0.3-0.5 s
(measured: another thread's numpy calls stalled 0.49 s during one wide-band score). Beside the
streamed passes of an hour-long compare, which are numpy calls dispatched from Python threads, that
stalls the whole measurement several times. `PesqProcess` has the same `pesq(rate, ref, deg, mode)`
call as the package and runs it in a child interpreter over a pipe: the passes keep their cores.

The pipe carries raw float32 samples after a fixed header and answers with one JSON line, so nothing
is unpickled. A child that cannot start, lacks the package or dies midway is replaced by the package
in this process: the scores are the same either way (the child calls the same function on the same
float32 arrays), only the stall comes back.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from typing import Any

import numpy as np

# rate, mode (0 wide band, 1 narrow band), reference samples, degraded samples
_HEADER = struct.Struct("<iiqq")
_MODES = ("wb", "nb")


class PesqProcess:
    """A child process answering pesq.pesq calls; start it early, it imports the package meanwhile."""

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from codecdoctor.measure.pesq_process import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            self._child = None

    def pesq(self, rate: int, ref: np.ndarray, deg: np.ndarray, mode: str) -> float:
        if self._child is not None:
            try:
                return self._ask(int(rate), ref, deg, mode)
            except (OSError, ValueError, EOFError):   # the child is gone: score here from now on
                self.close()
        import pesq as package

        return float(package.pesq(rate, ref, deg, mode))

    def _ask(self, rate: int, ref: np.ndarray, deg: np.ndarray, mode: str) -> float:
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        r = np.ascontiguousarray(ref, dtype="<f4")
        d = np.ascontiguousarray(deg, dtype="<f4")
        child.stdin.write(_HEADER.pack(rate, _MODES.index(mode), r.size, d.size) + r.tobytes() + d.tobytes())
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise EOFError("the PESQ process ended")
        reply = json.loads(line)
        if "value" in reply:
            return float(reply["value"])
        # the package's own exception, by name (callers report its class name and message)
        raise type(str(reply.get("error", "PesqError")), (Exception,), {})(str(reply.get("message", "")))

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            if child.stdin is not None:
                child.stdin.close()   # end of input: the child returns
            child.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
        finally:
            if child.stdout is not None:
                child.stdout.close()


def _read_exactly(stream: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            raise EOFError
        data += piece
    return bytes(data)


def serve() -> None:
    """The child's loop: a request in, one JSON line out, until the input ends."""
    import os

    # the answers get a descriptor of their own; anything the C code prints goes to stderr instead
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    import pesq as package

    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        rate, mode, n_ref, n_deg = _HEADER.unpack(header)
        try:
            ref = np.frombuffer(_read_exactly(requests, 4 * n_ref), dtype="<f4")
            deg = np.frombuffer(_read_exactly(requests, 4 * n_deg), dtype="<f4")
        except EOFError:
            return
        try:
            reply: dict[str, Any] = {"value": float(package.pesq(rate, ref, deg, _MODES[mode]))}
        except Exception as exc:  # noqa: BLE001 - NoUtterancesError, BufferTooShortError, ...: passed on by name
            reply = {"error": type(exc).__name__, "message": str(exc)}
        answers.write((json.dumps(reply) + "\n").encode())
        answers.flush()
