"""The trainer's validation is held out by utterance when it can be: whole files when the corpus
has several, else each file's tail behind a gap of one receptive field, or a separate --val_dir;
the train report and the checkpoint say which."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch
from audio_fixtures import speech_like, write_audio

from codecdoctor_model.config import CodecConfig
from codecdoctor_model.dataset import CropSource
from codecdoctor_model.receptive import receptive_field_samples
from codecdoctor_model.seanet import Decoder, Encoder


def _files(folder, seconds, seed=0):
    for i, length in enumerate(seconds):
        write_audio(folder / f"utt{i:02d}.wav", speech_like(length, 16000, seed=seed + i))
    return folder


def _training_starts(source: CropSource, n: int = 200) -> list[tuple[str, int]]:
    """(file, start) of the first n training crops, drawn exactly as train_crop draws them."""
    files = source.train_files
    weights = np.array([f.train_stop / f.sample_rate for f in files])
    out = []
    for i in range(n):
        rng = np.random.default_rng([source.seed, i])
        f = files[int(rng.choice(len(files), p=weights / weights.sum()))]
        out.append((f.rel, int(rng.integers(0, max(1, f.train_stop - source.segment_samples + 1)))))
    return out


def test_receptive_field_from_the_config_is_the_measured_input_support():
    for config in (CodecConfig.tiny(), CodecConfig.tiny().replace(strides=(2, 3), residual_dilations=(1, 3, 9))):
        torch.manual_seed(0)
        encoder, decoder = Encoder(config), Decoder(config)
        hop, widest = config.hop_length, 0
        for phase in range(hop):  # the input samples one output sample's gradient reaches
            x = torch.randn(1, 1, 256 * hop, requires_grad=True)
            decoder(encoder(x))[0, 0, 128 * hop + phase].backward()
            reached = (x.grad[0, 0] != 0).nonzero().flatten()
            widest = max(widest, int(reached.max() - reached.min()) + 1)
        assert receptive_field_samples(config) == widest
    assert receptive_field_samples(CodecConfig()) == 4624  # the default 6 kbps codec: 0.29 s at 16 kHz


def test_several_files_hold_out_whole_files_spread_over_the_corpus(tmp_path):
    _files(tmp_path, [1.0] * 20)
    source = CropSource(tmp_path, segment_samples=4000, val_fraction=0.1, max_val_crops=64)
    # 10% of 20 s is 2 s: two 1 s files, taken evenly from the sorted list
    assert source.split["method"] == "files"
    assert source.split["validation_files"] == ["utt05.wav", "utt15.wav"]
    assert source.split["shares_files_with_training"] is False
    assert "2 of 20 files (2.0 s) never trained on" in source.split["description"]
    assert sorted(f.rel for f in source.validation_files) == ["utt05.wav", "utt15.wav"]
    assert len(source.train_files) == 18 and abs(source.train_seconds - 18.0) < 1e-9
    assert {rel for rel, _ in _training_starts(source)}.isdisjoint({"utt05.wav", "utt15.wav"})
    val = source.validation_crops()  # 4 crops per 1 s file, both files, round-robin
    assert val.shape == (8, 1, 4000)
    x5, _ = sf.read(tmp_path / "utt05.wav", dtype="float32")
    assert np.allclose(val[0, 0].numpy(), x5[:4000], atol=1e-6)


def test_few_long_files_fall_back_to_regions_rather_than_spend_a_third_on_validation(tmp_path):
    _files(tmp_path, [4.0, 4.0, 4.0])
    source = CropSource(tmp_path, segment_samples=4000, gap_samples=518)
    assert source.split["method"] == "regions" and source.split["shares_files_with_training"] is True
    assert all(f.train_stop == f.val_start - 518 for f in source.files)
    # asking for a third of the audio makes one whole file (33%, within twice the ask) the right price
    asked = CropSource(tmp_path, segment_samples=4000, gap_samples=518, val_fraction=0.3)
    assert asked.split["method"] == "files" and asked.split["validation_files"] == ["utt01.wav"]


def test_one_file_is_split_by_region_with_a_receptive_field_gap(tmp_path):
    _files(tmp_path, [5.0])
    gap = receptive_field_samples(CodecConfig.tiny())
    source = CropSource(tmp_path, segment_samples=4000, val_fraction=0.1, gap_samples=gap)
    f = source.files[0]
    # the last 10% (0.5 s) is validation; training ends one receptive field before it
    assert (f.val_start, f.train_stop) == (80000 - 8000, 80000 - 8000 - gap)
    assert source.split["method"] == "regions" and source.split["gap_samples"] == gap == 518
    assert "518 samples (0.03 s, one receptive field)" in source.split["description"]
    assert max(start for _, start in _training_starts(source)) + 4000 <= f.val_start - gap


def test_val_dir_trains_on_every_data_file_and_validates_on_the_folder(tmp_path):
    data, val = _files(tmp_path / "data", [2.0, 3.0]), _files(tmp_path / "val", [1.5], seed=50)
    source = CropSource(data, segment_samples=4000, val_dir=val, gap_samples=518)
    assert source.split["method"] == "val_dir" and source.split["validation_files"] == ["utt00.wav"]
    assert source.split["shares_files_with_training"] is False
    assert [f.train_stop for f in source.train_files] == [32000, 48000]  # whole files, no tail held out
    held, _ = sf.read(val / "utt00.wav", dtype="float32")
    crops = source.validation_crops()
    assert crops.shape == (6, 1, 4000) and np.allclose(crops[0, 0].numpy(), held[:4000], atol=1e-6)


def test_val_dir_names_copies_of_training_files_and_leaves_a_nested_val_dir_out_of_training(tmp_path):
    data = _files(tmp_path / "data", [2.0, 3.0])
    write_audio(data / "utt01.wav", speech_like(3.0, 16000, seed=1), subtype="PCM_16")
    x, _ = sf.read(data / "utt01.wav", dtype="int16")
    (tmp_path / "val").mkdir()
    sf.write(tmp_path / "val" / "copy.flac", x, 16000, subtype="PCM_16")  # the same samples, another container
    write_audio(tmp_path / "val" / "other.wav", speech_like(1.0, 16000, seed=77))
    source = CropSource(data, segment_samples=4000, val_dir=tmp_path / "val")
    assert source.split["shares_files_with_training"] is True
    assert source.split["shared_files"] == ["copy.flac = a training file"]
    assert any("shares 1 file(s) with training" in w for w in source.warnings)

    nested = data / "valid"
    write_audio(nested / "v.wav", speech_like(1.0, 16000, seed=78))
    source = CropSource(data, segment_samples=4000, val_dir=nested)
    assert sorted(f.rel for f in source.train_files) == ["utt00.wav", "utt01.wav"]
    assert [f.rel for f in source.validation_files] == ["v.wav"]
    assert any("left out of training: valid/v.wav" in w for w in source.warnings)


TINY = ["--config", "tiny", "--segment-seconds", "0.25", "--steps-per-epoch", "2", "--batch-size", "2",
        "--num-epochs", "1", "--checks", "off", "--html", "none"]


def test_train_report_and_checkpoint_say_how_validation_was_held_out(cli, tmp_path):
    data, val = _files(tmp_path / "data", [2.0]), _files(tmp_path / "val", [1.0], seed=9)
    code, out, err = cli("train", "--data_dir", data, "--checkpoint_dir", tmp_path / "a", *TINY,
                         "--json", tmp_path / "a.json")
    assert code == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    split = report["measurements"]["data"]["validation"]
    assert split["method"] == "regions" and split["gap_samples"] == 518
    assert any(n.startswith("validation: held out by region") for n in report["notes"])
    assert "validation: held out by region" in " ".join(out.split())

    code, out, err = cli("train", "--data-dir", data, "--val-dir", val, "--checkpoint_dir", tmp_path / "b", *TINY,
                         "--json", tmp_path / "b.json", "--html", tmp_path / "b.html")
    assert code == 0, err
    assert "validation: a separate validation folder: 1 file(s)" in (tmp_path / "b.html").read_text()
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["measurements"]["data"]["validation"]["method"] == "val_dir"
    assert any(n.startswith("validation: a separate validation folder: 1 file(s) (1.0 s)") for n in report["notes"])
    state = torch.load(tmp_path / "b" / "codec" / "last.pt", weights_only=True)
    assert state["validation_split"]["method"] == "val_dir" and state["train_args"]["val_dir"] == str(val)
    assert state["validation_split"]["data_dir"] == str(data.resolve())


def test_a_missing_or_empty_val_dir_is_one_line_exit_2(cli, tmp_path):
    data = _files(tmp_path / "data", [2.0])
    code, out, err = cli("train", "--data_dir", data, "--val_dir", tmp_path / "nope", "--checkpoint_dir",
                         tmp_path / "ck", *TINY, "--json", "none")
    assert code == 2 and "validation folder not found" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, out, err = cli("train", "--data_dir", data, "--val_dir", tmp_path / "empty", "--checkpoint_dir",
                         tmp_path / "ck", *TINY, "--json", "none")
    assert code == 2 and "validation folder: no audio files" in err and "Traceback" not in err
