"""One verdict paragraph per demo step, written from the step's measured findings and numbers."""
from __future__ import annotations

from typing import Any

from codecdoctor.core.findings import jsonable
from codecdoctor.report.terminal import format_number


def _num(value: Any, unit: str = "") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if unit.strip() in ("dB", "dB/dB"):  # prose: two decimals are what a reader compares
            return f"{value:.2f}{unit}"
        return f"{format_number(value)}{unit}"
    return str(value)


def _key_numbers(step) -> str:
    report = step.report
    m = jsonable(report.measurements or {})  # dataclasses (probe measurements) become dicts
    command = report.command
    if command == "compare" and m.get("pairs"):
        pair = m["pairs"][0]
        what_if = pair.get("what_if") or {}
        parts = [f"SNR {_num(pair.get('snr_db'), ' dB')}"]
        labels = (("gain", "after gain"), ("aligned", "after alignment"), ("polarity", "after polarity"),
                  ("all", "after all corrections"))
        parts += [f"{label} {_num(what_if[key], ' dB')}" for key, label in labels if key in what_if]
        return "Measured: " + ", ".join(parts) + "."
    if command == "train" and m.get("history"):
        last = m["history"][-1]
        return (f"After {m.get('steps')} steps the validation SNR is {_num(last.get('val_snr_db'), ' dB')} "
                f"(SI-SNR {_num(last.get('val_si_snr_db'), ' dB')}, mel distance {_num(last.get('val_mel_distance'))}).")
    if command == "audit-data" and m.get("corpus"):
        corpus = m["corpus"]
        return (f"Audited {corpus.get('files')} files ({_num(corpus.get('hours', 0) * 3600, ' s')} of audio).")
    if command == "probe" and m.get("probes"):
        p = m["probes"]
        return (f"Level-sweep slope {_num(p.get('level_slope_db_per_db'), ' dB/dB')}, latency "
                f"{_num(p.get('latency_samples'))} samples, polarity {p.get('polarity', 'unknown')}.")
    return ""


def verdict_for(step) -> str:
    report = step.report
    if report is None:
        return ""
    counts = report.summary()
    numbers = _key_numbers(step)
    findings = report.sorted_findings()
    if step.kind == "healthy":
        errors = counts["error"] + counts["critical"]
        if errors == 0:
            head = (f"No error findings ({counts['warning']} warnings, {counts['info']} informational); "
                    f"{len(report.checks_run)} checks ran.")
        else:
            top = findings[0]
            head = f"Unexpected on a healthy step: {top.id} ({top.severity.label}) - {top.message}"
        return " ".join(part for part in (head, numbers) if part)
    named = [f for f in findings if f.id in step.expected_ids]
    if not named:
        top = findings[0] if findings else None
        head = (f"The expected {', '.join(step.expected_ids)} was not named"
                + (f"; the top finding is {top.id}: {top.message}" if top else "; there were no findings") + ".")
        return " ".join(part for part in (head, numbers) if part)
    shown = []
    for check_id in step.expected_ids:
        finding = next((f for f in named if f.id == check_id), None)
        if finding is not None:
            shown.append(f"{finding.id} ({finding.severity.label}): {finding.message}")
    top = findings[0]
    # one fault, one fix; a step naming several problems shows each finding's fix in its report
    fix = f"Fix: {top.fix}" if top.fix and len(step.expected_ids) == 1 else ""
    return " | ".join(part for part in ("codecdoctor named:", *shown, numbers, fix) if part)
