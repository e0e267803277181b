"""The trainer: exact resume, callbacks that stop training, non-finite stops, checkpoint contents."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codecdoctor_model import CodecConfig, load_checkpoint
from codecdoctor_model.trainer import Trainer, TrainingStopped, TrainOptions, TrainSetupError


def _corpus(folder, seconds=(3.0, 2.0)):
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * max(seconds))) / 16000
    for i, s in enumerate(seconds):
        n = int(16000 * s)
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t[:n]) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t[:n]))
        sf.write(str(folder / f"f{i}.wav"), (x + 0.01 * rng.standard_normal(n)).astype(np.float32), 16000,
                 subtype="FLOAT")
    return folder


def _options(tmp_path, **kw):
    base = dict(data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "ckpt"), experiment_name="exp",
                batch_size=2, num_epochs=2, learning_rate=2e-3, segment_seconds=0.25, steps_per_epoch=3,
                max_val_crops=4)
    base.update(kw)
    return TrainOptions(**base)


class LossRecorder:
    def __init__(self):
        self.losses = []

    def on_batch(self, x, y, losses):
        self.losses.append(float(losses["total"].detach()))


@pytest.fixture
def data(tmp_path):
    return _corpus(tmp_path / "data")


def test_resume_reproduces_the_uninterrupted_loss_exactly(tmp_path, data):
    torch.manual_seed(123)
    straight = LossRecorder()
    Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="straight", max_steps=5), [straight]).fit()
    first = LossRecorder()
    result = Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="cut", max_steps=4), [first]).fit()
    assert result.stop_reason == "max_steps" and load_checkpoint(result.last_checkpoint)["step"] == 4
    torch.manual_seed(999)  # the resumed process starts from a different global RNG state
    second = LossRecorder()
    Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="cut", max_steps=5, resume=True), [second]).fit()
    assert first.losses == straight.losses[:4]
    assert second.losses == [straight.losses[4]]  # step k+1 identical, bit for bit


def test_checkpoint_holds_the_documented_state_and_history(tmp_path, data):
    result = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=2)).fit()
    assert result.stop_reason == "completed" and result.steps == 6
    state = torch.load(result.last_checkpoint, weights_only=True)
    for key in ("format", "config", "model", "optimizer", "scaler", "scheduler", "step", "epoch", "history",
                "train_args", "rng"):
        assert key in state, key
    assert state["epoch"] == 2 and len(state["history"]) == 2
    entry = state["history"][-1]
    for key in ("epoch", "step", "train_loss", "val_snr_db", "val_si_snr_db", "val_mel_distance", "lr"):
        assert isinstance(entry[key], (int, float)) and math.isfinite(entry[key]), key
    assert state["train_args"]["learning_rate"] == 2e-3
    assert result.best_checkpoint is not None
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert best["history"][-1]["val_snr_db"] == max(h["val_snr_db"] for h in state["history"])


class FailAtStep:
    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_batch(self, x, y, losses):
        self.seen += 1
        if self.seen == self.step:
            raise RuntimeError("monitor says stop")


def test_callback_exception_stops_without_checkpointing_the_bad_step(tmp_path, data):
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, save_every=1), [FailAtStep(3)])
    with pytest.raises(RuntimeError, match="monitor says stop"):
        trainer.fit()
    assert load_checkpoint(trainer.last_path)["step"] == 2


def test_all_hooks_are_called_in_order(tmp_path, data):
    calls = []

    class Spy:
        def on_batch(self, x, y, losses):
            assert x.shape == y.shape and "total" in losses
            calls.append("batch")

        def on_backward(self, model):
            assert any(p.grad is not None for p in model.parameters())
            calls.append("backward")

        def on_step(self, scaler=None):
            calls.append("step")

        def on_validation(self, ref, est):
            assert ref.shape == est.shape and ref.shape[0] == 2  # one held-out crop per file
            calls.append("validation")

    Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1), [Spy()]).fit()
    assert calls == ["batch", "backward", "step"] * 3 + ["validation"]


def test_non_finite_loss_stops_training_even_without_a_monitor(tmp_path, data):
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, save_every=1))
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    trainer.model.decoder.register_forward_hook(poison)
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    assert info.value.reason == "nonfinite_loss" and info.value.step == 2
    assert "mel" in info.value.details["terms"]
    assert load_checkpoint(trainer.last_path)["step"] == 2


def test_input_out_of_any_audio_range_stops_training(tmp_path):
    import soundfile as sf

    folder = tmp_path / "data"
    folder.mkdir()
    sf.write(str(folder / "int_scale.wav"), (3000 * np.ones(16000)).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.raises(TrainingStopped) as info:
        Trainer(CodecConfig.tiny(), _options(tmp_path)).fit()
    assert info.value.reason == "input_range"


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path, data):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TrainSetupError, match="not writable"):
        Trainer(CodecConfig.tiny(), _options(tmp_path, checkpoint_dir=str(blocker / "sub")))


def test_resume_without_a_checkpoint_is_a_setup_error(tmp_path, data):
    with pytest.raises(TrainSetupError, match="no checkpoint"):
        Trainer(CodecConfig.tiny(), _options(tmp_path, resume=True))


def test_max_minutes_budget_stops_and_saves(tmp_path, data):
    result = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1000, max_minutes=0.0)).fit()
    assert result.stop_reason == "max_minutes" and result.steps == 1
    assert result.history[-1]["partial"] is True
    assert load_checkpoint(result.last_checkpoint)["step"] == 1


def test_lr_schedule_warms_up_then_decays_to_the_floor(tmp_path, data):
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=10, warmup_steps=5))
    lrs = [trainer.lr_at(s) for s in range(30)]
    assert lrs[0] == pytest.approx(2e-3 / 5) and lrs[4] == pytest.approx(2e-3)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[29] == pytest.approx(2e-4, rel=0.05)


@pytest.mark.parametrize("extra", [{"adversarial": True}, {"amp": "bf16"}], ids=["adversarial", "amp-bf16-cpu"])
def test_adversarial_and_bf16_autocast_steps_run_and_stay_finite(tmp_path, data, extra):
    seen = LossRecorder()
    result = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1, **extra), [seen]).fit()
    assert result.steps == 3 and all(math.isfinite(v) for v in seen.losses)
    if extra.get("adversarial"):
        state = torch.load(result.last_checkpoint, weights_only=True)
        assert "discriminator" in state and "disc_optimizer" in state
        assert "train_adv" in state["history"][-1] and "train_feat" in state["history"][-1]


def test_an_unknown_amp_dtype_is_refused_before_training(tmp_path, data):
    # fp16 runs on the CPU for real (tests/test_amp_train.py); a dtype autocast has no name for does not
    with pytest.raises(TrainSetupError, match="bf16 or fp16"):
        Trainer(CodecConfig.tiny(), _options(tmp_path, amp="fp8", device="cpu"))
