"""The check registry: one function per check, registered with its stable ID.

A check is a plain function decorated with `@check(...)`. Its docstring is the single source of the
documentation that `codecdoctor checks`, `codecdoctor explain ID` and the HTML report show:

    First line: the title.

    What: what the check measures and the threshold, with the reasoning behind the number.
    Why: why it matters for training or evaluating a codec.
    Fix: how to fix it.

A check reads measurements and returns (or yields) findings; it does no I/O and no heavy compute.
When its inputs are missing it raises `NotApplicable`, so the report never lists it as run: a check
that cannot run reports nothing, never a false pass. A check that raises anything else is a bug in
that check, not in the input: `run_checks` contains it (an internal-error note naming the check,
the subject and the exception; the check is not listed as run) and the other checks still run.
"""
from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from codecdoctor.core.findings import Finding, Severity

SCOPES = ("data", "checkpoint", "reconstruction", "quantizer", "stft", "training", "environment")
_ID_PATTERN = re.compile(r"^[A-Z][0-9]{3}$")
_SECTIONS = ("What", "Why", "Fix")


class NotApplicable(Exception):
    """Raised by a check whose inputs are not available: it did not run."""


@dataclass(frozen=True)
class CheckInfo:
    id: str
    scope: str
    severity: Severity
    title: str
    what: str
    why: str
    fix: str
    func: Callable[..., Any]
    level: str = ""

    @property
    def module(self) -> str:
        return self.func.__module__


_REGISTRY: dict[str, CheckInfo] = {}


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a check docstring into its title and the What / Why / Fix sections."""
    text = inspect.cleandoc(doc or "")
    if not text:
        return "", {}
    title, _, body = text.partition("\n")
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in body.splitlines():
        match = re.match(r"^(What|Why|Fix):\s*(.*)$", line)
        if match:
            current = match.group(1)
            sections[current] = [match.group(2)]
        elif current is not None:
            sections[current].append(line)
    joined = {name: " ".join(" ".join(lines).split()) for name, lines in sections.items()}
    return title.strip().rstrip("."), joined


def check(check_id: str, *, scope: str, severity: Severity | str, level: str = "") -> Callable:
    """Register `func` as check `check_id`. `level` is a free tag a scope uses to pick checks
    (for data: "file" or "corpus")."""
    if not _ID_PATTERN.match(check_id):
        raise ValueError(f"check ID {check_id!r} must look like D103")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(func: Callable) -> Callable:
        title, sections = parse_docstring(func.__doc__)
        missing = [name for name in _SECTIONS if not sections.get(name)]
        if not title or missing:
            raise ValueError(f"check {check_id} ({func.__qualname__}) docstring lacks: {', '.join(missing) or 'title'}")
        existing = _REGISTRY.get(check_id)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"check ID {check_id} registered twice ({existing.func.__qualname__}, {func.__qualname__})")
        _REGISTRY[check_id] = CheckInfo(
            id=check_id,
            scope=scope,
            severity=Severity.parse(severity),
            title=title,
            what=sections["What"],
            why=sections["Why"],
            fix=sections["Fix"],
            func=func,
            level=level,
        )
        func.check_id = check_id
        return func

    return decorate


def load_all(scope: str | None = None) -> None:
    """Import every check module (or only `scope`'s: modules are named by their scope) so the
    catalog is registered; a command that runs one scope does not import the others' measures."""
    for one in SCOPES if scope is None else (scope,):
        name = f"codecdoctor.checks.{one}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a scope whose module is not written yet
            if exc.name != name:
                raise


def all_checks(scope: str | None = None) -> list[CheckInfo]:
    load_all(scope if scope in SCOPES else None)
    infos = sorted(_REGISTRY.values(), key=lambda info: info.id)
    return [info for info in infos if scope is None or info.scope == scope]


def get(check_id: str) -> CheckInfo:
    key = check_id.strip().upper()
    if key not in _REGISTRY:
        load_all()
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown check ID {check_id!r}; `codecdoctor checks` lists them") from None


def finding(
    check_id: str,
    message: str,
    *,
    subject: str | None = None,
    evidence: dict[str, Any] | None = None,
    severity: Severity | str | None = None,
    cause: str | None = None,
    fix: str | None = None,
) -> Finding:
    """Build a finding for a registered check; title, default severity and fix come from its doc."""
    info = get(check_id)
    return Finding(
        id=info.id,
        severity=info.severity if severity is None else Severity.parse(severity),
        title=info.title,
        message=message,
        subject=subject,
        evidence=dict(evidence or {}),
        cause=cause if cause is not None else info.why,
        fix=fix if fix is not None else info.fix,
    )


@dataclass
class CheckRun:
    checks_run: list[str]
    findings: list[Finding]
    # internal-error notes of checks that raised (a bug in the check): for Report.notes
    notes: list[str] = field(default_factory=list)


def _subject_of(args: tuple[Any, ...]) -> str:
    """What a check was judging, for an internal-error note: the measurements' own subject, path
    or name when they carry one."""
    for arg in args[:1]:
        for attr in ("subject", "path", "name"):
            value = getattr(arg, attr, None)
            if isinstance(value, (str, Path)) and str(value):
                return str(value)
        return type(arg).__name__
    return "no subject"


_INTERNAL_ERROR = "internal error in check "


def internal_error_note(check_id: str, subject: str, exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return (f"{_INTERNAL_ERROR}{check_id} on {subject}: {type(exc).__name__}"
            f"{': ' + text if text else ''} (the check did not run; the others did)")


def internal_errors(notes: Iterable[str]) -> list[str]:
    """The internal-error notes among a measurement's notes (a pair carries them in its own)."""
    return [note for note in notes if note.startswith(_INTERNAL_ERROR)]


def run_checks(scope: str, *args: Any, level: str | None = None, only: Iterable[str] | None = None, **kwargs: Any) -> CheckRun:
    """Run every check of `scope` (optionally of one `level`, or only the given IDs) on the same
    arguments. Checks that raise NotApplicable are left out of `checks_run`; a check that raises
    anything else is left out too and named in `notes`, so one broken judge never loses a run."""
    wanted = set(only) if only is not None else None
    ran: list[str] = []
    findings: list[Finding] = []
    notes: list[str] = []
    for info in all_checks(scope):
        if level is not None and info.level != level:
            continue
        if wanted is not None and info.id not in wanted:
            continue
        try:
            produced = info.func(*args, **kwargs)
            produced = list(produced) if produced is not None else []
        except NotApplicable:
            continue
        except Exception as exc:  # noqa: BLE001 - a bug in one judge: say so, keep the others
            notes.append(internal_error_note(info.id, _subject_of(args), exc))
            continue
        ran.append(info.id)
        findings.extend(produced)
    return CheckRun(ran, findings, notes)
