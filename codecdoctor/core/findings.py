"""Findings and reports: the one data model every command produces and every renderer reads."""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

SCHEMA_VERSION = 1


class Severity(enum.IntEnum):
    """Ordered so that `max()` gives the worst; the names are the JSON spelling."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: "str | Severity") -> "Severity":
        if isinstance(text, Severity):
            return text
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {names})") from None


@dataclass
class Finding:
    """One judged problem: what was measured, the likely cause and the fix, with numbers."""

    id: str
    severity: Severity
    title: str
    message: str
    subject: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.label,
            "title": self.title,
            "message": self.message,
            "subject": self.subject,
            "evidence": jsonable(self.evidence),
            "cause": self.cause,
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        return cls(
            id=data["id"],
            severity=Severity.parse(data["severity"]),
            title=data.get("title", ""),
            message=data.get("message", ""),
            subject=data.get("subject"),
            evidence=dict(data.get("evidence") or {}),
            cause=data.get("cause"),
            fix=data.get("fix"),
        )


@dataclass
class Report:
    """Everything one command run produced. `sections` are extra tables/figures for the renderers
    (not part of the JSON contract; a command's standard figures are drawn at render time from
    `measurements` by codecdoctor.report.figures); `notes` state what could not be done and why.
    `fatal` is set when the command could not do its job (an unreadable checkpoint, a failed
    checkpoint write): the report is still written, then the command exits 2 with that line."""

    command: str
    args: dict[str, Any] = field(default_factory=dict)
    checks_run: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sections: list[Any] = field(default_factory=list)
    version: str = ""
    fatal: str | None = None

    def add(self, findings: Iterable[Finding], checks_run: Iterable[str] = (), notes: Iterable[str] = ()) -> None:
        """Add findings, the IDs of the checks that ran, and notes (a check's internal error)."""
        self.findings.extend(findings)
        self.notes.extend(note for note in notes if note not in self.notes)
        for check_id in checks_run:
            if check_id not in self.checks_run:
                self.checks_run.append(check_id)

    def summary(self) -> dict[str, int]:
        counts = {s.label: 0 for s in Severity}
        for f in self.findings:
            counts[f.severity.label] += 1
        return counts

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def sorted_findings(self) -> list[Finding]:
        """Worst first; within one severity the order the checks produced them (root causes first)."""
        return sorted(self.findings, key=lambda f: -int(f.severity))

    def exit_code(self, fail_on: Severity | str = Severity.ERROR) -> int:
        threshold = Severity.parse(fail_on)
        worst = self.worst()
        return 1 if worst is not None and worst >= threshold else 0

    def ids(self) -> list[str]:
        return [f.id for f in self.sorted_findings()]

    def to_dict(self) -> dict[str, Any]:
        from codecdoctor.core.version import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "codecdoctor",
            "version": self.version or __version__,
            "command": self.command,
            "args": jsonable(self.args),
            "checks_run": list(self.checks_run),
            "summary": self.summary(),
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "measurements": jsonable(self.measurements),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        if data.get("tool") != "codecdoctor" or "schema_version" not in data:
            raise ValueError("not a codecdoctor JSON report")
        if int(data["schema_version"]) > SCHEMA_VERSION:
            raise ValueError(f"report schema {data['schema_version']} is newer than this codecdoctor ({SCHEMA_VERSION})")
        return cls(
            command=data.get("command", ""),
            args=dict(data.get("args") or {}),
            checks_run=list(data.get("checks_run") or []),
            findings=[Finding.from_dict(f) for f in data.get("findings") or []],
            measurements=dict(data.get("measurements") or {}),
            notes=list(data.get("notes") or []),
            version=data.get("version", ""),
        )


def explained_earlier(findings: list[Finding]) -> list[int | None]:
    """For each finding, the index of the first earlier one of the same check with the same cause
    and fix (None for that first one, and for a finding with neither): a report of a folder holds
    one R304 per delayed pair, and its views print the two paragraphs once and point back."""
    first: dict[tuple[str, str | None, str | None], int] = {}
    out: list[int | None] = []
    for index, f in enumerate(findings):
        key = (f.id, f.cause, f.fix)
        out.append(first.get(key) if (f.cause or f.fix) else None)
        first.setdefault(key, index)
    return out


def _json_float(value: float) -> Any:
    return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))


def jsonable(value: Any) -> Any:
    """Convert measurements to strict JSON: dataclasses to dicts, numpy scalars to Python numbers,
    paths to strings, and non-finite floats to the strings "nan", "inf", "-inf" (strict JSON has no NaN)."""
    # plain Python values first, by exact type: a folder's report is ~100k of them, and the general
    # tests below (dataclass, enum, numpy) took most of its JSON writing time
    kind = type(value)
    if kind is float:
        return _json_float(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is list:
        return [jsonable(v) for v in value]
    if kind is dict:
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value, Severity) else value.value
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _json_float(value)
    # numpy / torch scalars and 0-d arrays
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return jsonable(value.item())
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return str(value)
