"""env's render-time sections: which autocast dtypes really ran on each device."""
from __future__ import annotations

from typing import Any

from codecdoctor.report.figures import view
from codecdoctor.report.sections import Table


def build(report: Any, *, figures: bool) -> list[Any]:
    env = report.measurements.get("environment")
    if env is None:
        return []
    rows = [[r.device, r.dtype, "yes" if r.works else "no", r.detail] for r in map(view, view(env).autocast)]
    return [Table("Autocast probes", ["device", "dtype", "works", "detail"], rows)]


def key_numbers(report: Any) -> list[tuple[str, str]]:
    env = report.measurements.get("environment")
    if env is None:
        return []
    env = view(env)
    versions = env.versions if isinstance(env.versions, dict) else vars(env.versions)
    keys = [(name, str(versions.get(name) or "not importable")) for name in ("torch", "torchaudio")]
    keys.append(("CUDA", env.cuda_version if env.cuda_available else "not available"))
    return keys
