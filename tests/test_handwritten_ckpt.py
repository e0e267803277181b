"""Acceptance: a team's own hand-written codec and training checkpoint, with no code written for
codecdoctor. The module file lives in tmp_path (conv encoder, an RVQ of nn.Embedding codebooks
with a `usage` count buffer, a decoder ending in nn.Tanh); the checkpoint is what their loop saves:
{"epoch", "model_state_dict", "optimizer_state_dict", "val_snr", "args"} with real Adam state.
"""
from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np
import pytest
import torch

from codecdoctor.check_ckpt import check_checkpoint
from codecdoctor.probe import probe

SR = 8000

TELUGU_CODEC = textwrap.dedent('''
    import torch
    from torch import nn


    class VQ(nn.Module):
        def __init__(self, codebook_size, dim):
            super().__init__()
            self.codebook = nn.Embedding(codebook_size, dim)
            self.register_buffer("usage", torch.zeros(codebook_size))

        def forward(self, z):
            flat = z.permute(0, 2, 1).reshape(-1, z.shape[1])
            idx = torch.cdist(flat, self.codebook.weight).argmin(-1)
            if self.training:
                self.usage += torch.bincount(idx, minlength=self.usage.numel()).float()
            q = self.codebook(idx).reshape(z.shape[0], z.shape[2], -1).permute(0, 2, 1)
            return z + (q - z).detach(), idx.reshape(z.shape[0], -1)


    class RVQ(nn.Module):
        def __init__(self, n_q, codebook_size, dim):
            super().__init__()
            self.layers = nn.ModuleList(VQ(codebook_size, dim) for _ in range(n_q))

        def forward(self, z):
            residual, out, codes = z, 0, []
            for layer in self.layers:
                q, idx = layer(residual)
                residual = residual - q
                out = out + q
                codes.append(idx)
            return out, torch.stack(codes, 1)


    class TeluguCodec(nn.Module):
        def __init__(self, hidden, latent_dim=8, n_q=2, codebook_size=32, hop=8, normalize=False):
            super().__init__()
            self.normalize = normalize
            self.encoder = nn.Sequential(nn.Conv1d(1, hidden, 7, padding=3), nn.ELU(),
                                         nn.Conv1d(hidden, latent_dim, 2 * hop, stride=hop, padding=hop // 2))
            self.quantizer = RVQ(n_q, codebook_size, latent_dim)
            self.decoder = nn.Sequential(nn.ConvTranspose1d(latent_dim, hidden, 2 * hop, stride=hop, padding=hop // 2),
                                         nn.ELU(), nn.Conv1d(hidden, 1, 7, padding=3), nn.Tanh())

        def forward(self, x):
            if self.normalize:  # the saga's round 1: every example scaled to unit peak
                x = x / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
            q, codes = self.quantizer(self.encoder(x))
            return self.decoder(q), codes


    class NoTanh(TeluguCodec):
        """Round 2 of the saga: the decoder's tanh removed (same weights, nothing bounds the output)."""

        def __init__(self, hidden, **kwargs):
            super().__init__(hidden, **kwargs)
            self.decoder = self.decoder[:-1]


    class LatentOnly(TeluguCodec):
        def forward(self, x):
            return self.encoder(x)


    def build(checkpoint):
        args = checkpoint["args"]
        model = TeluguCodec(hidden=args.hidden, codebook_size=args.codebook_size)
        model.load_state_dict(checkpoint["model_state_dict"])
        return model
''')


