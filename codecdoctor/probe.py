"""`probe`: run the bench-analyzer probes on a checkpoint and judge them (C210-C216).

The measurements are `codecdoctor.measure.probes`; the figures `codecdoctor.report.figures.probe`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from codecdoctor.core.findings import Report
from codecdoctor.measure.probes import ProbeMeasurements, measure_probes


def run_probe_checks(m: ProbeMeasurements):
    from codecdoctor.core.registry import run_checks

    return run_checks("checkpoint", m, level="probe")


def probe(target: Any, *, model: str | None = None, model_kwargs: dict | str | None = None,
          unsafe_load: bool = False) -> Report:
    """Probe a codec. `target` is a checkpoint path (this project's codec builds automatically; a
    foreign one needs `model="path/to/file.py:Name"` or `"pkg.module:Name"`, a class or a factory,
    see codecdoctor.measure.adapters) or an adapter with encode/decode. Returns a Report with
    `measurements.probes`, findings C210-C216 and C218, and the level, magnitude and impulse plots.
    With `model`, weights that do not fit it are C217 and the probes do not run."""
    from codecdoctor.core.errors import InputError
    from codecdoctor.measure.adapters import build_adapter

    report = Report(command="probe", args={"target": str(target) if isinstance(target, (str, Path)) else
                                           type(target).__name__, "model": model, "model_kwargs": model_kwargs})
    if isinstance(target, (str, Path)):
        from codecdoctor.core.registry import run_checks
        from codecdoctor.measure.checkpoint import load_checkpoint_file

        info = load_checkpoint_file(target, unsafe_load=unsafe_load)
        if not info.readable:
            raise InputError(f"cannot probe {Path(target).name}: {info.error}")
        adapter, note, load = build_adapter(info, model, model_kwargs)
        if adapter is None:
            raise InputError(f"cannot probe {Path(target).name}: {note}")
        report.measurements["format"] = info.format
        report.notes.extend([*info.notes, note])
        if load is not None:
            report.measurements["model_load"] = load
            run = run_checks("checkpoint", load, level="load")
            report.add(run.findings, run.checks_run, run.notes)
            if load.checked and not load.clean:
                report.notes.append("probes not run: the weights do not fit the model (C217)")
                return report
    else:
        adapter = target
    m = measure_probes(adapter)
    run = run_probe_checks(m)
    report.add(run.findings, run.checks_run, run.notes)
    report.measurements["probes"] = m
    return report
