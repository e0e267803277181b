"""JSON view of a report (contract: schema_version 1, see docs/JSON.md).

Indented for reading, except that each element of a long list of records (a folder's pairs or
files) is written on one line of its own: one line per pair reads and greps well, and those lines
go through the json module's C encoder. The indenting encoder is pure Python (CPython uses its C
encoder only without `indent`): a folder of 360 pairs took 0.09 s to write that way, as long as
the rest of the command's reports together.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codecdoctor.core.findings import Report

# Lists longer than this whose elements are objects or lists get one line per element.
ROW_LIST_MIN = 8
INDENT = "  "


def dumps(report: Report) -> str:
    return _dump(report.to_dict(), 0)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _dump(value: Any, level: int) -> str:
    pad, inner = INDENT * level, INDENT * (level + 1)
    if isinstance(value, dict) and value:
        body = ",\n".join(f"{inner}{_compact(str(key))}: {_dump(item, level + 1)}" for key, item in value.items())
        return "{\n" + body + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        if len(value) >= ROW_LIST_MIN:
            body = ",\n".join(inner + _compact(item) for item in value)
        else:
            body = ",\n".join(inner + _dump(item, level + 1) for item in value)
        return "[\n" + body + "\n" + pad + "]"
    return _compact(value)


def write(report: Report, path: Path) -> None:
    from codecdoctor.core.io import atomic_write_text

    atomic_write_text(path, dumps(report) + "\n")
