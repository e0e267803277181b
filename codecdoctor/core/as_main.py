"""Run a script or a module in this process exactly as `python script.py` / `python -m module` would,
and put the process back afterwards (`codecdoctor watch` runs the user's training script this way).

    target = resolve_target(script="train.py")           # or module="pkg.train"; InputError if it cannot run
    with as_main(target, ["--epochs", "3"]) as namespace:
        run_main(target, namespace)                       # the script's exceptions propagate

What `python` sets up, `as_main` sets up the same way:
- the code is compiled with `dont_inherit=True`, so no `from __future__` of codecdoctor's own leaks
  into the script (annotations stay real objects for argbind / `typing.get_type_hints`);
- `__name__ == "__main__"`; `__file__` (absolute); `__spec__` (None for a path, the module's spec for
  `-m`, which multiprocessing's spawn start method reads); `__loader__`, `__package__`, `__cached__`;
- `sys.argv` (`argv[0]` as given for a path, the module's file for `-m`), `sys.path[0]` (the script's
  folder, symlinks resolved; the working directory for `-m`);
- `sys.modules["__main__"]` is the script's namespace, so classes defined in the script pickle by
  reference (spawn DataLoader workers, `multiprocessing`, `torch.save` of such objects);
- Python's own Ctrl-C behaviour (KeyboardInterrupt), whatever handler the host installed; SIGTERM
  unwinds the script as `Terminated` so its `finally` blocks and the host's report still run.
On the way out the host's argv, sys.path, `__main__`, signal handlers and working directory (hydra
and others change it) come back.
"""
from __future__ import annotations

import builtins
import contextlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from codecdoctor.core.errors import InputError


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so the script unwinds (its finally blocks run) and the
    host goes on. A BaseException, like KeyboardInterrupt: `except Exception` in the script does not
    swallow it."""


@dataclass(frozen=True)
class MainTarget:
    kind: str  # "script" or "module"
    name: str  # the path as given, or the module's dotted name (`pkg.__main__` for a package)
    file: str  # absolute path of the code's file (a module's origin)
    argv0: str  # what `python` puts in sys.argv[0]
    path0: str  # what `python` puts in sys.path[0]
    code: types.CodeType
    spec: importlib.machinery.ModuleSpec | None = None


def resolve_target(script: str | None = None, module: str | None = None) -> MainTarget:
    """Find and compile the script or module, so a missing file or a syntax error is a one-line
    InputError before anything runs."""
    if bool(script) == bool(module):
        raise InputError("give the script to run after `--` (codecdoctor watch -- train.py ...) or -m MODULE")
    return _resolve_script(script) if script else _resolve_module(module)


def _resolve_script(script: str) -> MainTarget:
    path = Path(script)
    if not path.is_file():
        raise InputError(f"script not found: {script}")
    file = os.path.abspath(script)
    try:
        code = compile(path.read_bytes(), file, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise InputError(f"{script}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read script {script}: {exc}") from None
    # python puts the script's own folder (symlinks resolved) first on sys.path
    return MainTarget("script", script, file, script, str(path.resolve().parent), code)


def _find_spec_from(cwd: str, name: str) -> importlib.machinery.ModuleSpec | None:
    sys.path.insert(0, cwd)  # as `python -m` does, so the module is found where the user stands
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise InputError(f"module {name!r} cannot be found: {exc}") from None
    finally:
        sys.path.pop(0)


def _resolve_module(name: str) -> MainTarget:
    cwd = os.getcwd()
    spec = _find_spec_from(cwd, name)
    if spec is None:
        raise InputError(f"no module named {name!r} (from {cwd})")
    if spec.submodule_search_locations is not None:  # a package: run its __main__
        spec = _find_spec_from(cwd, f"{name}.__main__")
        if spec is None:
            raise InputError(f"{name!r} is a package without a __main__ module")
    try:
        code = spec.loader.get_code(spec.name) if spec.loader is not None else None
    except SyntaxError as exc:
        raise InputError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ImportError as exc:
        raise InputError(f"module {spec.name!r} cannot be read: {exc}") from None
    if code is None:
        raise InputError(f"module {spec.name!r} has no code to run")
    origin = spec.origin or spec.name
    return MainTarget("module", spec.name, origin, origin, cwd, code, spec)


def _main_module(target: MainTarget) -> types.ModuleType:
    main = types.ModuleType("__main__")
    if target.kind == "script":
        loader = importlib.machinery.SourceFileLoader("__main__", target.file)
        names = {"__file__": target.file, "__spec__": None, "__package__": None, "__cached__": None}
    else:
        spec = target.spec
        loader = spec.loader
        names = {"__file__": spec.origin, "__spec__": spec, "__package__": spec.parent,
                 "__cached__": spec.cached}
    main.__dict__.update(names, __builtins__=builtins, __loader__=loader)
    return main


def _on_sigterm(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _python_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
        yield
        return
    saved_term = signal.signal(signal.SIGTERM, _on_sigterm)
    # the script starts with Python's own Ctrl-C behaviour, whatever the host process installed
    saved_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved_term if saved_term is not None else signal.SIG_DFL)
        signal.signal(signal.SIGINT, saved_int if saved_int is not None else signal.default_int_handler)


@contextlib.contextmanager
def as_main(target: MainTarget, args: list[str]) -> Iterator[dict]:
    """Make the process look as `python` makes it for `target` with `args`; yield the namespace the
    code runs in; put the host's state back on the way out, whatever the code did."""
    saved_argv, saved_path, saved_main = list(sys.argv), list(sys.path), sys.modules.get("__main__")
    saved_cwd = os.getcwd()
    main = _main_module(target)
    sys.argv = [target.argv0, *args]
    if sys.path:
        sys.path[0] = target.path0
    else:
        sys.path.append(target.path0)
    sys.modules["__main__"] = main
    try:
        with _python_signals():
            yield main.__dict__
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.argv = saved_argv
        sys.path[:] = saved_path  # the same list object: modules holding a reference see it too
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        with contextlib.suppress(OSError):  # the folder may be gone; the host then stays where it is
            os.chdir(saved_cwd)


def run_main(target: MainTarget, namespace: dict) -> None:
    """Execute the target's code in the namespace `as_main` gave; its exceptions propagate."""
    exec(target.code, namespace)
