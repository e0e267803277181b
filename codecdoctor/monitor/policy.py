"""The findings policy of a live run: one finding per fault (a persisting fault counts repeats),
validation findings resolved by a later healthy validation, code-usage findings resolved by a later
healthy batch, and what a strict monitor stops on."""
from __future__ import annotations

from typing import Callable

from codecdoctor.core.findings import Finding, Severity

MODES = ("strict", "warn")
STOP_POLICIES = ("errors", "nonfinite")


def check_stop_policy(mode: str, stop_on: str) -> None:
    """ValueError naming the choices when `mode` or `stop_on` is not one of them."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'strict' or 'warn', got {mode!r}")
    if stop_on not in STOP_POLICIES:
        raise ValueError(f"stop_on must be one of {', '.join(STOP_POLICIES)}, got {stop_on!r}")


def is_nonfinite_fault(f: Finding) -> bool:
    """A finding that means NaN/Inf reached the input, output, loss or gradients: the run is lost
    from this step on, so even a lenient strict mode stops for it."""
    return f.id == "T604" or any(key in f.evidence for key in ("nonfinite_samples", "nonfinite_steps"))


class FindingsPolicy:
    def __init__(self, mode: str, stop_on: str, on_new: Callable[[Finding], None] | None = None):
        check_stop_policy(mode, stop_on)
        self.mode = mode
        # "errors" = stop on any finding of severity error or worse; "nonfinite" = only on
        # non-finite values (the run is lost; everything else is reported as drift)
        self.stop_on = stop_on
        self.findings: list[Finding] = []
        self.checks_run: list[str] = []
        self._keys: dict[tuple, Finding] = {}
        # findings judged on one validation (T603, T608 and its R3xx diagnosis) describe the model
        # at that moment; a later validation that no longer shows them marks them resolved
        self._from_validation: list[Finding] = []
        self._on_new = on_new

    def add(self, findings: list[Finding], checks: list[str], *, from_validation: bool = False) -> list[Finding]:
        """Record findings and the checks that ran; returns the new ones (repeats only count)."""
        for check_id in checks:
            if check_id not in self.checks_run:
                self.checks_run.append(check_id)
        new: list[Finding] = []
        for f in findings:
            if from_validation and self._supersede(f, new):
                continue
            # one finding per (check, severity, level/term): a fault that persists updates its count
            # instead of flooding the report every read-back
            key = (f.id, f.severity, f.evidence.get("level"), f.evidence.get("direction"))
            seen = self._keys.get(key)
            if seen is not None:
                seen.evidence["repeats"] = int(seen.evidence.get("repeats", 0)) + 1
                seen.evidence["last_subject"] = f.subject
                continue
            self._keys[key] = f
            self.findings.append(f)
            new.append(f)
            if self._on_new is not None:
                self._on_new(f)
        if from_validation:
            known = {id(g) for g in self._from_validation}
            self._from_validation.extend([f for f in new if id(f) not in known])
        return new

    def from_validation(self, f: Finding) -> bool:
        """Whether `f` was judged on a validation (T603, T608 and the R3xx diagnosis)."""
        return any(f is g for g in self._from_validation)

    def _supersede(self, f: Finding, new: list[Finding]) -> bool:
        """A validation finding describes the model at that validation, so a later one of the same
        check replaces the earlier one that is still open (its message quotes the latest state; a
        change of severity makes it new again, so a strict run stops on it). True when `f` took an
        earlier finding's place."""
        older = next((g for g in self._from_validation if g.id == f.id and "resolved_at_step" not in g.evidence
                      and g.evidence.get("direction") == f.evidence.get("direction")), None)
        if older is None:
            return False
        repeats = int(older.evidence.get("repeats", 0)) + 1
        first = older.evidence.get("first_subject", older.subject)
        changed = f.severity != older.severity
        self._keys = {k: v for k, v in self._keys.items() if v is not older}
        older.severity, older.message, older.subject, older.cause, older.fix = (f.severity, f.message, f.subject,
                                                                                 f.cause, f.fix)
        older.evidence = {**f.evidence, "repeats": repeats, "first_subject": first}
        self._keys[(f.id, f.severity, f.evidence.get("level"), f.evidence.get("direction"))] = older
        if changed:
            new.append(older)
            if self._on_new is not None:
                self._on_new(older)
        return True

    def stopping(self, new: list[Finding]) -> list[Finding]:
        """The new findings a strict monitor stops on, worst first (empty in warn mode)."""
        if self.mode != "strict":
            return []
        errors = [f for f in new if f.severity >= Severity.ERROR
                  and (self.stop_on == "errors" or is_nonfinite_fault(f))]
        return sorted(errors, key=lambda f: -int(f.severity))

    def resolve_validation(self, current_ids: set[str], step: int, snr_db: float) -> None:
        """An early validation of a model that is still learning often has SNR near 0 dB; once a later
        validation is healthy, that finding is history, not a diagnosis of the run: keep it as info
        (an info one too, so a "not learned yet" of step 60 does not read as the run's last word)."""
        for f in self._from_validation:
            if f.id not in current_ids and "resolved_at_step" not in f.evidence:
                f.severity = Severity.INFO
                f.message += f" - resolved: not seen at the validation at step {step} (SNR {snr_db:.2f} dB)"
                f.evidence["resolved_at_step"] = step
                # a recurrence later must be a new finding, not a repeat of this resolved one
                self._keys = {k: v for k, v in self._keys.items() if v is not f}

    def resolve_recovered(self, check_id: str, source: str, recovered: dict[int, str]) -> None:
        """Findings of `check_id` measured from `source` at a level that a later measurement shows
        healthy (`recovered`: level -> what was measured) are history: keep them as info. A level
        that dips for one batch early in training and recovers (dead-code revival) is not a fault."""
        for f in self.findings:
            level = f.evidence.get("level")
            if f.id != check_id or f.severity <= Severity.INFO or f.evidence.get("source") != source \
                    or level not in recovered:
                continue
            f.severity = Severity.INFO
            f.message += f" - recovered: {recovered[level]}"
            f.evidence["recovered"] = recovered[level]
            self._keys = {k: v for k, v in self._keys.items() if v is not f}
