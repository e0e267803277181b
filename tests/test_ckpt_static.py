"""check-ckpt static checks: fault injection on this codec's checkpoints, each asserting its ID."""
from __future__ import annotations

import math

import pytest
import torch
from fixtures.checkpoints import own_state, save, set_ema_usage

from codecdoctor.check_ckpt import check_checkpoint


def check(tmp_path, state, **kwargs):
    return check_checkpoint(save(state, tmp_path / "ckpt.pt"), probes=False, **kwargs)


def by_id(report, check_id):
    return [f for f in report.findings if f.id == check_id]


def test_healthy_checkpoint_has_no_error_and_reads_format_and_usage(tmp_path):
    report = check(tmp_path, own_state())
    m = report.measurements
    assert m["format"] == "codecdoctor-codec/1" and m["architecture"] == "codecdoctor-codec"
    assert m["parameters"] > 0 and m["tensors_nonfinite"] == []
    assert [(q["codebook_size"], q["used"]) for q in m["quantizer"]] == [(16, 16), (16, 16)]
    # tiny config: 16 kHz / hop 40 = 400 frames/s × 2 codebooks × 4 bits
    assert m["bitrate_bps"] == pytest.approx(3200.0)
    assert not [f for f in report.findings if f.severity.label in ("error", "critical")], report.ids()
    assert {"C201", "C204", "C205", "C207", "C208", "C209", "Q402", "Q404", "S501"} <= set(report.checks_run)


def test_one_nan_parameter_is_c201_naming_the_tensor(tmp_path):
    state = own_state()
    name = "decoder.net.2.parametrizations.weight.original1"
    state["model"][name].view(-1)[0] = float("nan")
    report = check(tmp_path, state)
    found = by_id(report, "C201")
    assert found and found[0].subject == name and found[0].evidence["values_nonfinite"] == 1
    assert report.ids()[0] == "C201"
    assert report.measurements["tensors_nonfinite"] == [
        {"name": name, "nonfinite": 1, "numel": state["model"][name].numel()}]


def test_three_of_1024_codes_alive_is_q402(tmp_path):
    state = own_state(codebook_size=1024)
    set_ema_usage(state["model"], "quantizer.levels.0.", 3)
    report = check(tmp_path, state)
    found = by_id(report, "Q402")
    assert [f.subject for f in found] == ["quantizer.levels.0"] and found[0].evidence["used"] == 3
    assert report.measurements["quantizer"][0]["used"] == 3 and report.measurements["quantizer"][1]["used"] == 1024


def test_uninitialised_codebook_is_q404(tmp_path):
    state = own_state()
    state["model"]["quantizer.levels.1.initted"] = torch.tensor(False)
    report = check(tmp_path, state)
    assert [f.subject for f in by_id(report, "Q404")] == ["quantizer.levels.1"]


def test_collapsed_grad_scaler_is_c204(tmp_path):
    state = own_state()
    state["scaler"]["scale"] = 1e-4
    found = by_id(check(tmp_path, state), "C204")
    assert found and found[0].severity.label == "error"
    assert found[0].evidence["halvings_from_init"] == pytest.approx(math.log2(65536 / 1e-4))


def test_output_bound_none_is_c205_with_the_data_peak(tmp_path):
    from audio_fixtures import speech_like, write_audio

    state = own_state()
    state["config"]["output_bound"] = "none"
    data = tmp_path / "data"
    write_audio(data / "a.wav", speech_like(1.0, 16000, seed=1, peak=1.01), 16000)
    report = check_checkpoint(save(state, tmp_path / "c.pt"), data=data, probes=False, n_crops=1, crop_seconds=0.5)
    found = by_id(report, "C205")
    assert found and found[0].evidence["data_peak"] == pytest.approx(1.01, abs=1e-4)
    assert "above 1" in found[0].message


def test_learning_rate_1e_5_from_scratch_is_c209(tmp_path):
    state = own_state()
    state["train_args"]["learning_rate"] = 1e-5
    found = by_id(check(tmp_path, state), "C209")
    assert found and found[0].evidence["learning_rate"] == 1e-5


def test_learning_rate_1e_5_when_fine_tuning_is_fine(tmp_path):
    state = own_state()
    state["train_args"].update(learning_rate=1e-5, resume=True)
    assert not by_id(check(tmp_path, state), "C209")


def test_nonfinite_optimizer_state_is_c203(tmp_path):
    state = own_state()
    state["optimizer"] = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.tensor([1.0, float("inf")]),
                                        "exp_avg_sq": torch.ones(2)}},
                          "param_groups": [{"lr": 3e-4, "betas": (0.8, 0.99), "params": [0]}]}
    found = by_id(check(tmp_path, state), "C203")
    assert found and found[0].subject == "optimizer.state[0].exp_avg"


