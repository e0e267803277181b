"""JSON view of a report (contract: schema_version 1, see README)."""
from __future__ import annotations

import json
from pathlib import Path

from codecdoctor.core.findings import Report


def dumps(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)


def write(report: Report, path: Path) -> None:
    from codecdoctor.core.io import atomic_write_text

    atomic_write_text(path, dumps(report) + "\n")

