"""Findings and reports: the one data model every command produces and every renderer reads."""
from __future__ import annotations

import dataclasses
import enum
import functools
import math
import re
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
    # A grouped finding (see group_findings) holds the findings it stands for; not part of the
    # finding's JSON: they are written to `measurements.grouped`.
    items: list["Finding"] = field(default_factory=list, repr=False, compare=False)

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
        """Counts of the findings a reader sees (grouped: 32 collapsed levels are one error)."""
        counts = {s.label: 0 for s in Severity}
        for f in self.sorted_findings():
            counts[f.severity.label] += 1
        return counts

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def sorted_findings(self) -> list[Finding]:
        """What every view shows: the findings grouped per check and subject family
        (`group_findings`), worst first; within one severity the order the checks produced them
        (root causes first). `findings` keeps every item as the checks produced it."""
        return sorted(group_findings(self.findings), key=lambda f: -int(f.severity))

    def exit_code(self, fail_on: Severity | str = Severity.ERROR) -> int:
        threshold = Severity.parse(fail_on)
        worst = self.worst()
        return 1 if worst is not None and worst >= threshold else 0

    def ids(self) -> list[str]:
        return [f.id for f in self.sorted_findings()]

    def to_dict(self) -> dict[str, Any]:
        from codecdoctor.core.version import __version__

        findings = self.sorted_findings()
        measurements = jsonable(self.measurements)
        grouped = [_grouped_entry(f) for f in findings if f.items]
        if grouped:
            measurements["grouped"] = grouped
        else:
            measurements.pop("grouped", None)
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "codecdoctor",
            "version": self.version or __version__,
            "command": self.command,
            "args": jsonable(self.args),
            "checks_run": list(self.checks_run),
            "summary": self.summary(),
            "findings": [f.to_dict() for f in findings],
            "measurements": measurements,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        if data.get("tool") != "codecdoctor" or "schema_version" not in data:
            raise ValueError("not a codecdoctor JSON report")
        if int(data["schema_version"]) > SCHEMA_VERSION:
            raise ValueError(f"report schema {data['schema_version']} is newer than this codecdoctor ({SCHEMA_VERSION})")
        findings = [Finding.from_dict(f) for f in data.get("findings") or []]
        _attach_items(findings, (data.get("measurements") or {}).get("grouped") or [])
        return cls(
            command=data.get("command", ""),
            args=dict(data.get("args") or {}),
            checks_run=list(data.get("checks_run") or []),
            findings=findings,
            measurements=dict(data.get("measurements") or {}),
            notes=list(data.get("notes") or []),
            version=data.get("version", ""),
        )


# --- grouping: one finding per check and subject family -------------------------------------------

# A subject that names a user's file (audit-data's files, compare's pairs, a folder's checkpoints)
# keeps one finding per file: the JSON contract names the file as the subject, and those views
# already print a check's cause and fix once (explained_earlier). Inside a file ("b/last.pt:
# quantizer.levels.3") the indexed item is grouped as anywhere else.
_FILE_SUBJECT = re.compile(r"[/\\]|\.(wav|flac|mp3|ogg|opus|m4a|aac|aiff?|aifc|au|caf|w64|rf64|sph|pt|pth|ckpt|"
                           r"bin|tar|safetensors|json|parquet|jsonl)\b", re.IGNORECASE)
_INDEX = re.compile(r"\d+")
_MARK = "\x00"


@functools.lru_cache(maxsize=1 << 16)  # every view groups the same findings again: a folder's are thousands
def subject_family(subject: str | None) -> tuple[str, tuple[int, ...]] | None:
    """For "quantizer.levels.3": the subject with its integer indices (levels, layers, heads, steps,
    epochs, ranks) replaced by a mark, and the indices (3,). None for a subject with no index, a
    setting (`n_fft=512`) or one that names a file: such a finding stands alone."""
    if not subject:
        return None
    head, sep, tail = subject.rpartition(": ")
    if sep and _FILE_SUBJECT.search(head):
        if _FILE_SUBJECT.search(tail):
            return None
        fixed, indexed = head + sep, tail
    elif _FILE_SUBJECT.search(subject):
        return None
    else:
        fixed, indexed = "", subject
    if "=" in indexed:  # a setting ("n_fft=512", "eps=1e-05"), not an item of a family
        return None
    indices = tuple(int(m) for m in _INDEX.findall(indexed))
    if not indices:
        return None
    return fixed + _INDEX.sub(_MARK, indexed), indices


