import json

import pytest

from codecdoctor.core.findings import Finding, Report, Severity, jsonable
from codecdoctor.report import json as json_out


def make_report() -> Report:
    report = Report(command="audit-data", args={"dir": "x"}, checks_run=["D103", "D107"])
    report.add([
        Finding("D107", Severity.INFO, "Silence", "9.0% of 20 ms frames below -60 dBFS", "a.wav", {"silence_fraction": 0.09}),
        Finding("D103", Severity.WARNING, "Overs", "1.2% beyond |1.0|; max |x| = 1.0129", "a.wav",
                {"max_abs": 1.0129, "ceiling_db": float("inf"), "nan_value": float("nan")}, "cause", "fix"),
    ])
    report.measurements = {"files": [{"path": "a.wav", "peak": 1.0129}]}
    return report


def test_severity_order_and_parse():
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert Severity.parse("Error") is Severity.ERROR
    with pytest.raises(ValueError):
        Severity.parse("fatal")


def test_summary_counts_each_severity():
    assert make_report().summary() == {"info": 1, "warning": 1, "error": 0, "critical": 0}


def test_json_has_schema_version_and_round_trips():
    report = make_report()
    text = json_out.dumps(report)
    data = json.loads(text)  # strict JSON: no NaN literals
    assert data["schema_version"] == 1 and data["tool"] == "codecdoctor"
    assert data["findings"][0]["id"] == "D103"  # worst first
    assert data["findings"][0]["evidence"]["ceiling_db"] == "inf"
    assert data["findings"][0]["evidence"]["nan_value"] == "nan"
    again = Report.from_dict(data)
    assert json.loads(json_out.dumps(again)) == data


def test_from_dict_rejects_foreign_json():
    with pytest.raises(ValueError):
        Report.from_dict({"hello": 1})


@pytest.mark.parametrize("fail_on,expected", [("info", 1), ("warning", 1), ("error", 0), ("critical", 0)])
def test_exit_code_follows_fail_on(fail_on, expected):
    assert make_report().exit_code(fail_on) == expected


def test_exit_code_zero_without_findings():
    assert Report(command="x").exit_code("info") == 0


def test_jsonable_converts_numpy_and_dataclasses():
    import dataclasses

    import numpy as np

    @dataclasses.dataclass
    class M:
        a: float
        b: object

    out = jsonable(M(np.float32(0.5), np.arange(3)))
    assert out == {"a": 0.5, "b": [0, 1, 2]}


def test_the_terminal_prints_a_checks_cause_and_fix_once_per_severity_group():
    """A folder of 50 delayed pairs is 50 R304 findings with one cause and fix: the terminal prints
    the paragraphs with the first and points back to them from the others; a different cause of
    the same check is printed in full."""
    import io

    from rich.console import Console

    from codecdoctor.report import terminal

    report = Report(command="compare", args={})
    report.add([Finding("R304", Severity.ERROR, "Time offset", f"pair {i} is 40 samples late", f"{i}.wav",
                        {"lag_samples": 40}, "shared cause", "shared fix") for i in range(3)]
               + [Finding("R304", Severity.ERROR, "Time offset", "drifting", "d.wav", {}, "drift cause", "drift fix")])
    buffer = io.StringIO()
    terminal.render(report, Console(file=buffer, width=200, force_terminal=False, color_system=None))
    text = buffer.getvalue()
    assert text.count("shared cause") == 1 and text.count("shared fix") == 1
    assert text.count("cause and fix: as for R304 above") == 2
    assert text.count("drift cause") == 1 and text.count("drift fix") == 1
    assert all(f"pair {i} is 40 samples late" in text for i in range(3))      # every message stays
