"""codecdoctor: measured diagnostics for neural audio codec training.

The public functions are imported lazily so `codecdoctor --help` and `import codecdoctor` stay
fast and do not import torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from codecdoctor.core.errors import CheckFailed, InputError
from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.core.version import __version__

_LAZY = {
    "audit_data": "codecdoctor.audit",
    "check_checkpoint": "codecdoctor.check_ckpt",
    "compare": "codecdoctor.compare",
    "probe": "codecdoctor.probe",
    "Monitor": "codecdoctor.monitor",
    "MonitorConfig": "codecdoctor.monitor",
    "check_environment": "codecdoctor.env",
}

__all__ = ["Finding", "Report", "Severity", "CheckFailed", "InputError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codecdoctor' has no attribute {name!r}")
