"""Training crops: seeking reads, bounded memory, resampling, bad files, validation split."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from audio_fixtures import speech_like, write_audio

from codecdoctor_model.dataset import CropSource, DataError, StepBatchSampler


def test_crops_from_a_long_file_keep_memory_flat(tmp_path):
    seconds = 240
    write_audio(tmp_path / "long.wav", speech_like(seconds, 16000, seed=1), subtype="PCM_16")
    full_load_bytes = seconds * 16000 * 4  # float32 of the whole file: 15.4 MB
    tracemalloc.start()
    try:
        source = CropSource(tmp_path, segment_samples=4000, max_val_crops=4)
        for i in range(30):
            crop = source.train_crop(i)
            assert crop.shape == (1, 4000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full_load_bytes / 20, f"peak {peak} bytes while cropping"


def test_crop_is_a_pure_function_of_index(tmp_path):
    write_audio(tmp_path / "a.wav", speech_like(5, 16000, seed=1))
    write_audio(tmp_path / "b.wav", speech_like(7, 16000, seed=2))
    one = CropSource(tmp_path, segment_samples=2000, seed=3)
    two = CropSource(tmp_path, segment_samples=2000, seed=3)
    assert torch.equal(one.train_crop(41), two.train_crop(41))
    assert not torch.equal(one.train_crop(41), one.train_crop(42))


def test_validation_crops_are_deterministic_and_come_from_the_held_out_tail(tmp_path):
    x = speech_like(10, 16000, seed=1)
    write_audio(tmp_path / "a.wav", x)
    source = CropSource(tmp_path, segment_samples=4000, val_fraction=0.2, max_val_crops=8)
    f = source.files[0]
    assert f.val_start == 128000 and f.train_stop == 128000
    val = source.validation_crops()
    assert val.shape == (8, 1, 4000)
    assert torch.equal(val, source.validation_crops())
    assert np.allclose(val[0, 0].numpy(), x[128000:132000], atol=1e-6)
    for i in range(20):  # training crops never reach into the held-out part
        rng = np.random.default_rng([source.seed, i])
        rng.choice(1, p=[1.0])
        start = int(rng.integers(0, f.train_stop - 4000 + 1))
        assert start + 4000 <= f.train_stop


def test_other_sample_rate_is_resampled_with_a_warning_naming_the_file(tmp_path):
    write_audio(tmp_path / "ok.wav", speech_like(3, 16000, seed=1))
    write_audio(tmp_path / "at48k.wav", speech_like(3, 48000, seed=2), sample_rate=48000)
    source = CropSource(tmp_path, segment_samples=4000)
    assert any("at48k.wav (48000 Hz)" in w and "resampling" in w for w in source.warnings)
    f48 = next(f for f in source.files if f.sample_rate == 48000)
    crop = source.read(f48, 0, 4000)
    assert crop.shape == (1, 4000) and float(crop.abs().max()) > 0.05


def test_strict_rate_refuses_mixed_rates(tmp_path):
    write_audio(tmp_path / "ok.wav", speech_like(3, 16000, seed=1))
    write_audio(tmp_path / "at8k.wav", speech_like(3, 8000, seed=2), sample_rate=8000)
    with pytest.raises(DataError, match="at8k.wav"):
        CropSource(tmp_path, segment_samples=4000, strict_rate=True)


def test_corrupt_file_is_skipped_with_a_warning_and_the_rest_is_used(tmp_path):
    write_audio(tmp_path / "good.wav", speech_like(3, 16000, seed=1))
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    source = CropSource(tmp_path, segment_samples=4000)
    assert [f.rel for f in source.files] == ["good.wav"]
    assert any("broken.wav" in w and "unreadable" in w for w in source.warnings)


def test_short_files_are_padded_or_skipped_as_stated(tmp_path):
    write_audio(tmp_path / "long.wav", speech_like(3, 16000, seed=1))
    write_audio(tmp_path / "short.wav", speech_like(0.1, 16000, seed=2))
    padded = CropSource(tmp_path, segment_samples=4000)
    assert any("short.wav" in w and "zero-padded" in w for w in padded.warnings)
    short = next(f for f in padded.files if f.rel == "short.wav")
    crop = padded.read(short, 0, 4000)
    assert crop.shape == (1, 4000) and float(crop[0, 1600:].abs().max()) == 0.0
    skipped = CropSource(tmp_path, segment_samples=4000, short_files="skip")
    assert [f.rel for f in skipped.files] == ["long.wav"]
    assert any("short.wav" in w and "skipped" in w for w in skipped.warnings)


def test_no_audio_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        CropSource(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no audio files"):
        CropSource(tmp_path)


def test_near_silent_crops_can_be_skipped(tmp_path):
    x = speech_like(4, 16000, seed=1)
    x[: 3 * 16000] = 0.0  # three silent seconds, one speech second
    write_audio(tmp_path / "mostly_silent.wav", x)
    source = CropSource(tmp_path, segment_samples=2000, val_fraction=0.0, min_crop_rms_db=-50)
    rms = [float(source.train_crop(i).pow(2).mean().sqrt()) for i in range(10)]
    assert sum(r > 10 ** (-50 / 20) for r in rms) >= 8


def test_multichannel_file_is_averaged_to_mono(tmp_path):
    write_audio(tmp_path / "stereo.wav", speech_like(3, 16000, seed=1, channels=2))
    source = CropSource(tmp_path, segment_samples=4000)
    assert source.train_crop(0).shape == (1, 4000)
    assert any("stereo.wav" in w for w in source.warnings)


def test_step_batch_sampler_indices_depend_only_on_step_and_rank():
    full = list(StepBatchSampler(4, 0, 6, rank=1, world_size=2))
    resumed = list(StepBatchSampler(4, 3, 6, rank=1, world_size=2))
    assert full[3:] == resumed
    assert full[0] == [4, 5, 6, 7]


def _dominant_hz(crop: torch.Tensor, rate: int = 16000) -> float:
    x = crop[0].double().numpy()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n=16 * x.size))
    return float(np.argmax(spectrum) * rate / (16 * x.size))


def test_speed_perturbation_plays_crops_faster_or_slower_within_the_range(tmp_path):
    t = np.arange(10 * 16000) / 16000
    write_audio(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 500 * t))
    plain = CropSource(tmp_path, segment_samples=4000, max_val_crops=2)
    perturbed = CropSource(tmp_path, segment_samples=4000, max_val_crops=2, speed_perturb=0.1)
    assert {round(_dominant_hz(plain.train_crop(i))) for i in range(10)} == {500}
    heard = [_dominant_hz(perturbed.train_crop(i)) for i in range(40)]
    assert all(crop.shape == (1, 4000) for crop in map(perturbed.train_crop, range(5)))
    # a factor f reads f x the crop and plays it in 1x: the tone moves to 500 f, f within 1 +- 0.1
    assert min(heard) >= 500 * 0.9 - 2 and max(heard) <= 500 * 1.1 + 2
    assert max(heard) - min(heard) > 50, heard  # the factors really spread over the range
    assert torch.equal(perturbed.train_crop(7), perturbed.train_crop(7))


def test_gain_augmentation_spreads_levels_and_keeps_the_peak_at_or_below_095(tmp_path):
    t = np.arange(10 * 16000) / 16000
    write_audio(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 300 * t))
    source = CropSource(tmp_path, segment_samples=4000, max_val_crops=2, gain_db=6.0)
    peaks = np.array([float(source.train_crop(i).abs().max()) for i in range(60)])
    assert peaks.max() <= 0.95 + 1e-6
    assert peaks.min() >= 0.5 * 10 ** (-6 / 20) * 0.99
    assert peaks.min() < 0.3 and np.sum(peaks > 0.6) > 5  # both sides of the source's level
