"""audit-data on corpora with known faults: each file yields exactly its expected check IDs."""
from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import speech_like, write_audio

from codecdoctor.audit import audit_data
from codecdoctor.core.findings import Severity

SR = 16000


def ids_by_file(report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for f in report.findings:
        out[f.subject].add(f.id)
    return dict(out)


def clean(seconds=3.0, seed=0, peak=0.5):
    return speech_like(seconds, SR, seed=seed, peak=peak)


@pytest.fixture(scope="module")
def fault_corpus(tmp_path_factory):
    """One known fault per file, every other property healthy."""
    root = tmp_path_factory.mktemp("faults")
    expected: dict[str, set[str]] = {}

    def add(name, data, ids, sr=SR, subtype="FLOAT"):
        write_audio(root / name, data, sr, subtype=subtype)
        expected[name] = set(ids)

    for i in range(4):
        add(f"clean_{i}.wav", clean(seed=10 + i), [])
    add("clean_pcm16.wav", clean(seed=20), [], subtype="PCM_16")
    add("overs.wav", clean(seed=1, peak=1.3), ["D103"])
    ints = np.round(clean(seed=2, peak=0.5) * 32768 * 3).clip(-32768, 32767).astype(np.int16)
    sf.write(root / "clipped.wav", ints, SR, subtype="PCM_16")
    expected["clipped.wav"] = {"D104"}
    add("dc.wav", clean(seed=3) + np.float32(0.05), ["D105"])
    add("quiet.wav", clean(seed=4, peak=0.03), ["D106"])
    x = clean(seed=5)
    x[: int(len(x) * 0.6)] = 0.0
    add("mostly_silent.wav", x, ["D107"])
    add("rate_8k.wav", speech_like(3.0, 8000, seed=6, peak=0.5), ["D108"], sr=8000)
    add("stereo.wav", speech_like(3.0, SR, seed=7, peak=0.5, channels=2), ["D109"])
    from scipy.signal import resample_poly
    add("upsampled.wav", resample_poly(speech_like(3.0, 8000, seed=8, peak=0.5), 2, 1).astype(np.float32), ["D110"])
    add("eight_bit.wav", np.round(clean(seed=9) * 128) / 128, ["D111"], subtype="PCM_16")
    add("dup_original.wav", clean(seed=30), [])
    add("dup_zcopy.wav", clean(seed=30), ["D112"])
    add("long.wav", clean(seconds=8.0, seed=31), ["D113"])
    add("zeros.wav", np.zeros(SR * 2, np.float32), ["D114"])
    (root / "notes.txt").write_text("transcript")
    expected["notes.txt"] = {"D115"}
    x = clean(seed=32)
    x[500] = np.nan
    x[900] = np.inf
    add("nan_inf.wav", x, ["D102"])
    add("one_sample.wav", np.array([0.1], np.float32), ["D101"])
    (root / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    expected["random.wav"] = {"D100"}
    report = audit_data(root, jobs=2, long_file_s=5.0)
    return root, report, expected


def test_each_fault_yields_exactly_its_check_id(fault_corpus):
    root, report, expected = fault_corpus
    got = ids_by_file(report)
    for name, ids in expected.items():
        assert got.get(name, set()) == ids, name
    assert set(got) <= set(expected)


def test_clean_files_have_no_warning_or_error(fault_corpus):
    _, report, _ = fault_corpus
    for f in report.findings:
        if f.subject and f.subject.startswith("clean"):
            assert f.severity < Severity.WARNING, f


def test_every_data_check_ran_and_json_has_the_contract(fault_corpus, tmp_path):
    from codecdoctor.report import json as json_out

    _, report, _ = fault_corpus
    assert report.checks_run == [f"D1{i:02d}" for i in range(17)]  # D100-D116
    data = json.loads(json_out.dumps(report))
    row = next(r for r in data["measurements"]["files"] if r["path"] == "overs.wav")
    for key in ("path", "format", "subtype", "sample_rate", "channels", "frames", "duration_s", "min", "max", "peak",
                "peak_db", "rms", "rms_db", "dc_offset", "crest_factor", "silence_fraction", "overs",
                "clipped_samples", "nonfinite", "bandwidth_hz", "error"):
        assert key in row, key
    corpus = data["measurements"]["corpus"]
    assert corpus["audio_files"] == 20 and corpus["sample_rates"] == {"16000": 19, "8000": 1}
    assert corpus["unreadable_files"] == 1 and corpus["skipped_entries"] == 1
    d103 = next(f for f in data["findings"] if f["id"] == "D103")
    assert d103["evidence"]["snr_ceiling_db"] > 0 and "SNR" in d103["message"]


def test_user_described_file_gets_d103_with_ceiling_and_no_d107(tmp_path):
    """The Telugu user's data: peaks -1.0129/+1.0108, 9% silence (a few minutes here, not 1.8 h)."""
    x = speech_like(150.0, SR, seed=42, pause_fraction=0.08)
    x = np.where(x > 0, x / x.max() * 1.0108, x / -x.min() * 1.0129)
    write_audio(tmp_path / "telugu.wav", x.astype(np.float32))
    report = audit_data(tmp_path, jobs=1)
    row = report.measurements["files"][0]
    assert 0.05 < row["silence_fraction"] < 0.15
    assert row["min"] == pytest.approx(-1.0129, rel=1e-6) and row["max"] == pytest.approx(1.0108, rel=1e-6)
    d103 = [f for f in report.findings if f.id == "D103"]
    assert len(d103) == 1
    ceiling = d103[0].evidence["snr_ceiling_db"]
    x64 = x.astype(np.float32).astype(np.float64)
    assert ceiling == pytest.approx(10 * np.log10(np.sum(x64 ** 2) / np.sum((x64 - np.clip(x64, -1, 1)) ** 2)), rel=1e-6)
    assert f"{ceiling:.1f} dB" in d103[0].message
    assert "D107" not in report.ids()
    strict = audit_data(tmp_path, jobs=1, max_silence_fraction=0.05)
    assert "D107" in strict.ids()


def test_hostile_inputs_each_become_a_finding_and_the_rest_is_audited(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    good = clean(seed=50)
    write_audio(root / "good one.wav", good)
    write_audio(root / "తెలుగు.wav", clean(seed=51))
    write_audio(root / "<script>alert(1)</script>&.wav", clean(seed=52))
    (root / "zero.wav").write_bytes(b"")
    full = (root / "good one.wav").read_bytes()
    (root / "trunc_header.wav").write_bytes(full[:20])
    (root / "short_data.wav").write_bytes(full[: len(full) // 2])  # header promises twice the data
    (root / "random.wav").write_bytes(os.urandom(3000))
    (root / "x.wav").mkdir()
    os.symlink("loop.wav", root / "loop.wav")
    os.symlink("..", root / "x.wav" / "up")  # a directory loop
    noperm = write_audio(root / "noperm.wav", clean(seed=53))
    noperm.chmod(0)
    x = clean(seed=54)
    x[10] = np.nan
    x[20] = -np.inf
    write_audio(root / "naninf.wav", x)
    write_audio(root / "allzero.wav", np.zeros(8000, np.float32))
    write_audio(root / "one.wav", np.array([0.3], np.float32))
    try:
        report = audit_data(root, jobs=2)
    finally:
        noperm.chmod(0o644)
    got = ids_by_file(report)
    expected = {
        "zero.wav": {"D101"}, "trunc_header.wav": {"D100"}, "short_data.wav": {"D100"}, "random.wav": {"D100"},
        "x.wav": {"D115"}, "loop.wav": {"D100"}, os.path.join("x.wav", "up"): {"D115"}, "naninf.wav": {"D102"},
        "allzero.wav": {"D114"}, "one.wav": {"D101"},
    }
    if os.access(noperm, os.R_OK) and os.geteuid() == 0:
        pass  # root reads a chmod-000 file: nothing to report, and it is audited normally
    else:
        expected["noperm.wav"] = {"D100"}
    for name, ids in expected.items():
        assert got.get(name) == ids, (name, got.get(name))
    for name in ("good one.wav", "తెలుగు.wav", "<script>alert(1)</script>&.wav"):
        assert name not in got
    rows = {r["path"]: r for r in report.measurements["files"]}
    assert rows["good one.wav"]["frames"] == len(good) and rows["good one.wav"]["error"] is None
    assert rows["short_data.wav"]["frames"] > 0 and "truncated" in rows["short_data.wav"]["error"]
    assert rows["naninf.wav"]["nonfinite"] == 2


def test_html_escapes_hostile_names(tmp_path):
    from codecdoctor.report import html as html_view

    write_audio(tmp_path / "<img src=x onerror=alert(1)>.wav", clean(seed=60, peak=1.2))
    report = audit_data(tmp_path, jobs=1)
    out = tmp_path / "r.html"
    html_view.write(report, out)
    text = out.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "&lt;img src=x" in text


def test_missing_folder_and_folder_without_audio_exit_2_with_one_line(cli, tmp_path):
    code, out, err = cli("audit-data", str(tmp_path / "nope"))
    assert code == 2 and err.strip().count("\n") == 0 and "no such folder" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    code, out, err = cli("audit-data", str(tmp_path / "empty"))
    assert code == 2 and err.strip().count("\n") == 0 and "no audio files" in err
