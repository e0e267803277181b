"""Library side of `codecdoctor watch`: run the user's own, unmodified training script in this
process (as `python -m cProfile` does) with the live monitor attached through PyTorch's global hooks
(`monitor/tap.py`), and return a Report on every ending.

    result = watch(WatchRequest(script="train_codec.py", args=["--epochs", "3"]))
    result.report        # findings T601-T611, curves, validations; measurements.script / exit_code
    result.exit_code     # the script's own exit status

The script runs as `python` would run it (`core/as_main.py`: its own argv, sys.path[0], `__main__`,
`__spec__`, compiled without codecdoctor's `from __future__` flags), so its own `model.py` / `model/`,
argbind, hydra and spawn DataLoader workers behave as under `python`. Its output is not captured.
Endings: normal exit, `sys.exit(n)`, an exception (its traceback is printed as Python prints it),
Ctrl-C, SIGTERM (turned into an exception so the report is still built), or a live check that stopped
the run: one line naming the finding, no traceback (the stop is a BaseException, so neither the
script's `except Exception` nor hydra's error printer takes it). Under torchrun every rank runs its
own watch.
"""
from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codecdoctor.core.as_main import MainTarget, Terminated, as_main, resolve_target, run_main
from codecdoctor.core.errors import CheckFailed, InputError
from codecdoctor.core.findings import Report
from codecdoctor.monitor.config import CHECK_LEVELS

# nonfinite: stop on NaN/Inf, report everything else (the default, as in `train`); strict: stop on
# any error finding; warn: never stop
CHECK_MODES = tuple(CHECK_LEVELS)
SIGINT_EXIT, SIGTERM_EXIT = 130, 143  # 128 + signal number, what a shell reports


@dataclass
class WatchRequest:
    script: str | None = None
    module: str | None = None
    args: list[str] = field(default_factory=list)
    sample_rate: int = 16000
    checks: str = "nonfinite"
    output_bound: float | None = None
    read_every: int = 25
    event_log: str | None = None
    tensorboard: str | None = None


@dataclass
class WatchResult:
    report: Report
    exit_code: int  # the script's own
    ending: str  # "exit", "exception", "check", "sigint", "sigterm"


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): Python prints it and exits 1
    return 1


def _print_script_traceback(exc: BaseException, script_file: str) -> None:
    """The traceback as `python script.py` would print it: from the script's first frame on."""
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script_file:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__, file=sys.stderr)


def _stop_message(findings: list) -> str:
    """One line naming the finding that stopped the script (the first, and how many more)."""
    if not findings:
        return "codecdoctor watch: a live check stopped the script"
    first = findings[0]
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    subject = f" [{first.subject}]" if first.subject else ""
    return f"codecdoctor watch: stopped the script: {first.id}{subject}: {first.message}{more}"


