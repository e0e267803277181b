"""The training recipe's parts: the lapped linear path, weight EMA for validation and checkpoints,
quantizer warm-up with k-means on the trained encoder, the dB form of the SNR loss, and the rule
that an old checkpoint rebuilds the model it was trained as."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codecdoctor_model import Codec, CodecConfig, build_codec, load_checkpoint
from codecdoctor_model.losses import ReconstructionLoss
from codecdoctor_model.trainer import Trainer, TrainOptions


def _corpus(folder, seconds=(3.0, 2.0)):
    import soundfile as sf

    from codecdoctor.measure.stimuli import speech_like

    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seconds):
        sf.write(str(folder / f"f{i}.wav"), speech_like(s, 16000, seed=10 + i, peak=0.4 + 0.2 * i), 16000,
                 subtype="FLOAT")
    return folder


def _options(tmp_path, **kw):
    base = dict(data_dir=str(tmp_path / "data"), checkpoint_dir=str(tmp_path / "ckpt"), experiment_name="exp",
                batch_size=2, num_epochs=2, learning_rate=2e-3, segment_seconds=0.25, steps_per_epoch=3,
                max_val_crops=4, warmup_steps=2)
    base.update(kw)
    return TrainOptions(**base)


@pytest.mark.parametrize("length", [4000, 4017, 37, 320 * 7])
def test_linear_path_keeps_exact_lengths(length):
    torch.manual_seed(0)
    for cfg in (CodecConfig.tiny().replace(linear_path=True), CodecConfig().replace(linear_path=True)):
        codec = Codec(cfg)
        x = 0.3 * torch.randn(2, 1, length)
        out = codec(x)
        assert out.audio.shape == x.shape
        assert out.latent.shape[-1] == math.ceil(length / cfg.hop_length)


def test_linear_path_alone_learns_an_output_that_follows_the_input_in_a_few_steps():
    """The two linear layers by themselves fit a speech-like signal well above 0 dB within 60
    Adam steps (the deep path needs hundreds before its output follows the input): the reason
    the path exists."""
    from codecdoctor.measure.stimuli import speech_like

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = CodecConfig.tiny().replace(linear_path=True)
    codec = Codec(cfg)
    encode, decode = codec.encoder.linear, codec.decoder.linear
    x = torch.from_numpy(speech_like(2.0, 16000, seed=3, peak=0.5)).view(8, 1, -1)
    opt = torch.optim.Adam([*encode.parameters(), *decode.parameters()], lr=3e-3)

    def snr_db() -> float:
        with torch.no_grad():
            y = decode(encode(x))
        return float(10 * torch.log10(x.pow(2).sum() / (x - y).pow(2).sum()))

    start = snr_db()
    for _ in range(60):
        loss = (decode(encode(x)) - x).pow(2).sum() / x.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert snr_db() > max(start, 0.0) + 6.0, (start, snr_db())


def test_a_checkpoint_from_before_the_linear_path_rebuilds_without_it():
    old = CodecConfig.tiny().to_dict()
    del old["linear_path"], old["snr_loss"]
    cfg = CodecConfig.from_dict(old)
    assert cfg.linear_path is False and cfg.snr_loss == "linear"
    state = Codec(CodecConfig.tiny().replace(linear_path=False)).state_dict()
    codec = build_codec({"config": old, "model": state})
    assert codec.encoder.linear is None and codec.decoder.linear is None
    assert not any(".linear." in name for name in codec.state_dict())


def test_snr_loss_in_db_is_log10_of_the_batch_noise_to_signal_ratio():
    torch.manual_seed(0)
    x = 0.3 * torch.randn(2, 1, 4000)
    y = x + 0.1 * torch.randn_like(x)
    commit = torch.zeros(())
    linear = ReconstructionLoss(CodecConfig.tiny().replace(snr_loss="linear"))(y, x, commit)
    db = ReconstructionLoss(CodecConfig.tiny().replace(snr_loss="db"))(y, x, commit)
    nsr = float((y - x).pow(2).sum() / x.pow(2).sum())
    assert float(linear["nsr"]) == pytest.approx(nsr, rel=1e-5)
    rest = float(linear["total"]) - nsr
    assert float(db["total"]) == pytest.approx(rest + math.log10(nsr), rel=1e-4)
    with pytest.raises(ValueError):
        CodecConfig(snr_loss="cubic")


def test_weight_ema_is_what_validation_measures_and_checkpoints_deliver(tmp_path):
    _corpus(tmp_path / "data")
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, weight_ema_decay=0.9, max_steps=4))
    trainer.fit()
    live = trainer.model.state_dict()
    averaged = trainer.ema_model.state_dict()
    weight = "decoder.net.0.parametrizations.weight.original1"
    assert not torch.equal(live[weight], averaged[weight])  # a real average, not a copy
    assert torch.equal(live["quantizer.levels.0.embed"], averaged["quantizer.levels.0.embed"])  # codebooks follow
    state = load_checkpoint(trainer.last_path)
    assert torch.equal(state["model"][weight], averaged[weight])
    assert torch.equal(state["train_weights"][weight], live[weight])
    # validation scores the averaged weights: re-scoring them by hand gives the history's number
    from codecdoctor_model.trainer import snr_db

    codec = build_codec(state)
    with torch.no_grad():
        est = codec(trainer.validation_set).audio
    assert snr_db(trainer.validation_set, est) == pytest.approx(trainer.history[-1]["val_snr_db"], abs=1e-6)


def test_resume_with_weight_ema_reproduces_the_uninterrupted_run(tmp_path):
    _corpus(tmp_path / "data")

    class Losses:
        def __init__(self):
            self.values = []

        def on_batch(self, x, y, losses):
            self.values.append(float(losses["total"].detach()))

    kw = dict(weight_ema_decay=0.9, quantizer_warmup_steps=2)
    straight = Losses()
    full = Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="straight", max_steps=5, **kw), [straight])
    full.fit()
    Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="cut", max_steps=4, **kw)).fit()
    second = Losses()
    resumed = Trainer(CodecConfig.tiny(), _options(tmp_path, experiment_name="cut", max_steps=5, resume=True, **kw),
                      [second])
    resumed.fit()
    assert second.values == [straight.values[4]]
    for name, value in full.ema_model.state_dict().items():
        assert torch.equal(value, resumed.ema_model.state_dict()[name]), name


def test_quantizer_warmup_trains_unquantized_then_initialises_codebooks_on_the_trained_encoder(tmp_path):
    _corpus(tmp_path / "data")

    class Watch:
        def __init__(self):
            self.initted, self.commit = [], []

        def on_batch(self, x, y, losses):
            self.initted.append(bool(trainer.model.quantizer.levels[0].initted))
            self.commit.append(float(losses["commit"].detach()))

    watch = Watch()
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, quantizer_warmup_steps=3, max_steps=5), [watch])
    trainer.fit()
    assert watch.initted == [False, False, False, True, True]
    assert watch.commit[:3] == [0.0, 0.0, 0.0] and watch.commit[3] > 0
    codes = trainer.model.encode(trainer.validation_set)
    assert codes.unique().numel() > 1  # k-means found more than one cluster in the trained latents


def test_default_recipe_is_stated_in_the_defaults():
    """The defaults are the recipe bench_codec measures: a regression here changes docs/BENCHMARKS.md's numbers."""
    cfg, opts = CodecConfig(), TrainOptions(data_dir="x")
    assert cfg.linear_path is True
    assert cfg.bitrate_bps == 6000 and cfg.n_codebooks == 12
    assert opts.segment_seconds <= 0.5 and opts.batch_size == 16
    assert opts.warmup_steps is None or opts.warmup_steps <= 100
    assert np.isfinite(cfg.mel_weight)


