"""`train --data_dir` takes a WebDataset tar shard (members read by seeking inside the tar, never
extracted) and a lhotse manifest (recordings, or cuts as regions of them): the crops are the
samples of the same files on disk."""
from __future__ import annotations

import gzip
import json
import tarfile

import numpy as np
import soundfile as sf
import torch
from audio_fixtures import speech_like

from codecdoctor_model.dataset import CropSource

SR = 16000


def _corpus(root):
    root.mkdir()
    sf.write(root / "utt_0001.flac", speech_like(2.0, SR, seed=1, peak=0.5), SR, subtype="PCM_16")
    sf.write(root / "utt_0002.wav", speech_like(3.0, SR, seed=2, peak=0.7), SR, subtype="FLOAT")
    return root


def test_a_tar_shard_trains_on_the_same_samples_as_the_files(tmp_path):
    disk = _corpus(tmp_path / "disk")
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "shard-000.tar", "w") as tar:
        for path in sorted(disk.iterdir()):
            tar.add(path, path.name)
        tar.add(disk / "utt_0001.flac", "utt_0001.txt")  # a non-audio member: ignored
    from_disk = CropSource(disk, segment_samples=4000)
    for target in (shards / "shard-000.tar", shards):  # the shard itself, or a folder of shards
        from_tar = CropSource(target, segment_samples=4000)
        assert [f.rel for f in from_tar.files] == ["shard-000.tar:utt_0001.flac", "shard-000.tar:utt_0002.wav"]
        assert [f.frames for f in from_tar.files] == [f.frames for f in from_disk.files]
        for a, b in zip(from_disk.files, from_tar.files):
            for start in (0, 1234, a.frames - 100):
                assert torch.equal(from_disk.read(a, start, 4000), from_tar.read(b, start, 4000))
        assert torch.equal(from_tar.train_crop(7), from_disk.train_crop(7))
        assert torch.equal(from_tar.validation_crops(), from_disk.validation_crops())


def test_lhotse_cuts_train_on_their_region_of_the_recording(tmp_path):
    disk = _corpus(tmp_path / "disk")
    x, _ = sf.read(disk / "utt_0002.wav", dtype="float32")
    recording = {"id": "utt_0002", "sources": [{"type": "file", "channels": [0], "source": "utt_0002.wav"}],
                 "sampling_rate": SR, "num_samples": len(x), "duration": len(x) / SR, "channel_ids": [0]}
    manifest = disk / "cuts.jsonl.gz"
    with gzip.open(manifest, "wt") as handle:
        handle.write(json.dumps({"id": "cut-a", "start": 0.5, "duration": 1.0, "channel": 0,
                                 "recording": recording, "type": "MonoCut"}) + "\n")
        handle.write(json.dumps({"id": "cut-b", "start": 1.5, "duration": 1.2, "channel": 0,
                                 "recording": recording, "type": "MonoCut"}) + "\n")
    source = CropSource(manifest, segment_samples=2000)
    cut_a = source.files[0]
    assert [f.rel for f in source.files] == ["cut-a", "cut-b"] and cut_a.frames == SR
    assert np.array_equal(source.read(cut_a, 0, 2000)[0].numpy(), x[8000:10000])
    tail = source.read(cut_a, SR - 500, 2000)[0].numpy()  # never reads past the cut's end: zero-padded
    assert np.array_equal(tail[:500], x[8000 + SR - 500:8000 + SR]) and not tail[500:].any()
    recordings = disk / "recordings.jsonl"
    recordings.write_text(json.dumps(recording) + "\n")
    whole = CropSource(recordings, segment_samples=2000)
    assert whole.files[0].frames == len(x)