def _run_script(target: MainTarget, args: list[str], tap: Any) -> tuple[int, str]:
    """Run the target as __main__; return (exit code, ending) as `python` would have exited."""
    from codecdoctor.monitor.tap import ScriptStopped

    exit_code, ending = 0, "exit"
    try:
        with as_main(target, args) as namespace:
            run_main(target, namespace)
    except SystemExit as exc:
        exit_code = _exit_code(exc)
    except (ScriptStopped, CheckFailed) as exc:
        exit_code, ending = 1, "check"
        print(_stop_message(exc.findings), file=sys.stderr)
    except KeyboardInterrupt as exc:
        exit_code, ending = SIGINT_EXIT, "sigint"
        _print_script_traceback(exc, target.file)
    except Terminated:
        exit_code, ending = SIGTERM_EXIT, "sigterm"
        print("codecdoctor watch: the script was terminated (SIGTERM)", file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001 - the script's own failure: report it, keep the report
        exit_code, ending = 1, "exception"
        _print_script_traceback(exc, target.file)
    if tap.stopped is not None and ending in ("exit", "exception"):
        ending = "check"  # the script (or its framework) caught the stop and exited on its own terms
    return exit_code, ending


def rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def rank_path(path: str | Path | None) -> str | Path | None:
    """Under torchrun, rank N > 0 writes `report.rankN.html` next to rank 0's `report.html`."""
    rank_number, world = rank()
    if path is None or str(path).lower() in ("-", "none") or world <= 1 or rank_number == 0:
        return path
    p = Path(path)
    return p.with_name(f"{p.stem}.rank{rank_number}{p.suffix}")


def _make_monitor_factory(request: WatchRequest, writer: Any):
    from codecdoctor.monitor import Monitor, MonitorConfig

    event_log = rank_path(request.event_log) if request.event_log else None
    try:
        config = MonitorConfig.for_checks(request.checks, read_every=request.read_every, event_log=event_log)
    except ValueError as exc:  # a library caller's request: the CLI's options already hold these bounds
        raise InputError(str(exc)) from None

    def make(model, bound):
        return Monitor(model, request.sample_rate, config=replace(config, output_bound=bound), writer=writer)

    return make


def _tensorboard_writer(directory: str | None):
    if not directory:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise InputError(f"--tensorboard needs the tensorboard package ({exc}); pip install tensorboard") from None
    rank_number, world = rank()
    return SummaryWriter(str(Path(directory) / f"rank{rank_number}") if world > 1 else directory)


def watch(request: WatchRequest) -> WatchResult:
    """Run the script under the live checks; never raises for what the script does."""
    if request.checks not in CHECK_MODES:
        raise InputError(f"--checks must be one of {', '.join(CHECK_MODES)}, got {request.checks!r}")
    target = resolve_target(request.script, request.module)
    writer = _tensorboard_writer(request.tensorboard)
    from codecdoctor.monitor.tap import ModelTap

    tap = ModelTap(_make_monitor_factory(request, writer), output_bound=request.output_bound,
                   stop_script=True).install()
    try:
        exit_code, ending = _run_script(target, request.args, tap)
    finally:
        tap.remove()
    report = tap.finish("watch")
    if writer is not None:
        writer.close()
    report.args = {"script": target.argv0 if target.kind == "script" else None,
                   "module": target.name if target.kind == "module" else None, "args": list(request.args),
                   "checks": request.checks, "sample_rate": request.sample_rate, "output_bound": request.output_bound,
                   "read_every": request.read_every}
    model = tap.model
    report.measurements.update({
        "script": target.argv0, "exit_code": exit_code, "ending": ending,
        "model": None if model is None else {"class": type(getattr(model, "module", model)).__name__,
                                             "parameters": sum(p.numel() for p in model.parameters())},
        "output_bound": tap.monitor.output_bound if tap.monitor is not None else request.output_bound,
        "output_bound_source": tap.bound_source or None,
        "training_forwards": tap.training_forwards, "validation_forwards": tap.validation_forwards,
        "optimizer_steps": tap.optimizer_steps,
        "history": [{"step": v["step"], "val_snr_db": v["snr_db"], "val_rms_ratio_db": v["rms_ratio_db"],
                     "pairs": v["pairs"]} for v in report.measurements.get("validation", [])],
    })
    if tap.stopped is not None:
        report.notes.append(f"the script was stopped by a live check ({', '.join(f.id for f in tap.stop_findings())})")
    elif ending == "sigint":
        report.notes.append("the script was interrupted (Ctrl-C); the report covers the steps before it")
    elif ending == "sigterm":
        report.notes.append("the script was terminated (SIGTERM); the report covers the steps before it")
    elif ending == "exception":
        report.notes.append("the script raised an exception (its traceback is above); the report covers the steps before it")
    if model is not None:
        from codecdoctor.monitor.structure import structure_line

        bound = report.measurements["output_bound"]
        bound_text = f"±{bound:g}, {tap.bound_source}" if bound is not None else f"none, {tap.bound_source}"
        report.notes.append(structure_line(report.measurements.get("structure") or {}, bound_text))
    return WatchResult(report=report, exit_code=exit_code, ending=ending)


def final_exit_code(result: WatchResult, fail_on_reached: bool) -> int:
    """The script's own exit status; 1 when it exited 0 but findings reach --fail-on."""
    if result.exit_code != 0:
        return result.exit_code
    return 1 if fail_on_reached else 0
