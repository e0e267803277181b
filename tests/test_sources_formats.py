"""Corpora that are not a folder of files: WebDataset tar shards, Hugging Face parquet with an audio
column, lhotse manifests. Each gives the per-file numbers of the same files on disk; a corrupt
tar member is its own D100 and the rest of the shard is still audited."""
from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import speech_like

from codecdoctor.audit import audit_data

SR = 16000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Four files on disk: speech as FLAC and PCM16 WAV at two levels, and a float file peaking at 1.0129."""
    root = tmp_path_factory.mktemp("disk")
    sf.write(root / "utt_0001.flac", speech_like(1.2, SR, seed=11, peak=0.5), SR, subtype="PCM_16")
    hot = speech_like(1.0, SR, seed=12, peak=0.9)
    hot = hot * (1.0129 / np.abs(hot).max())
    sf.write(root / "utt_0002.wav", hot.astype(np.float32), SR, subtype="FLOAT")
    sf.write(root / "utt_0003.wav", speech_like(0.8, SR, seed=13, peak=0.2), SR, subtype="PCM_16")
    sf.write(root / "utt_0004.flac", speech_like(1.5, 22050, seed=14, peak=0.7), 22050, subtype="PCM_16")
    return root


def rows_by_name(report) -> dict[str, dict]:
    """Per-file rows keyed by the file's own name (the part after the last ':' or '/')."""
    out = {}
    for row in report.measurements["files"]:
        if row["kind"] == "audio":
            name = row["path"].rsplit(":", 1)[-1].rsplit("/", 1)[-1]
            out[name] = {k: v for k, v in row.items() if k != "path"}
    return out


def test_webdataset_shards_give_d100_and_d103_with_member_subjects(files, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "shard-000.tar", "w") as tar:
        tar.add(files / "utt_0001.flac", "utt_0001.flac")
        tar.add(files / "utt_0002.wav", "utt_0002.wav")
        info = tarfile.TarInfo("utt_0002.txt")
        text = "a transcript".encode()
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    with tarfile.open(shards / "shard-001.tar", "w") as tar:
        garbage = bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))
        info = tarfile.TarInfo("utt_9999.flac")
        info.size = len(garbage)
        tar.addfile(info, io.BytesIO(garbage))  # corrupt member first: the rest must still be read
        tar.add(files / "utt_0003.wav", "utt_0003.wav")
        tar.add(files / "utt_0004.flac", "utt_0004.flac")
    report = audit_data(shards, jobs=1)
    by_id = {}
    for f in report.findings:
        by_id.setdefault(f.id, set()).add(f.subject)
    assert "shard-001.tar:utt_9999.flac" in by_id["D100"]
    assert by_id["D103"] == {"shard-000.tar:utt_0002.wav"}
    hot = next(r for r in report.measurements["files"] if r["path"] == "shard-000.tar:utt_0002.wav")
    assert hot["max"] == pytest.approx(1.0129, abs=1e-4)

    on_disk = rows_by_name(audit_data(files, jobs=1))
    from_tar = rows_by_name(report)
    assert from_tar == on_disk  # every number of every member equals the file on disk


def test_a_truncated_tar_shard_keeps_the_members_before_the_break(files, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        tar.add(files / "utt_0003.wav", "utt_0003.wav")
        tar.add(files / "utt_0001.flac", "utt_0001.flac")
    data = whole.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        second = tar.getmember("utt_0001.flac").offset_data
    (shards / "cut.tar").write_bytes(data[: second + 100])  # stops 100 bytes into member 2
    report = audit_data(shards, jobs=1)
    rows = {r["path"]: r for r in report.measurements["files"]}
    assert rows["cut.tar:utt_0003.wav"]["error"] is None and rows["cut.tar:utt_0003.wav"]["frames"] > 0
    assert "truncated" in rows["cut.tar:utt_0001.flac"]["error"]
    assert "cut.tar:utt_0001.flac" in {f.subject for f in report.findings if f.id == "D100"}


def test_parquet_audio_column_gives_the_numbers_of_the_files(files, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    names = sorted(p.name for p in files.iterdir())
    audio = pa.array([{"bytes": (files / n).read_bytes(), "path": n} for n in names],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"audio": audio, "text": pa.array([f"transcript {n}" for n in names])})
    folder = tmp_path / "hf"
    folder.mkdir()
    pq.write_table(table, folder / "train-00000-of-00001.parquet", row_group_size=2)
    report = audit_data(folder / "train-00000-of-00001.parquet", jobs=1)
    subjects = {r["path"] for r in report.measurements["files"]}
    assert "train-00000-of-00001.parquet:1:utt_0002.wav" in subjects
    assert rows_by_name(report) == rows_by_name(audit_data(files, jobs=1))
    assert {f.subject for f in report.findings if f.id == "D103"} == {"train-00000-of-00001.parquet:1:utt_0002.wav"}


def _recording(rec_id: str, source: str, path) -> dict:
    info = sf.info(str(path))
    return {"id": rec_id, "sources": [{"type": "file", "channels": [0], "source": source}],
            "sampling_rate": info.samplerate, "num_samples": info.frames, "duration": info.duration,
            "channel_ids": [0]}


def test_lhotse_manifests_audit_their_recordings_and_judge_cut_durations(files, tmp_path):
    names = sorted(p.name for p in files.iterdir())
    recordings = [_recording(n.split(".")[0], n, files / n) for n in names]
    manifest = files / "recordings.jsonl.gz"
    with gzip.open(manifest, "wt") as handle:
        for rec in recordings:
            handle.write(json.dumps(rec) + "\n")
    try:
        report = audit_data(manifest, jobs=1)
        assert rows_by_name(report) == rows_by_name(audit_data(files, jobs=1))  # the manifest's own file is not audio
        cuts_path = tmp_path / "cuts.jsonl.gz"
        cuts = [{"id": "cut-tiny", "start": 0.1, "duration": 0.005, "channel": 0, "recording": recordings[0],
                 "type": "MonoCut"},
                {"id": "cut-ok", "start": 0.0, "duration": 0.5, "channel": 0, "recording": recordings[0],
                 "type": "MonoCut"},
                {"id": "cut-long", "start": 0.0, "duration": 900.0, "channel": 0, "recording": recordings[1],
                 "type": "MonoCut"}]
        with gzip.open(cuts_path, "wt") as handle:
            for cut in cuts:
                handle.write(json.dumps(cut) + "\n")
        # relative sources resolve against the manifest's folder
        (tmp_path / "utt_0001.flac").symlink_to(files / "utt_0001.flac")
        (tmp_path / "utt_0002.wav").symlink_to(files / "utt_0002.wav")
        cut_report = audit_data(cuts_path, jobs=1)
    finally:
        manifest.unlink()
    subjects = {(f.id, f.subject) for f in cut_report.findings}
    assert ("D101", "cuts.jsonl.gz:cut-tiny") in subjects
    assert ("D113", "cuts.jsonl.gz:cut-long") in subjects
    assert not {s for i, s in subjects if s == "cuts.jsonl.gz:cut-ok"}
    assert {r["path"] for r in cut_report.measurements["files"]} == {"utt_0001.flac", "utt_0002.wav"}
    assert len(cut_report.measurements["cuts"]) == 3