def test_lr_decay_planned_on_the_time_budget_ends_with_the_budget(tmp_path):
    """With --max-minutes the cosine follows the clock: at the peak when the warm-up ends, at the
    floor when the budget runs out, even though the planned epochs are far from done; a resumed run
    spends its own budget on the part of the decay the earlier run left."""
    _corpus(tmp_path / "data")
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1000, max_minutes=1.0))
    peak = trainer.options.learning_rate
    assert trainer._budget_progress(30.0, None) == 0.0  # still warming up
    assert trainer._budget_progress(10.0, 10.0) == 0.0
    assert trainer._budget_progress(35.0, 10.0) == pytest.approx(0.5)
    assert trainer._budget_progress(90.0, 10.0) == 1.0
    step = trainer.warmup_steps + 5
    assert trainer.lr_at(step, 0.0) == pytest.approx(peak, rel=1e-3)  # the epoch plan barely moved
    assert trainer.lr_at(step, 0.5) == pytest.approx(peak * (0.1 + 0.9 * 0.5))
    assert trainer.lr_at(step, 1.0) == pytest.approx(peak * trainer.options.min_lr_ratio)
    trainer._budget_progress_start = 0.6  # what a resumed run reads from the checkpoint
    assert trainer._budget_progress(10.0, 10.0) == pytest.approx(0.6)
    assert trainer._budget_progress(35.0, 10.0) == pytest.approx(0.8)
    off = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1000, max_minutes=1.0, lr_decay_on_budget=False))
    assert off._budget_progress(90.0, 10.0) == 0.0


def test_a_run_on_a_time_budget_ends_at_the_floor_and_resume_continues_there(tmp_path):
    _corpus(tmp_path / "data")
    # no warm-up and a budget of 30 ms, over after the first step (its k-means alone takes longer)
    trainer = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1000, max_minutes=0.0005, warmup_steps=0))
    result = trainer.fit()
    assert result.stop_reason == "max_minutes"
    state = load_checkpoint(result.last_checkpoint)
    assert state["scheduler"]["budget_progress"] == 1.0
    resumed = Trainer(CodecConfig.tiny(), _options(tmp_path, num_epochs=1000, max_minutes=0.0005, warmup_steps=0,
                                                   resume=True))
    assert resumed.budget_progress == 1.0
    assert resumed.lr_at(resumed.step + 10, resumed.budget_progress) == pytest.approx(
        resumed.options.learning_rate * resumed.options.min_lr_ratio)


def test_codebook_memory_lengthens_as_training_proceeds():
    from codecdoctor_model.quantizer import codebook_decay_at

    decays = [codebook_decay_at(s, 0.9, 0.99) for s in range(0, 3000, 10)]
    assert decays[0] == 0.9 and decays[-1] == 0.99
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert codebook_decay_at(500, 0.9, None) == 0.9  # fixed decay (checkpoints from before the ramp)
    assert CodecConfig.from_dict({k: v for k, v in CodecConfig().to_dict().items()
                                  if k != "ema_decay_final"}).ema_decay_final is None
    codec = Codec(CodecConfig.tiny())
    codec.quantizer.set_decay(0.97)
    assert {level.decay for level in codec.quantizer.levels} == {0.97}
