"""The live monitor: on-device statistics read back on a schedule, judged by checks/training.py."""
from __future__ import annotations

from importlib import import_module
from typing import Any

from codecdoctor.monitor.config import MonitorConfig

__all__ = ["Monitor", "MonitorConfig"]


def __getattr__(name: str) -> Any:
    # the Monitor brings torch; its config does not, so train / watch read the check levels without it
    if name == "Monitor":
        return import_module("codecdoctor.monitor.monitor").Monitor
    raise AttributeError(f"module 'codecdoctor.monitor' has no attribute {name!r}")
