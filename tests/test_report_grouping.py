"""One finding per check and subject family: a 32-level collapse is one Q402 listing its levels,
not 32 findings; the items stay in the JSON (`measurements.grouped`), the terminal and the HTML."""
from __future__ import annotations

import io
import json

import torch
from fixtures import checkpoints as fx

from codecdoctor.core.findings import Finding, Report, Severity, group_findings, subject_family
from codecdoctor.report import json as json_out


def _collapsed_32_levels(path):
    """The codec's own checkpoint with 32 RVQ levels of 64 codes, every level's EMA counts on one code."""
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig

    torch.manual_seed(0)
    config = CodecConfig.tiny().replace(n_codebooks=32, codebook_size=64)
    state = {k: v.clone() for k, v in Codec(config).state_dict().items()}
    for level in range(32):
        fx.set_ema_usage(state, f"quantizer.levels.{level}.", 1, seed=level)
    return fx.save({**fx.own_state(), "config": config.to_dict(), "model": state}, path)


def test_a_32_level_collapse_is_one_grouped_finding_not_32(tmp_path):
    from rich.console import Console

    from codecdoctor.check_ckpt import check_checkpoint
    from codecdoctor.report import terminal

    report = check_checkpoint(_collapsed_32_levels(tmp_path / "c.pt"), probes=False)
    assert len([f for f in report.findings if f.id == "Q402"]) == 32      # every level judged ...
    shown = report.sorted_findings()
    q402 = [f for f in shown if f.id == "Q402"]
    assert len(q402) == 1 and len(shown) <= 20                              # ... one finding shown
    group = q402[0]
    assert group.subject == "quantizer.levels.0-31 (32)" and group.severity is Severity.ERROR
    assert group.evidence["grouped_items"] == 32 and group.evidence["used"] == 1
    assert group.message.startswith("32 alike; first, quantizer.levels.0: perplexity 1.00 of 64 codes")
    assert report.summary()["error"] == len([f for f in shown if f.severity is Severity.ERROR])

    data = json.loads(json_out.dumps(report))
    assert [f["id"] for f in data["findings"]].count("Q402") == 1
    assert set(data["findings"][0]) == {"id", "severity", "title", "message", "subject", "evidence", "cause", "fix"}
    items = next(g for g in data["measurements"]["grouped"] if g["id"] == "Q402")["items"]
    assert [i["subject"] for i in items] == [f"quantizer.levels.{n}" for n in range(32)]
    assert all(i["evidence"]["used"] == 1 and i["evidence"]["perplexity"] == 1.0 for i in items)

    buffer = io.StringIO()
    terminal.render(report, Console(file=buffer, width=120, force_terminal=False, color_system=None))
    text = buffer.getvalue()
    assert text.count("Q402 Codebook collapse") == 1 and "32 items:" in text
    assert "quantizer.levels.5: perplexity 1.00" in text and "... 26 more" in text


def _finding(check_id, subject, severity=Severity.WARNING, **evidence):
    return Finding(check_id, severity, "title", f"{subject} measured", subject, evidence, "cause", "fix")


def test_grouping_keeps_the_worst_severity_and_summarises_what_varies():
    findings = [_finding("T605", "step 10", grad_norm=50.0), _finding("T605", "step 20", Severity.ERROR, grad_norm=900.0),
                _finding("T605", "step 30", grad_norm=70.0), _finding("C202", "decoder.weight", rms=1e4)]
    grouped = group_findings(findings)
    assert [f.id for f in grouped] == ["T605", "C202"]                       # first place kept
    steps = grouped[0]
    assert steps.severity is Severity.ERROR and steps.subject == "step 10,20,30 (3)"
    assert steps.message == "3 alike; worst, step 20: step 20 measured"
    assert steps.evidence == {"grad_norm": 900.0, "grad_norm_min": 50.0, "grad_norm_max": 900.0, "grouped_items": 3}
    assert [f.subject for f in steps.items] == ["step 10", "step 20", "step 30"]
    assert grouped[1] is findings[3]                                         # a family of one is untouched
    many = group_findings([_finding("T605", f"step {10 * i}") for i in range(1, 91)])
    assert many[0].subject == "step 10,20,30,40,...,900 (90)"


def test_files_stay_one_finding_each_and_items_inside_a_file_are_grouped():
    assert subject_family("a1.wav") is None and subject_family("spk1/hot.wav") is None
    assert subject_family("decoder output") is None and subject_family("n_fft=512") is None
    findings = [_finding("D103", "take_1.wav"), _finding("D103", "take_2.wav"),
                _finding("Q402", "b/last.pt: quantizer.levels.0"), _finding("Q402", "b/last.pt: quantizer.levels.2"),
                _finding("Q402", "c/last.pt: quantizer.levels.1")]
    grouped = group_findings(findings)
    assert [f.subject for f in grouped] == ["take_1.wav", "take_2.wav", "b/last.pt: quantizer.levels.0,2 (2)",
                                            "c/last.pt: quantizer.levels.1"]


def test_different_causes_and_different_checks_are_not_merged():
    other = _finding("Q402", "level 1")
    other.cause = "another cause"
    grouped = group_findings([_finding("Q402", "level 0"), other, _finding("Q405", "level 2")])
    assert [f.subject for f in grouped] == ["level 0", "level 1", "level 2"]


def test_grouped_report_round_trips_through_json_with_its_items():
    report = Report(command="check-ckpt")
    report.add([_finding("Q402", f"quantizer.levels.{i}", perplexity=1.0 + i) for i in range(4)])
    data = json.loads(json_out.dumps(report))
    again = Report.from_dict(data)
    assert len(again.findings) == 1 and len(again.findings[0].items) == 4
    assert json.loads(json_out.dumps(again)) == data


def test_html_lists_the_items_of_a_grouped_finding_escaped():
    from codecdoctor.report import html

    report = Report(command="check-ckpt")
    report.add([_finding("Q402", f"<script>alert({i}) level {i}") for i in range(3)], ["Q402"])
    page = html.render(report)
    assert "<summary>3 items</summary>" in page
    assert page.count("&lt;script&gt;alert(1) level 1 measured") == 1 and "<script>" not in page