def test_negative_validation_snr_history_is_c208(tmp_path):
    state = own_state()
    for h, snr in zip(state["history"], [-8.0, -6.5, -5.0, -4.2]):
        h["val_snr_db"] = snr
    found = by_id(check(tmp_path, state), "C208")
    assert found and found[0].severity.label == "error" and found[0].evidence["val_snr_db"] == -4.2


def test_exploding_weight_and_half_precision_are_c202_c206(tmp_path):
    state = own_state()
    name = "encoder.net.0.parametrizations.weight.original1"
    state["model"][name] = state["model"][name] * 0 + 500.0
    other = "decoder.net.0.parametrizations.weight.original1"
    state["model"][other] = state["model"][other].half()
    report = check(tmp_path, state)
    assert [f.subject for f in by_id(report, "C202")] == [name]
    assert by_id(report, "C206")[0].subject == other


def test_lightning_checkpoint_strips_the_module_prefix(tmp_path):
    own = own_state()
    lightning = {"pytorch-lightning_version": "2.4.0", "global_step": 1200, "epoch": 3,
                 "state_dict": {f"model.{k}": v for k, v in own["model"].items()},
                 "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-4, "initial_lr": 2e-4,
                                                                      "betas": (0.9, 0.99), "params": []}]}],
                 "native_amp_scaling_state": {"scale": 0.5, "_growth_tracker": 0}}
    report = check(tmp_path, lightning)
    m = report.measurements
    assert m["format"] == "lightning" and m["architecture"] == "codecdoctor-codec"
    assert m["static"].prefix == "model." and [q["name"] for q in m["quantizer"]] == \
        ["quantizer.levels.0", "quantizer.levels.1"]
    assert by_id(report, "C204")  # scale 0.5 read from native_amp_scaling_state
    assert any("static checks only" in n for n in report.notes)


def test_unknown_architecture_without_model_is_static_only_and_says_so(tmp_path):
    state = {"net.0.weight": torch.randn(8, 4), "net.0.bias": torch.zeros(8)}
    report = check_checkpoint(save(state, tmp_path / "x.pt"), probes=True)
    assert report.measurements["format"] == "state_dict" and report.measurements["architecture"] == "unknown"
    assert report.measurements["model_built"] is False
    assert any("unknown architecture: static checks only" in n for n in report.notes)
    assert "C201" in report.checks_run and not any(c.startswith("C21") for c in report.checks_run)


def test_ema_counts_in_the_hundreds_are_not_exploding_weights(tmp_path):
    # EnCodec's cluster_size holds EMA counts (tokens per batch): RMS 500 is a statistic, not a weight
    state = own_state()
    for level in range(2):
        state["model"][f"quantizer.levels.{level}.cluster_size"] *= 100.0
        state["model"][f"quantizer.levels.{level}.embed_avg"] *= 100.0
    state["model"]["decoder.usage_count"] = torch.full((64,), 500.0)
    report = check(tmp_path, state)
    assert not by_id(report, "C202") and report.measurements["static"].statistics_skipped >= 5
    assert not by_id(report, "Q408")  # embed_avg / cluster_size unchanged


def test_s501_s503_stay_warnings_when_the_run_used_half_precision(tmp_path):
    state = {"model_state_dict": {"conv.weight": torch.randn(4, 1, 3) * 0.1}, "epoch": 2,
             "args": {"amp": True, "lr": 3e-4}}
    hot = check_checkpoint(save(state, tmp_path / "amp.pt"), probes=False, fft_sizes=[2048], amp=None)
    assert hot.measurements["static"].half_precision_evidence == ["saved argument amp=True"]
    assert [f.severity.label for f in by_id(hot, "S501")] == ["warning"]
    state["args"]["amp"] = False
    cold = check_checkpoint(save(state, tmp_path / "fp32.pt"), probes=False, fft_sizes=[2048])
    assert [f.severity.label for f in by_id(cold, "S501")] == ["info"]
    assert "were the loss run under float16" in by_id(cold, "S501")[0].message


def _flat_history(state: dict, lrs: list[float]) -> None:
    for h, snr, lr in zip(state["history"], [11.68, 11.70, 11.72, 11.73], lrs):
        h["val_snr_db"], h["lr"] = snr, lr


def test_flat_validation_at_full_learning_rate_is_a_c208_warning(tmp_path):
    state = own_state()
    _flat_history(state, [1e-3, 1e-3, 9e-4, 8e-4])
    found = by_id(check(tmp_path, state), "C208")
    assert found and found[0].severity.label == "warning" and "flat" in found[0].message


def test_flat_validation_after_the_learning_rate_annealed_is_only_info(tmp_path):
    state = own_state()
    _flat_history(state, [1e-3, 2e-4, 1.2e-4, 1e-4])  # a cosine schedule at its end
    found = by_id(check(tmp_path, state), "C208")
    assert found and found[0].severity.label == "info"
    assert found[0].evidence["lr_fraction_of_peak"] == pytest.approx(0.2)
