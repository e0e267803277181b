"""`--model SPEC` with no adapter on models from pip (encodec, descript-audio-codec; random weights,
small configs) and the loader's name mapping (Lightning's `model.` prefix, weight-norm names)."""
from __future__ import annotations

import textwrap

import pytest
import torch
from fixtures import checkpoints as fx

from codecdoctor.check_ckpt import check_checkpoint
from codecdoctor.measure.adapters import ModelLoad, load_weights_strictly

SMALL_ENCODEC = textwrap.dedent('''
    import encodec
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer


    class SmallEncodec(encodec.EncodecModel):
        """The fixture's small EnCodec as a class the user would write: sizes as arguments."""

        def __init__(self, dimension=16, n_filters=4, n_q=4, bins=64, sample_rate=16000):
            kw = dict(channels=1, dimension=dimension, n_filters=n_filters, n_residual_layers=1, ratios=[4, 2], lstm=0)
            super().__init__(SEANetEncoder(**kw), SEANetDecoder(**kw),
                             ResidualVectorQuantizer(dimension=dimension, n_q=n_q, bins=bins),
                             target_bandwidths=[1.0], sample_rate=sample_rate, channels=1, normalize=False)
''')


def _warnings(report):
    return [f.id for f in report.findings if f.severity.label in ("warning", "error", "critical")]


def test_encodec_class_spec_drives_its_forward(tmp_path, monkeypatch):
    pytest.importorskip("encodec")
    (tmp_path / "small_encodec.py").write_text(SMALL_ENCODEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    from audio_fixtures import speech_like, write_audio

    write_audio(tmp_path / "data" / "a.wav", speech_like(1.0, 16000, seed=4, peak=0.5), 16000)
    report = check_checkpoint(fx.encodec_state(), model="small_encodec:SmallEncodec", fft_sizes=[512, 1024],
                              data=tmp_path / "data", probes=False, n_crops=1, crop_seconds=0.5)
    m = report.measurements
    assert m["model_load"].clean and m["model_load"].kind == "class"
    # EncodecModel.forward (encode + decode) gives the reconstruction of the crop
    assert m["model_built"] is True and len(m["reconstruction"]["crops"]) == 1 and "R300" in report.checks_run
    # EMA counts are statistics (no C202 "exploding" on cluster_size); no precision evidence: S50x info
    assert "C202" not in _warnings(report) and not [i for i in _warnings(report) if i.startswith("S50")]
    assert [q["used"] for q in m["quantizer"]] == [64, 48, 20, 2]
    # the built model says threshold_ema_dead_code = 2 (EnCodec's default): a level whose EMA counts
    # sum below 64 × 2 = 128 tokens would reset every code on every step (Q407)
    below = [q["name"] for q in m["quantizer"] if q["total_count"] < 128]
    q407 = [f for f in report.findings if f.id == "Q407"]
    assert below and [f.subject for f in q407] == below
    assert "threshold_ema_dead_code" in q407[0].message and q407[0].evidence["tokens_needed"] == 128
    assert any("driving SmallEncodec.forward at 16000 Hz (model.sample_rate)" in n for n in report.notes)


def test_dac_class_spec_with_saved_metadata_kwargs_reads_codes_from_the_forward(tmp_path):
    pytest.importorskip("dac")
    from audio_fixtures import speech_like, write_audio

    write_audio(tmp_path / "a.wav", speech_like(1.0, 16000, seed=3, peak=0.8), 16000)
    report = check_checkpoint(fx.dac_checkpoint(), model="dac:DAC", data=tmp_path, probes=False, n_crops=1,
                              crop_seconds=0.5)
    m = report.measurements
    load = m["model_load"]
    assert load.clean and load.kwargs_sources["n_codebooks"] == "checkpoint metadata['kwargs']"
    # DAC.forward returns a dict whose "audio" is the reconstruction; each quantizer level returns
    # its indices: three levels of 64 codes, 8000 samples / hop 8 = 1000 frames
    on_data = m["quantizer_on_data"]
    assert [lv["codebook_size"] for lv in on_data["levels"]] == [64, 64, 64] and on_data["frames"] == 1000
    assert m["reconstruction"]["crops"] and "C202" not in _warnings(report)
    # statically: three nn.Embedding codebooks of 64; the DAC loss's FFT sizes are known, but nothing
    # shows half precision, so S501-S503 are info
    assert [(q["codebook_size"], q["source"]) for q in m["quantizer"]] == [(64, "weights")] * 3
    assert "S501" in report.checks_run and not [i for i in _warnings(report) if i.startswith("S50")]


def test_lightning_model_prefix_is_stripped_for_the_model():
    module = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.Tanh())
    weights = {f"model.{k}": v.clone() for k, v in module.state_dict().items()}
    target = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.Tanh())
    load = ModelLoad(spec="x:Y", kind="class")
    load_weights_strictly(target, weights, load)
    assert load.clean and load.stripped_prefix == "model." and load.loaded == 2
    assert torch.equal(target[0].weight, module[0].weight)


def test_old_weight_norm_names_load_into_parametrized_convs_and_back():
    old = torch.nn.utils.weight_norm(torch.nn.Conv1d(1, 4, 3))
    new = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(1, 4, 3))
    load = ModelLoad(spec="x:Y", kind="class")
    load_weights_strictly(new, old.state_dict(), load)
    assert load.clean and load.weight_norm_renamed == 2
    assert torch.allclose(new.weight, old.weight)
    back = torch.nn.utils.weight_norm(torch.nn.Conv1d(1, 4, 3))
    load = ModelLoad(spec="x:Y", kind="class")
    load_weights_strictly(back, new.state_dict(), load)
    back(torch.zeros(1, 1, 8))  # the old weight_norm recomputes `.weight` in a forward pre-hook
    assert load.clean and load.weight_norm_renamed == 2 and torch.allclose(back.weight, old.weight)


def test_missing_and_unexpected_keys_are_counted_with_examples():
    target = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.Conv1d(4, 1, 3))
    weights = {"0.weight": torch.zeros(4, 1, 3), "0.bias": torch.zeros(4), "2.weight": torch.zeros(1, 4, 3)}
    load = ModelLoad(spec="x:Y", kind="class")
    load_weights_strictly(target, weights, load)
    assert (load.missing, load.unexpected, load.shape_mismatch) == (2, 1, 0)
    assert load.missing_examples == ["1.weight", "1.bias"] and load.unexpected_examples == ["2.weight"]
    from codecdoctor.core.registry import run_checks

    run = run_checks("checkpoint", load, level="load")
    assert [f.id for f in run.findings] == ["C217"] and run.findings[0].evidence["missing"] == 2


class _BatchNormalising(torch.nn.Module):
    """x / max|x| over the whole batch (a common hand-written normalisation), then an identity conv."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 1, 1, bias=False)
        torch.nn.init.ones_(self.conv.weight)

    def forward(self, x):
        return self.conv(x / x.abs().max().clamp_min(1e-8))


def test_normalisation_over_the_batch_is_c210_through_the_forward():
    from codecdoctor.measure.adapters import forward_adapter
    from codecdoctor.probe import probe

    adapter = forward_adapter(_BatchNormalising().eval(), 8000, "BatchNormalising")
    report = probe(adapter)
    found = [f for f in report.findings if f.id == "C210"]
    # one level per forward: each sweep level is normalised on its own, so the slope is 0, not 1
    assert found and found[0].severity.label == "error"
    assert abs(report.measurements["probes"].level_slope_db_per_db) < 1e-3
