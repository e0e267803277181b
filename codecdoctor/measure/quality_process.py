"""STOI, ESTOI and PESQ in a process of their own, for the compare of a long pair.

Both packages cost the streamed passes beside them more than their own run time when they share
the interpreter:
- the `pesq` package runs its C code without releasing the GIL: a 20 s segment holds it for
  0.3-0.5 s (measured: another thread's numpy calls stalled 0.49 s during one wide-band score);
- `pystoi` imports scipy.signal, ~1.2 s of Python bytecode that holds the GIL in pass 1, and its
  frame loops hold it again while a segment is scored.
An hour-long compare's passes are numpy calls dispatched from Python threads, so each of these
stalls the whole measurement. `QualityProcess` answers the packages' own calls,
`pesq(rate, ref, deg, mode)` and `stoi(ref, deg, rate, extended)`, from a child interpreter over a
pipe: the child imports both while pass 1 runs, and the passes keep their cores.

The pipe carries raw samples after a fixed header and answers with one JSON line, so nothing is
unpickled. PESQ gets float32 (what the accumulator passes the package), STOI float64 (likewise), so
a score is the same number in either process. A warning pystoi raises in the child (too few speech
frames) is raised again here with its message. A child that cannot start, lacks a package or dies
midway is replaced by the package in this process: the scores are the same either way, only the
stall comes back.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from typing import Any

import numpy as np

# operation, rate, mode (PESQ: 0 wide band, 1 narrow band; STOI: 1 extended), reference samples,
# degraded samples
_HEADER = struct.Struct("<iiiqq")
_PESQ, _STOI = 0, 1
_MODES = ("wb", "nb")
# the sample type each operation's arrays travel in
_DTYPES = {_PESQ: "<f4", _STOI: "<f8"}


class QualityProcess:
    """A child process answering pesq.pesq and pystoi.stoi calls; start it early, it imports the
    packages meanwhile."""

    def __init__(self) -> None:
        self._child: subprocess.Popen | None = None
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from codecdoctor.measure.quality_process import serve; serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            self._child = None

    def pesq(self, rate: int, ref: np.ndarray, deg: np.ndarray, mode: str) -> float:
        reply = self._call(_PESQ, int(rate), _MODES.index(mode), ref, deg)
        if reply is None:
            import pesq as package

            return float(package.pesq(rate, ref, deg, mode))
        return float(reply["value"])

    def stoi(self, ref: np.ndarray, deg: np.ndarray, rate: int, extended: bool = False) -> float:
        reply = self._call(_STOI, int(rate), int(bool(extended)), ref, deg)
        if reply is None:
            from pystoi import stoi as package_stoi

            return float(package_stoi(ref, deg, rate, extended=extended))
        for message in reply.get("warnings", []):
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return float(reply["value"])

    def _call(self, operation: int, rate: int, mode: int, ref: np.ndarray, deg: np.ndarray) -> dict | None:
        """The child's reply, or None when there is no child (any more): score in this process."""
        if self._child is None:
            return None
        try:
            reply = self._ask(operation, rate, mode, ref, deg)
        except (OSError, ValueError, EOFError):   # the child is gone: score here from now on
            self.close()
            return None
        if "value" in reply:
            return reply
        if reply.get("error") == "ImportError":   # the child lacks the package this process has
            return None
        # the package's own exception, by name (callers report its class name and message)
        raise type(str(reply.get("error", "QualityError")), (Exception,), {})(str(reply.get("message", "")))

    def _ask(self, operation: int, rate: int, mode: int, ref: np.ndarray, deg: np.ndarray) -> dict:
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        r = np.ascontiguousarray(ref, dtype=_DTYPES[operation])
        d = np.ascontiguousarray(deg, dtype=_DTYPES[operation])
        child.stdin.write(_HEADER.pack(operation, rate, mode, r.size, d.size) + r.tobytes() + d.tobytes())
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise EOFError("the quality process ended")
        return json.loads(line)

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


def _packages() -> dict[int, Any]:
    """What the child can answer: the functions of the installed packages, by operation."""
    found: dict[int, Any] = {}
    try:
        import pesq

        found[_PESQ] = lambda rate, ref, deg, mode: pesq.pesq(rate, ref, deg, _MODES[mode])
    except ImportError:
        pass
    try:
        from pystoi import stoi

        found[_STOI] = lambda rate, ref, deg, mode: stoi(ref, deg, rate, extended=bool(mode))
    except ImportError:
        pass
    return found


def serve() -> None:
    """The child's loop: a request in, one JSON line out, until the input ends."""
    import os

    # the answers get a descriptor of their own; anything the C code prints goes to stderr instead
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    packages = _packages()

    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        operation, rate, mode, n_ref, n_deg = _HEADER.unpack(header)
        dtype = np.dtype(_DTYPES.get(operation, "<f4"))
        try:
            ref = np.frombuffer(_read_exactly(requests, dtype.itemsize * n_ref), dtype=dtype)
            deg = np.frombuffer(_read_exactly(requests, dtype.itemsize * n_deg), dtype=dtype)
        except EOFError:
            return
        reply: dict[str, Any]
        if operation not in packages:
            reply = {"error": "ImportError", "message": f"operation {operation} has no package in the child"}
        else:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    value = float(packages[operation](rate, ref, deg, mode))
                reply = {"value": value, "warnings": [str(w.message) for w in caught]}
            except Exception as exc:  # noqa: BLE001 - NoUtterancesError, BufferTooShortError, ...: passed on by name
                reply = {"error": type(exc).__name__, "message": str(exc)}
        answers.write((json.dumps(reply) + "\n").encode())
        answers.flush()
