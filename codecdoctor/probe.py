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


def probe(target: Any, *, model: str | None = None, unsafe_load: bool = False) -> Report:
    """Probe a codec. `target` is a checkpoint path (this project's codec builds automatically; a
    foreign one needs `model="pkg.module:factory"`) or an adapter with encode/decode (see
    codecdoctor.adapters). Returns a Report with `measurements.probes`, findings C210-C215 and
    the level, magnitude and impulse plots."""
    from codecdoctor.core.errors import InputError
    from codecdoctor.measure.adapters import build_adapter

    report = Report(command="probe", args={"target": str(target) if isinstance(target, (str, Path)) else
                                           type(target).__name__, "model": model})
    if isinstance(target, (str, Path)):
        from codecdoctor.measure.checkpoint import load_checkpoint_file

        info = load_checkpoint_file(target, unsafe_load=unsafe_load)
        if not info.readable:
            raise InputError(f"cannot probe {Path(target).name}: {info.error}")
        adapter, note = build_adapter(info, model)
        if adapter is None:
            raise InputError(f"cannot probe {Path(target).name}: {note}")
        report.measurements["format"] = info.format
    else:
        adapter = target
    m = measure_probes(adapter)
    run = run_probe_checks(m)
    report.add(run.findings, run.checks_run)
    report.measurements["probes"] = m
    return report
