"""Root causes across checks, and C205's judgement of the output bound.

A codebook blow-up (every code vector scaled to RMS ~1000, as k-means on a tiny first batch and
EMA left it in a trainer from the field) makes every RVQ level emit one code: the decoder then
gets a constant and its output is unrelated to the input. The collapse ranks first; R314, R301
and T608 say they are explained by it.
"""
from __future__ import annotations

import pytest
import torch
from audio_fixtures import speech_like, write_audio
from fixtures.checkpoints import encodec_state, own_state, save
from monitor_loops import crops, speech_bank

import codecdoctor
from codecdoctor.check_ckpt import check_checkpoint
from codecdoctor.core.findings import Finding, Severity
from codecdoctor.diagnose import rank_root_causes

BLOW_UP = 2200.0  # codebook RMS reached in the field: ~2200


def _blow_up(weights: dict, levels: int, prefix: str = "quantizer.levels.") -> None:
    for level in range(levels):
        for name in ("embed", "embed_avg"):
            key = f"{prefix}{level}.{name}"
            weights[key] = weights[key] * BLOW_UP


def _by_id(findings, check_id):
    return [f for f in findings if f.id == check_id]


def test_check_ckpt_ranks_a_one_code_per_level_collapse_first_and_r314_r301_say_explained_by_it(tmp_path):
    state = own_state()
    _blow_up(state["model"], state["config"]["n_codebooks"])
    write_audio(tmp_path / "data" / "a.wav", speech_like(3.0, 16000, seed=1, peak=0.5), 16000)
    report = check_checkpoint(save(state, tmp_path / "c.pt"), data=tmp_path / "data", probes=False,
                              n_crops=2, crop_seconds=1.0)
    levels = report.measurements["quantizer_on_data"]["levels"]
    assert [(lv["used"], lv["total_count"]) for lv in levels] == [(1, 800.0), (1, 800.0)]
    ordered = report.sorted_findings()
    top = ordered[0]
    assert top.id in ("Q401", "Q402") and top.evidence["used"] == 1 and top.evidence["source"] == "codes"
    assert top.severity == Severity.ERROR and "It explains R314" in top.message
    for check_id in ("R314", "R301"):
        explained = _by_id(ordered, check_id)[0]
        assert f"Explained by {top.id}" in explained.message and explained.evidence["explained_by"] == top.id
        assert ordered.index(explained) > 0
    assert _by_id(ordered, "R301")[0].evidence["snr_db"] < -20  # the constant output is louder than silence


def test_under_the_monitor_a_collapsed_codebook_explains_t608_and_r314():
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    torch.manual_seed(0)
    # no dead-code revival: it would re-seed the codes and the EMA counts would look spread
    config = CodecConfig.tiny().replace(dead_code_fraction=0.0)
    model, loss_fn = Codec(config), ReconstructionLoss(config)
    weights = model.state_dict()
    _blow_up(weights, model.config.n_codebooks)
    for level in range(model.config.n_codebooks):
        # the EMA counts of a level that emits one code
        counts = torch.zeros(model.config.codebook_size)
        counts[0] = 100.0
        weights[f"quantizer.levels.{level}.cluster_size"] = counts
        weights[f"quantizer.levels.{level}.initted"] = torch.tensor(True)
    model.load_state_dict(weights)
    optimizer = torch.optim.Adam(model.parameters(), 3e-4)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, optimizer=optimizer)
    bank = speech_bank(2.0)
    for step in range(10):
        x = crops(bank, step)
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        monitor.on_batch(x, out.audio, losses)
        optimizer.zero_grad()
        losses["total"].backward()
        monitor.on_backward(model)
        optimizer.step()
        monitor.on_step()
    model.eval()
    ref = crops(speech_bank(6.0), 0, batch=2, samples=16000)
    with torch.no_grad():
        monitor.on_validation(ref, model(ref).audio)
    report = monitor.close()
    ordered = report.sorted_findings()
    assert ordered[0].id == "T607" and ordered[0].evidence["perplexity"] < 1.5
    t608 = _by_id(ordered, "T608")[0]
    assert t608.severity == Severity.ERROR and "T607" in t608.evidence["causes"]
    assert "Explained by T607" in t608.message
    r314 = _by_id(ordered, "R314")
    assert r314 and "Explained by T607" in r314[0].message


