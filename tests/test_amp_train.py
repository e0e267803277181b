"""`codecdoctor train --amp fp16|bf16` on the CPU: real autocast, a real GradScaler on the model's
device, the spectral loss guarded in fp32, and no S5xx / T606 warning on a healthy run."""
from __future__ import annotations

import json
import math

import pytest
import torch
from test_train_cli import TINY, _corpus


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_train_amp_on_cpu_runs_for_real_without_s5xx_or_t606(cli, tmp_path, amp):
    data = _corpus(tmp_path / "data")
    code, _, err = cli("train", "--data_dir", data, "--checkpoint_dir", tmp_path / "ck", "--batch_size", "2",
                       "--num_epochs", "3", "--learning_rate", "1e-3", "--experiment_name", "run", *TINY,
                       "--amp", amp, "--device", "cpu", "--checks", "warn", "--json", tmp_path / "r.json",
                       "--html", "none", "--fail-on", "critical")
    assert code == 0, err  # six steps of an untrained codec: T608 on its validation SNR is expected
    report = json.loads((tmp_path / "r.json").read_text())
    loud = [f for f in report["findings"] if f["id"][:2] in ("S5", "T6") and f["id"] in
            ("S501", "S502", "S503", "S504", "T604", "T606") and f["severity"] != "info"]
    assert not loud, loud
    state = torch.load(tmp_path / "ck" / "run" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["train_args"]["amp"] == amp
    if amp == "fp16":
        # a real CPU GradScaler: float16 gradients scaled by 65536 overflow on the first steps, so it
        # calibrates down by halvings (skipped steps), then counts good steps in its growth tracker
        halvings = math.log2(65536.0 / state["scaler"]["scale"])
        assert halvings == int(halvings) and 1 <= halvings < 6
        assert state["scaler"]["_growth_tracker"] >= 1 and halvings + state["scaler"]["_growth_tracker"] <= 6
    else:
        assert not state["scaler"]  # bf16 needs no scaler
    assert all(h["val_snr_db"] == h["val_snr_db"] for h in report["measurements"]["history"])  # finite, not NaN


def test_autocast_really_casts_the_codec_to_half_on_cpu(tmp_path):
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig

    model = Codec(CodecConfig.preset("tiny"))
    x = torch.randn(2, 1, 4000) * 0.1
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(x)
    assert out.audio.dtype == torch.float16
