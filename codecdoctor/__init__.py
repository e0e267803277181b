"""codecdoctor: measured diagnostics for neural audio codec training.

The public functions are imported lazily so `codecdoctor --help` and `import codecdoctor` stay
fast and do not import torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from codecdoctor.errors import CheckFailed, InputError  # noqa: E402
from codecdoctor.findings import Finding, Report, Severity  # noqa: E402

_LAZY = {
    "audit_data": "codecdoctor.audit",
    "check_checkpoint": "codecdoctor.ckpt_check",
    "compare": "codecdoctor.compare",
    "probe": "codecdoctor.probes",
    "Monitor": "codecdoctor.monitor",
    "check_environment": "codecdoctor.environment",
}

__all__ = ["Finding", "Report", "Severity", "CheckFailed", "InputError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codecdoctor' has no attribute {name!r}")