def test_ranking_is_idempotent_and_leaves_reports_without_a_measured_collapse_alone():
    def make(check_id, severity, **evidence):
        return Finding(check_id, severity, check_id.lower(), f"{check_id} message.", evidence=evidence)

    findings = [make("R314", Severity.ERROR), make("T608", Severity.WARNING),
                make("Q402", Severity.WARNING, used=2, perplexity=1.9, source="codes")]
    once = rank_root_causes(findings)
    assert [f.id for f in once] == ["Q402", "R314", "T608"]
    assert once[0].severity == Severity.ERROR  # the cause takes its effect's severity
    messages = [f.message for f in once]
    assert [f.message for f in rank_root_causes(once)] == messages  # ranking twice adds nothing
    # EMA buffers alone are a second opinion, and 3 codes are not a one-code collapse
    for evidence in ({"used": 1, "source": "ema"}, {"used": 3, "source": "codes"}):
        plain = [make("R314", Severity.ERROR), make("Q402", Severity.WARNING, **evidence)]
        assert [f.id for f in rank_root_causes(plain)] == ["R314", "Q402"]
        assert "Explained" not in plain[0].message


def test_c205_is_info_for_an_encodec_style_unbounded_model():
    report = check_checkpoint(encodec_state(), probes=False)
    c205 = _by_id(report.findings, "C205")
    assert len(c205) == 1 and c205[0].severity == Severity.INFO
    assert c205[0].evidence["by_design"] and "unbounded" in c205[0].message


def test_c205_names_a_model_that_normalises_its_input_scale(tmp_path):
    state = own_state()
    state["config"]["output_bound"] = "none"
    state["config"]["audio_normalize"] = True
    report = check_checkpoint(save(state, tmp_path / "c.pt"), probes=False)
    c205 = _by_id(report.findings, "C205")[0]
    assert c205.severity == Severity.INFO
    assert c205.evidence["input_scale_normalised"] == "config.audio_normalize=True"


@pytest.mark.parametrize("bound, peak, expected", [("tanh", 1.01, Severity.WARNING), ("tanh", 0.9, None),
                                                   ("none", 1.01, Severity.INFO)])
def test_c205_warns_only_where_data_beyond_1_meets_a_bounded_output(tmp_path, bound, peak, expected):
    state = own_state()
    state["config"]["output_bound"] = bound
    write_audio(tmp_path / "data" / "a.wav", speech_like(1.0, 16000, seed=1, peak=peak), 16000)
    report = check_checkpoint(save(state, tmp_path / "c.pt"), data=tmp_path / "data", probes=False, n_crops=1,
                              crop_seconds=0.5)
    c205 = _by_id(report.findings, "C205")
    if expected is None:
        assert not c205 and "C205" in report.checks_run
        return
    assert len(c205) == 1 and c205[0].severity == expected
    assert c205[0].evidence["data_peak"] == pytest.approx(peak, abs=1e-4)
    if expected == Severity.WARNING:
        assert "beyond the decoder's output bound 'tanh' (±1)" in c205[0].message


def test_a_finding_that_groups_collapsed_levels_is_read_level_by_level():
    grouped = Finding("Q402", Severity.ERROR, "codebook collapse", "levels 0-31 collapsed.",
                      evidence={"used": [1] * 32, "source": "codes"})
    partly = Finding("Q402", Severity.ERROR, "codebook collapse", "levels 0-1.",
                     evidence={"used": [1, 40], "source": "codes"})
    r314 = Finding("R314", Severity.ERROR, "uncorrelated", "R314 message.")
    assert [f.id for f in rank_root_causes([r314, grouped])] == ["Q402", "R314"]
    assert "Explained by Q402" in r314.message
    fresh = Finding("R314", Severity.ERROR, "uncorrelated", "R314 message.")
    assert [f.id for f in rank_root_causes([fresh, partly])] == ["R314", "Q402"]