_RANGE_PARTS = 6


def _ranges(values: Iterable[int]) -> str:
    """"0-7,9,12-31" for the sorted distinct values ("10,20,30,40,...,900" past six parts)."""
    ordered = sorted(set(values))
    parts: list[str] = []
    start = prev = ordered[0]
    for value in ordered[1:] + [None]:  # type: ignore[list-item]
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    if len(parts) > _RANGE_PARTS:  # every 10th step of a long run: the first few, then the last
        parts = parts[: _RANGE_PARTS - 2] + ["...", parts[-1]]
    return ",".join(parts)


def _group_subject(family: str, indices: list[tuple[int, ...]]) -> str:
    """"quantizer.levels.0-31 (32)": each index position shown as the ranges its items cover."""
    pieces = family.split(_MARK)
    out = pieces[0]
    for position, piece in enumerate(pieces[1:]):
        out += _ranges(index[position] for index in indices) + piece
    return f"{out} ({len(indices)})"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _summarised_evidence(representative: Finding, items: list[Finding]) -> dict[str, Any]:
    """The representative's evidence, with `<key>_min` / `<key>_max` for every number that varies
    across the items and `grouped_items`, their count."""
    evidence = dict(representative.evidence)
    for key in representative.evidence:
        values = [f.evidence.get(key) for f in items]
        numbers = [v for v in values if _number(v) and v == v]
        if len(numbers) == len(values) and min(numbers) != max(numbers):
            evidence[f"{key}_min"], evidence[f"{key}_max"] = min(numbers), max(numbers)
    evidence["grouped_items"] = len(items)
    return evidence


def _grouped(items: list[Finding], family: str) -> Finding:
    worst = max(f.severity for f in items)
    representative = next(f for f in items if f.severity == worst)
    subject = _group_subject(family, [subject_family(f.subject)[1] for f in items])  # type: ignore[index]
    which = "worst" if any(f.severity != worst for f in items) else "first"
    return Finding(id=representative.id, severity=worst, title=representative.title,
                   message=f"{len(items)} alike; {which}, {representative.subject}: {representative.message}",
                   subject=subject, evidence=_summarised_evidence(representative, items),
                   cause=representative.cause, fix=representative.fix, items=list(items))


def group_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per check and subject family: findings of one check whose subjects differ only
    in their integer indices (levels 0-31, layers, steps, epochs, ranks), with the same cause and
    fix, become one finding at the first one's place. It carries the worst severity, a subject
    listing the indices ("quantizer.levels.0-31 (32)"), the worst item's message and evidence
    with the min / max of what varies, and the items themselves (`Finding.items`; the JSON keeps
    them in `measurements.grouped`). A finding resolved later in a run is grouped apart from one
    that was not. A family of one stays as it was."""
    groups: dict[tuple, list[Finding]] = {}
    order: list[tuple] = []
    for index, f in enumerate(findings):
        family = None if f.items else subject_family(f.subject)
        key: tuple = (index,) if family is None else (f.id, family[0], f.cause, f.fix,
                                                      f.evidence.get("resolved_at_step") is None)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(f)
    out = []
    for key in order:
        items = groups[key]
        out.append(items[0] if len(items) == 1 else _grouped(items, key[1]))
    return out


def _grouped_entry(f: Finding) -> dict[str, Any]:
    return {"id": f.id, "subject": f.subject,
            "items": [{"severity": item.severity.label, "subject": item.subject, "message": item.message,
                       "evidence": jsonable(item.evidence)} for item in f.items]}


def _attach_items(findings: list[Finding], grouped: list[dict[str, Any]]) -> None:
    """Give the grouped findings of a report read back from JSON their items again."""
    by_key = {(f.id, f.subject): f for f in findings}
    for entry in grouped:
        owner = by_key.get((entry.get("id"), entry.get("subject")))
        if owner is None:
            continue
        owner.items = [Finding(id=owner.id, severity=Severity.parse(item["severity"]), title=owner.title,
                               message=item.get("message", ""), subject=item.get("subject"),
                               evidence=dict(item.get("evidence") or {}), cause=owner.cause, fix=owner.fix)
                       for item in entry.get("items") or []]


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
