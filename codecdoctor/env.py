"""`check_environment`: measure the software environment and judge it (E701-E703).
"""
from __future__ import annotations

from codecdoctor.core.findings import Report
from codecdoctor.measure.environment import measure_environment


def check_environment(run_autocast: bool = True) -> Report:
    """Measure the environment and judge it (E701-E703)."""
    from codecdoctor.core.registry import run_checks

    measurements = measure_environment(run_autocast=run_autocast)
    report = Report(command="env", args={"autocast": run_autocast}, measurements={"environment": measurements})
    result = run_checks("environment", measurements)
    report.add(result.findings, result.checks_run, result.notes)
    return report
