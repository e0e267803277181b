"""The live monitor: on-device statistics read back on a schedule, judged by checks/training.py."""

from codecdoctor.monitor.config import MonitorConfig
from codecdoctor.monitor.monitor import Monitor

__all__ = ["Monitor", "MonitorConfig"]