@pytest.fixture(scope="module")
def codec_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "telugu_codec.py").write_text(TELUGU_CODEC)
    import importlib.util

    spec = importlib.util.spec_from_file_location("telugu_codec_for_tests", folder / "telugu_codec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return folder, module


def _speech_pool() -> np.ndarray:
    from codecdoctor.measure.stimuli import speech_like

    x = np.asarray(speech_like(4.0, SR, seed=11), dtype=np.float32).reshape(-1)
    return x / max(np.abs(x).max(), 1e-6)


def _speech_batch(pool: np.ndarray, rng, batch: int, length: int) -> torch.Tensor:
    """Random crops of one speech-like recording at random levels (-21 ... -1 dBFS peak)."""
    rows = []
    for _ in range(batch):
        start = int(rng.integers(0, pool.size - length))
        crop = pool[start:start + length]
        rows.append(crop / max(np.abs(crop).max(), 1e-6) * rng.uniform(0.09, 0.9))
    return torch.as_tensor(np.stack(rows))[:, None, :]


def _train(module, *, normalize: bool, steps: int, seed: int = 0):
    """Their loop: Adam on L1 against the (normalised) input; returns model, optimizer, args."""
    torch.manual_seed(seed)
    args = argparse.Namespace(hidden=16, codebook_size=32, sample_rate=SR, lr=3e-3, batch_size=4, epochs=3,
                              normalize=normalize)
    model = module.TeluguCodec(hidden=args.hidden, codebook_size=args.codebook_size, normalize=normalize)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(seed)
    pool = _speech_pool()
    for _ in range(steps):
        x = _speech_batch(pool, rng, args.batch_size, 1024)
        target = x / x.abs().amax(dim=-1, keepdim=True) if normalize else x
        y, _ = model(x)
        loss = (y - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, optimizer, args


@pytest.fixture(scope="module")
def trained(codec_module, tmp_path_factory):
    """Checkpoints saved the way the team's train_codec.py saves them."""
    _, module = codec_module
    out = tmp_path_factory.mktemp("ckpts")
    paths = {}
    # the normalising model is trained (30 steps) so it really responds; the plain one only needs real Adam state
    for name, normalize, steps in (("plain", False, 5), ("normalising", True, 30)):
        model, optimizer, args = _train(module, normalize=normalize, steps=steps)
        state = {"epoch": 3, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                 "val_snr": -3.2, "args": args}
        torch.save(state, out / f"{name}.pt")
        paths[name] = out / f"{name}.pt"
    return paths


def _ids(report, severities=("warning", "error", "critical")):
    return [f.id for f in report.findings if f.severity.label in severities]


def test_static_checks_read_the_handwritten_checkpoint_without_false_alarms(trained):
    report = check_checkpoint(trained["plain"], probes=False, fft_sizes=[512, 1024, 2048])
    m = report.measurements
    static = m["static"]
    assert static.weights_key == "model_state_dict" and m["format"] == "state_dict"
    # Adam's exp_avg / exp_avg_sq are optimizer state (C203 scans them), never weights (C202)
    saved = torch.load(trained["plain"], weights_only=False)
    adam_state = saved["optimizer_state_dict"]["state"]
    assert static.optimizer_tensors == sum(len(s) for s in adam_state.values()) > 0  # step, exp_avg, exp_avg_sq
    saved = saved["model_state_dict"]
    assert "C202" not in _ids(report) and "C203" in report.checks_run
    assert not any(name.startswith("optimizer") for name in [t.name for t in static.weights_vanishing])
    # the usage counters are statistics, not weights
    assert static.statistics_skipped == 2
    # no GradScaler, no fp16 tensor, no amp flag: S501-S503 are info, worded as hypothetical
    assert not [i for i in _ids(report) if i.startswith("S50")]
    assert all("were the loss run under float16" in f.message for f in report.findings if f.id in ("S501", "S502"))
    # the RVQ of nn.Embedding codebooks is recognised, with usage from the `usage` buffers
    q = m["quantizer"]
    assert [(lv["name"], lv["codebook_size"], lv["source"]) for lv in q] == \
        [("quantizer.layers.0", 32, "counts"), ("quantizer.layers.1", 32, "counts")]
    usage = saved["quantizer.layers.0.usage"]
    share = usage / usage.sum()
    assert q[0]["used"] == int((share >= 0.01 / 32).sum()) and q[0]["count_buffer"] == "quantizer.layers.0.usage"
    assert {"Q401", "Q402", "Q404"} <= set(report.checks_run)
    # val_snr: -3.2 saved next to the weights is C208, an error
    c208 = [f for f in report.findings if f.id == "C208"]
    assert c208 and c208[0].severity.label == "error" and c208[0].evidence["val_snr_db"] == -3.2


def test_class_spec_builds_from_saved_args_and_runs_probes_and_data(trained, codec_module, tmp_path):
    from audio_fixtures import speech_like, write_audio

    folder, _ = codec_module
    write_audio(tmp_path / "data" / "a.wav", speech_like(1.0, SR, seed=5, peak=0.7), SR)
    report = check_checkpoint(trained["plain"], model=f"{folder / 'telugu_codec.py'}:TeluguCodec",
                              data=tmp_path / "data", n_crops=2, crop_seconds=0.5)
    m = report.measurements
    load = m["model_load"]
    assert load.clean and load.loaded == len(torch.load(trained["plain"], weights_only=False)["model_state_dict"])
    # `hidden` is required and only the saved args (an argparse.Namespace) have it
    assert load.kwargs_sources["hidden"] == "checkpoint args" and load.kwargs_sources["codebook_size"] == "checkpoint args"
    assert "C217" in report.checks_run and "C217" not in _ids(report)
    assert m["model_built"] is True and "C210" in report.checks_run
    # the probes ran through the model's own forward: every sweep level came back
    assert len(m["probes"].rms_out_db) == 15 and m["probes"].idle_rms_dbfs is not None
    # codes from the forward's integer outputs, one level per VQ module; reconstruction on the crops
    on_data = m["quantizer_on_data"]["levels"]
    assert len(on_data) == 2 and all(lv["codebook_size"] == 32 for lv in on_data)
    assert m["quantizer_on_data"]["frames"] == 2 * 4000 // 8
    # entropy per level (DAC's compute_entropy) and the effective bitrate: 1000 frames/s × bits
    on = m["quantizer_on_data"]
    assert on["frame_rate_hz"] == pytest.approx(1000.0) and on["nominal_bitrate_bps"] == pytest.approx(10000.0)
    assert on["effective_bitrate_bps"] == pytest.approx(1000.0 * sum(lv["entropy_bits"] for lv in on_data))
    assert 0 < on["effective_bitrate_bps"] <= on["nominal_bitrate_bps"]
    recon = m["reconstruction"]
    assert len(recon["crops"]) == 2 and recon["total_snr_db"] is not None and recon["mean_snr_db"] is not None
    assert any("driving TeluguCodec.forward at 8000 Hz" in n for n in report.notes)


def test_trained_per_example_normalising_model_is_c210(trained, codec_module):
    folder, _ = codec_module
    report = probe(trained["normalising"], model=f"{folder / 'telugu_codec.py'}:TeluguCodec")
    p = report.measurements["probes"]
    found = [f for f in report.findings if f.id == "C210"]
    assert found and found[0].severity.label == "error", report.ids()
    assert abs(p.level_slope_db_per_db) < 0.1  # the output level does not follow the input level
    assert "normalisation" in found[0].message


def test_wrong_shape_state_dict_is_c217_and_dynamic_checks_stop(trained, codec_module, cli, tmp_path):
    folder, _ = codec_module
    code, out, err = cli("check-ckpt", trained["plain"], "--model", f"{folder / 'telugu_codec.py'}:TeluguCodec",
                         "--model-kwargs", '{"hidden": 24}', "--json", tmp_path / "r.json", "--html", "none")
    report = json.loads((tmp_path / "r.json").read_text())
    c217 = [f for f in report["findings"] if f["id"] == "C217"]
    assert code == 1 and c217 and c217[0]["severity"] == "error"
    load = report["measurements"]["model_load"]
    # every conv touching the 16 -> 24 channel change has the wrong shape
    assert load["shape_mismatch"] == 6 and load["missing"] == 0 and load["unexpected"] == 0
    assert "encoder.0.weight: checkpoint [16, 1, 7], model [24, 1, 7]" in load["shape_mismatch_examples"]
    assert "probes" not in report["measurements"] and any("C217" in n for n in report["notes"])


def test_dataparallel_and_compile_prefixes_load(trained, codec_module, tmp_path):
    folder, _ = codec_module
    state = torch.load(trained["plain"], weights_only=False)
    state["model_state_dict"] = {f"module._orig_mod.{k}": v for k, v in state["model_state_dict"].items()}
    torch.save(state, tmp_path / "ddp.pt")
    report = check_checkpoint(tmp_path / "ddp.pt", model=f"{folder / 'telugu_codec.py'}:TeluguCodec", probes=False)
    assert report.measurements["model_load"].clean
    assert any("'module._orig_mod.'" in n for n in report.notes)
    # the static checks strip it too: codebooks named without the wrapper
    assert [lv["name"] for lv in report.measurements["quantizer"]] == ["quantizer.layers.0", "quantizer.layers.1"]


def test_factory_receives_the_nested_checkpoint(trained, codec_module):
    folder, _ = codec_module
    report = probe(trained["normalising"], model=f"{folder / 'telugu_codec.py'}:build")
    # build() makes the model without normalisation: the trained weights then respond to the input level
    assert report.measurements["probes"].level_slope_db_per_db is not None
    assert report.measurements["model_load"].checked is False  # the factory loaded the weights itself


@pytest.mark.parametrize("spec_tail, kwargs, message", [
    (":NoSuchClass", None, "has no 'NoSuchClass'"),
    (":LatentOnly", None, "returned nothing audio-like"),
    (":TeluguCodec", '{"hidden": 16, "nonsense": 1}', "takes no argument 'nonsense'"),
])
def test_bad_model_input_is_one_line_exit_2(trained, codec_module, cli, spec_tail, kwargs, message):
    folder, _ = codec_module
    extra = ["--model-kwargs", kwargs] if kwargs else []
    code, out, err = cli("check-ckpt", trained["plain"], "--model", f"{folder / 'telugu_codec.py'}{spec_tail}",
                         *extra, "--json", "none", "--html", "none")
    assert code == 2 and message in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_spec_that_does_not_import_and_constructor_needing_arguments_exit_2(codec_module, cli, tmp_path):
    folder, module = codec_module
    (tmp_path / "broken_codec.py").write_text("import torch\nclass Codec(torch.nn.Module:\n    pass\n")
    weights = module.TeluguCodec(hidden=16).state_dict()
    torch.save({"model_state_dict": weights, "epoch": 1}, tmp_path / "bare.pt")  # no saved args
    code, _, err = cli("check-ckpt", tmp_path / "bare.pt", "--model", f"{tmp_path / 'broken_codec.py'}:Codec")
    assert code == 2 and "cannot import" in err and "SyntaxError" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("probe", tmp_path / "bare.pt", "--model", f"{folder / 'telugu_codec.py'}:TeluguCodec")
    assert code == 2 and "needs hidden" in err and "--model-kwargs" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("probe", tmp_path / "bare.pt", "--model", "no_such_package_xyz.codec:Codec")
    assert code == 2 and "cannot import no_such_package_xyz.codec" in err


def test_output_bound_is_read_from_the_module_that_makes_the_output(trained, codec_module):
    folder, _ = codec_module
    bounded = check_checkpoint(trained["plain"], model=f"{folder / 'telugu_codec.py'}:TeluguCodec", probes=False)
    assert bounded.measurements["static"].output_bound == "tanh" and "C205" not in bounded.ids()
    unbounded = check_checkpoint(trained["plain"], model=f"{folder / 'telugu_codec.py'}:NoTanh", probes=False)
    assert unbounded.measurements["static"].output_bound == "none"
    assert [f.id for f in unbounded.findings if f.id == "C205"] == ["C205"]
