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
    # check-ckpt --amp runs a spectral loss under real autocast on the data's loudest crops; the
    # codec's own loss is guarded in fp32, so that measurement is kept but judges nothing
    from codecdoctor.check_ckpt import check_checkpoint

    checked = check_checkpoint(tmp_path / "ck" / "run" / "last.pt", data=data, amp=amp, probes=False, n_crops=2)
    assert checked.measurements["stft"].autocast_run is not None
    assert checked.measurements["stft"].stft_dtype == "float32"
    assert not [f for f in checked.findings if f.id.startswith("S50") and f.severity.label != "info"]
    assert all(h["val_snr_db"] == h["val_snr_db"] for h in report["measurements"]["history"])  # finite, not NaN


def test_autocast_really_casts_the_codec_to_half_on_cpu(tmp_path):
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig

    model = Codec(CodecConfig.preset("tiny"))
    x = torch.randn(2, 1, 4000) * 0.1
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(x)
    assert out.audio.dtype == torch.float16


@pytest.mark.slow
def test_fp16_autocast_reaches_the_fp32_validation_snr_within_1_db(tmp_path):
    """Same data, seed and step count: mixed precision must not cost quality. Autocast runs the
    convolutions in float16 (10-bit mantissa, ~3 significant digits) while the losses, the quantizer
    and the weights stay float32, so the two runs should land within run-to-run noise of each other;
    1 dB is the acceptance bound."""
    from codecdoctor.measure.stimuli import speech_like, write_audio
    from codecdoctor.train import TrainRequest, train

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        write_audio(data / f"utt{i}.wav", speech_like(4.0, 16000, seed=i, peak=0.6), 16000)
    snr = {}
    for amp in (None, "fp16"):
        request = TrainRequest(data_dir=str(data), checkpoint_dir=str(tmp_path / "ck"), experiment_name=amp or "fp32",
                               batch_size=4, num_epochs=1, steps_per_epoch=240, learning_rate=3e-3, config="tiny",
                               segment_seconds=0.25, max_val_crops=8, amp=amp, device="cpu", checks="off", seed=0)
        history = train(request).measurements["history"]
        snr[amp or "fp32"] = history[-1]["val_snr_db"]
    print(f"validation SNR after 240 steps: fp32 {snr['fp32']:.2f} dB, fp16 autocast {snr['fp16']:.2f} dB")
    assert snr["fp32"] > 3.0  # the codec learned something: the comparison means something
    assert abs(snr["fp16"] - snr["fp32"]) <= 1.0
