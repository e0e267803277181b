"""Acceptance: check-ckpt on state dicts built from the real encodec, dac and vector_quantize_pytorch
packages recognises the format and reads codebook usage (fixtures built once, cached)."""
from __future__ import annotations

import pytest
from fixtures import checkpoints as fx

from codecdoctor.check_ckpt import check_checkpoint

pytest.importorskip("encodec", reason="encodec (dev extra) not installed")


def test_encodec_state_format_and_ema_usage():
    report = check_checkpoint(fx.encodec_state(), probes=False)
    m = report.measurements
    assert m["format"] == "encodec" and m["architecture"] == "encodec"
    assert [(q["codebook_size"], q["used"], q["initted"]) for q in m["quantizer"]] == \
        [(64, 64, True), (64, 48, True), (64, 20, True), (64, 2, True)]
    assert [f.subject for f in report.findings if f.id == "Q402"] == ["quantizer.vq.layers.3._codebook"]
    assert [f.subject for f in report.findings if f.id == "Q401"] == ["quantizer.vq.layers.2._codebook"]
    # EnCodec's decoder ends in a conv: unbounded by design, stated as C205
    assert any(f.id == "C205" for f in report.findings)


def test_vector_quantize_pytorch_rvq_usage_and_collapse():
    pytest.importorskip("vector_quantize_pytorch")
    report = check_checkpoint(fx.vqp_state(), probes=False)
    m = report.measurements
    assert m["format"] == "vector-quantize-pytorch"
    assert [q["used"] for q in m["quantizer"]] == [256, 3, 128]
    assert [f.subject for f in report.findings if f.id == "Q402"] == ["layers.1._codebook"]
    assert any("static checks only" in n for n in report.notes)


def test_vector_quantize_pytorch_never_initialised_is_q404():
    pytest.importorskip("vector_quantize_pytorch")
    report = check_checkpoint(fx.vqp_fresh_state(), probes=False)
    assert report.measurements["quantizer"][0]["initted"] is False
    assert [f.id for f in report.findings if f.severity.label == "error"] == ["Q404"]


def test_dac_checkpoint_builds_and_measures_usage_from_codes_on_data(tmp_path):
    pytest.importorskip("dac")
    from audio_fixtures import speech_like, write_audio

    write_audio(tmp_path / "a.wav", speech_like(1.0, 16000, seed=3, peak=0.8), 16000)
    report = check_checkpoint(fx.dac_checkpoint(), data=tmp_path, probes=False, n_crops=2, crop_seconds=0.5)
    m = report.measurements
    assert m["format"] == "dac" and m["model_built"] is True
    # DAC keeps no EMA buffers: statically only sizes; usage comes from the codes on data
    assert [(q["codebook_size"], q["used"]) for q in m["quantizer"]] == [(64, None)] * 3
    on_data = m["quantizer_on_data"]["levels"]
    assert len(on_data) == 3 and all(0 < q["used"] <= 64 and q["perplexity"] > 1 for q in on_data)
    assert m["quantizer_on_data"]["frames"] == 2 * 8000 // 8  # 2 crops × 0.5 s at 16 kHz, hop 8
    assert "R300" in report.checks_run and m["reconstruction"]["crops"]
