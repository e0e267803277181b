"""C219: check-ckpt --data compares the validation SNR a checkpoint saved with the SNR it measures on
the data, and reads a gap of 3 dB or more as memorisation or a validation leak when the data is
held out."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from audio_fixtures import speech_like, write_audio

from codecdoctor.check_ckpt import check_checkpoint
from codecdoctor.core.findings import Severity
from codecdoctor.measure.heldout import jackknife_stderr_db
from codecdoctor.train import TrainRequest, train


def _train(data, checkpoints, steps: int):
    train(TrainRequest(data_dir=str(data), checkpoint_dir=str(checkpoints), config="tiny", batch_size=4,
                       num_epochs=1, steps_per_epoch=steps, checks="off", segment_seconds=0.25))
    return checkpoints / "codec" / "last.pt"


@pytest.fixture(scope="module")
def held_out_speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held")
    for i in range(2):
        write_audio(folder / f"sentence{i}.wav", speech_like(2.5, 16000, seed=100 + i))
    return folder


@pytest.fixture(scope="module")
def generalising(tmp_path_factory):
    """A tiny codec trained briefly on six speech-like utterances (one held out whole by the trainer)."""
    root = tmp_path_factory.mktemp("speech")
    for i in range(6):
        write_audio(root / "train" / f"utt{i}.wav", speech_like(1.5, 16000, seed=i))
    return root / "train", _train(root / "train", root / "ck", steps=20)


def _c219(report):
    return [f for f in report.findings if f.id == "C219"]


def test_a_codec_trained_on_one_recording_and_validated_on_its_tail_is_flagged(tmp_path, held_out_speech):
    # a hum: its validation tail is the same two tones, the held-out data is speech
    t = np.arange(4 * 16000) / 16000
    write_audio(tmp_path / "train" / "hum.wav", (0.4 * np.sin(2 * np.pi * 220 * t)
                                                 + 0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32))
    ckpt = _train(tmp_path / "train", tmp_path / "ck", steps=40)
    report = check_checkpoint(ckpt, data=held_out_speech, probes=False, n_crops=4)
    gap = report.measurements["validation_gap"]
    top = report.sorted_findings()[0]
    assert top.id == "C219" and top.severity == Severity.WARNING
    assert gap["gap_db"] >= 3.0 and gap["data_held_out"] == "yes"
    saved = torch.load(ckpt, weights_only=True)["history"][-1]["val_snr_db"]
    assert gap["saved_val_snr_db"] == saved
    assert math.isclose(gap["measured_snr_db"], report.measurements["reconstruction"]["total_snr_db"])
    assert top.evidence["validation_split"] == "regions" and top.evidence["validation_shares_files_with_training"]
    assert "validation leak" in top.message and f"{gap['gap_db']:.2f} dB above" in top.message


def test_a_codec_that_generalises_gives_no_c219(generalising, held_out_speech):
    _, ckpt = generalising
    report = check_checkpoint(ckpt, data=held_out_speech, probes=False, n_crops=4)
    gap = report.measurements["validation_gap"]
    assert "C219" in report.checks_run and not _c219(report)
    assert abs(gap["gap_db"]) < 3.0 and gap["validation_split"]["method"] == "files"
    # nothing about the checkpoint's state or validation warns (a tiny codec uses few codes: Q401 may)
    assert not [f for f in report.findings if f.id.startswith("C") and f.severity >= Severity.WARNING]


def _with_saved_snr(ckpt, path, value):
    state = torch.load(ckpt, weights_only=True)
    state["history"][-1]["val_snr_db"] = value
    torch.save(state, path)
    return path


def test_the_threshold_is_3_db_above_the_measured_snr(generalising, held_out_speech, tmp_path):
    _, ckpt = generalising
    measured = check_checkpoint(ckpt, data=held_out_speech, probes=False, n_crops=4).measurements[
        "validation_gap"]["measured_snr_db"]
    above = check_checkpoint(_with_saved_snr(ckpt, tmp_path / "above.pt", measured + 3.2), data=held_out_speech,
                             probes=False, n_crops=4)
    below = check_checkpoint(_with_saved_snr(ckpt, tmp_path / "below.pt", measured + 2.8), data=held_out_speech,
                             probes=False, n_crops=4)
    assert [f.severity for f in _c219(above)] == [Severity.WARNING] and not _c219(below)
    assert math.isclose(_c219(above)[0].evidence["gap_db"], 3.2, abs_tol=1e-9)
    # validation held out by whole files: the gap reads as memorisation, not as a leak
    assert "memorisation" in _c219(above)[0].message


def test_data_the_checkpoint_trained_on_is_not_read_as_held_out(generalising, tmp_path, cli):
    data, ckpt = generalising
    inflated = _with_saved_snr(ckpt, tmp_path / "inflated.pt", 40.0)
    code, _, err = cli("check-ckpt", inflated, "--data", data, "--no-probes", "--crops", "6", "--json",
                       tmp_path / "r.json", "--html", "none")
    report = json.loads((tmp_path / "r.json").read_text())
    c219 = [f for f in report["findings"] if f["id"] == "C219"]
    gap = report["measurements"]["validation_gap"]
    # the trainer held out utt3.wav whole: the other five files were trained on
    assert gap["data_held_out"] == "no" and "utt3.wav" not in gap["training_files_in_data"]
    assert sorted(gap["training_files_in_data"]) == ["utt0.wav", "utt1.wav", "utt2.wav", "utt4.wav", "utt5.wav"]
    assert [f["severity"] for f in c219] == ["info"] and "not a held-out measurement" in c219[0]["message"]


def test_jackknife_error_of_the_total_snr():
    signal, error = [1.0, 2.0, 4.0, 3.0], [0.1, 0.4, 0.2, 0.3]
    leave_one_out = [10 * np.log10((sum(signal) - s) / (sum(error) - e)) for s, e in zip(signal, error)]
    expected = np.sqrt(3 / 4 * np.sum((np.array(leave_one_out) - np.mean(leave_one_out)) ** 2))
    assert math.isclose(jackknife_stderr_db(signal, error), expected, rel_tol=1e-12)
    assert jackknife_stderr_db([1.0, 1.0, 1.0], [0.1, 0.1, 0.1]) == 0.0
    assert jackknife_stderr_db([1.0, 1.0], [0.1, 0.1]) is None


def test_which_measured_files_the_checkpoint_trained_on(tmp_path):
    from codecdoctor.measure.heldout import training_files_among

    for rel in ("a.wav", "b.wav", "valid/v.wav"):
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / rel).write_bytes(b"")
    folders = {"data_dir": str(tmp_path / "data"), "val_dir": str(tmp_path / "data" / "valid")}
    # the data folder itself: a.wav trained on; b.wav held out whole by the trainer; valid/ is validation
    assert training_files_among(tmp_path / "data", ["a.wav", "b.wav", "valid/v.wav"], folders, {"b.wav"}) == (
        "no", ["a.wav"])
    assert training_files_among(tmp_path / "data" / "valid", ["v.wav"], folders) == ("yes", [])
    assert training_files_among(tmp_path / "data", ["a.wav"], {"data_dir": "", "val_dir": ""}) == ("unknown", [])
    assert training_files_among(tmp_path / "data", ["a.wav"], {"data_dir": str(tmp_path / "gone")}) == ("unknown", [])
