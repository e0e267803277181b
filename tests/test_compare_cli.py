"""`compare` (library and CLI): pairing, the JSON contract, and bad input as findings, not crashes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from audio_fixtures import speech_like, write_audio

from codecdoctor.compare import compare
from codecdoctor.core.errors import InputError

SR = 16000


@pytest.fixture(scope="module")
def clean():
    return speech_like(1.5, SR, seed=21)


def delayed(x, d):
    return np.concatenate([np.zeros(d, x.dtype), x[:-d]])


def test_two_files_json_contract(tmp_path, clean, cli):
    ref = write_audio(tmp_path / "ref.wav", clean, SR)
    est = write_audio(tmp_path / "est.wav", delayed(clean, 123), SR)
    code, out, err = cli("compare", ref, est, "--json", "-", "--html", "none")
    assert code == 1                                  # R304 is an error; default --fail-on error
    data = json.loads(out)
    assert data["command"] == "compare" and data["findings"][0]["id"] == "R304"
    pair = data["measurements"]["pairs"][0]
    for key in ("ref", "est", "snr_db", "si_snr_db", "seg_snr_db", "mel_distance", "gain", "lag_samples",
                "correlation", "what_if"):
        assert key in pair, key
    assert pair["lag_samples"] == 123
    assert set(pair["what_if"]) == {"raw", "gain", "aligned", "polarity", "all"}
    assert pair["what_if"]["aligned"] == "inf"        # strict JSON: non-finite floats as strings
    aggregate = data["measurements"]["aggregate"]
    assert aggregate["pairs"] == 1 and aggregate["top_findings"] == {"R304": 1}
    assert "R304" in err                              # the terminal view went to stderr


def test_healthy_pair_exits_zero_and_writes_html_with_figures(tmp_path, clean, cli):
    rng = np.random.default_rng(0)
    noisy = clean + (rng.standard_normal(clean.size) * np.sqrt(np.mean(clean ** 2)) * 10 ** (-25 / 20)).astype(np.float32)
    ref = write_audio(tmp_path / "ref.wav", clean, SR)
    est = write_audio(tmp_path / "est.wav", noisy, SR)
    code, out, err = cli("compare", ref, est, "--html", tmp_path / "r.html", "--json", tmp_path / "r.json")
    assert code == 0, out + err
    html = (tmp_path / "r.html").read_text()
    assert "What-if SNR" in html and html.count("data:image/png;base64,") >= 2
    data = json.loads((tmp_path / "r.json").read_text())
    assert [f["id"] for f in data["findings"]] == ["R300"]
    assert data["measurements"]["pairs"][0]["snr_db"] == pytest.approx(25.0, abs=0.5)


def _messy_folders(tmp_path, clean):
    """A folder pair with every kind of bad pair next to healthy ones."""
    ref, est = tmp_path / "ref", tmp_path / "est"
    write_audio(ref / "a.wav", clean, SR)
    write_audio(est / "a.wav", -clean, SR)                         # inverted
    write_audio(ref / "sub" / "b.wav", clean, SR)
    write_audio(est / "sub" / "b.flac", clean, SR, subtype="PCM_16")  # other extension, same stem
    write_audio(ref / "missing.wav", clean, SR)                    # no counterpart
    write_audio(ref / "corrupt.wav", clean, SR)
    (est / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_audio(ref / "rate.wav", clean, SR)
    write_audio(est / "rate.wav", clean[::2].copy(), SR // 2)       # sample-rate mismatch
    write_audio(ref / "stereo.wav", np.stack([clean, clean], axis=1), SR)
    write_audio(est / "stereo.wav", clean, SR)                     # channel mismatch
    write_audio(ref / "silent.wav", np.zeros(SR, np.float32), SR)
    write_audio(est / "silent.wav", clean[:SR], SR)
    write_audio(ref / "empty.wav", np.zeros(0, np.float32), SR)
    write_audio(est / "empty.wav", np.zeros(0, np.float32), SR)
    write_audio(est / "extra.wav", clean, SR)
    return ref, est


def test_folders_pair_by_relative_path_and_bad_pairs_become_findings(tmp_path, clean):
    ref, est = _messy_folders(tmp_path, clean)
    report = compare(ref, est)
    by_subject: dict[str, list[str]] = {}
    for f in report.sorted_findings():
        by_subject.setdefault(f.subject, []).append(f.id)
    assert by_subject["a.wav"][0] == "R303"
    assert "R315" in by_subject["missing.wav"] and "R315" in by_subject["corrupt.wav"]
    assert by_subject["rate.wav"][0] == "R316"
    assert "R316" in by_subject["stereo.wav"]
    assert by_subject["silent.wav"][0] == "R315" and by_subject["empty.wav"][0] == "R315"
    assert [f for f in by_subject["sub/b.wav"] if f != "R300"] == []
    records = {p["ref"]: p for p in report.measurements["pairs"]}
    assert records["sub/b.wav"]["est"] == "sub/b.flac"
    assert records["missing.wav"]["error"] and records["corrupt.wav"]["error"]
    assert all(not (isinstance(v, float) and math.isnan(v)) for p in records.values() for v in p.values())
    aggregate = report.measurements["aggregate"]
    assert aggregate["pairs"] == 8 and aggregate["unreadable_or_missing"] == 2
    assert any("extra.wav" in note for note in report.notes)
    json.dumps(report.to_dict(), allow_nan=False)                  # strict JSON


def test_worker_processes_give_the_same_report_as_one_process(tmp_path, clean):
    ref, est = _messy_folders(tmp_path, clean)
    one, two = compare(ref, est, jobs=1, quality=False), compare(ref, est, jobs=2, quality=False)
    strip = ("created", "started", "elapsed_s", "duration_s")
    as_json = [json.dumps({k: v for k, v in r.to_dict().items() if k not in strip}, sort_keys=True) for r in (one, two)]
    assert as_json[0] == as_json[1]
    assert [p["ref"] for p in two.measurements["pairs"]] == [p["ref"] for p in one.measurements["pairs"]]
    with pytest.raises(InputError):
        compare(ref, est, jobs=0)


def test_silent_files_in_a_set_bias_the_per_file_mean(tmp_path):
    rng = np.random.default_rng(1)
    ref, est = tmp_path / "ref", tmp_path / "est"
    for i in range(11):
        x = speech_like(0.5, SR, seed=300 + i) if i != 4 else np.zeros(SR // 2, np.float32)
        write_audio(ref / f"{i:02d}.wav", x, SR)
        write_audio(est / f"{i:02d}.wav", (x + 0.003 * rng.standard_normal(x.size)).astype(np.float32), SR)
    report = compare(ref, est)
    r313 = [f for f in report.findings if f.id == "R313"]
    assert len(r313) == 1
    assert r313[0].evidence["total_snr_db"] - r313[0].evidence["mean_chunk_snr_db"] > 3


def test_arrays_need_a_sample_rate(clean):
    with pytest.raises(InputError):
        compare(clean, clean)
    report = compare(clean, 0.1 * clean, sample_rate=SR)
    assert report.sorted_findings()[0].id == "R302"


def test_missing_path_and_file_vs_folder_are_input_errors(tmp_path, clean, cli):
    ref = write_audio(tmp_path / "ref.wav", clean, SR)
    code, out, err = cli("compare", ref, tmp_path / "nope.wav", "--html", "none", "--json", "none")
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = cli("compare", ref, tmp_path, "--html", "none", "--json", "none")
    assert code == 2 and "two files or two folders" in err
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    code, _, err = cli("compare", empty, empty, "--html", "none", "--json", "none")
    assert code == 2 and "no audio files" in err


def test_fail_on_critical_lets_errors_pass(tmp_path, clean, cli):
    ref = write_audio(tmp_path / "ref.wav", clean, SR)
    est = write_audio(tmp_path / "est.wav", -clean, SR)
    code, _, _ = cli("compare", ref, est, "--html", "none", "--json", "none", "--fail-on", "critical")
    assert code == 0


def test_an_empty_output_for_a_real_input_is_an_error(cli, tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "ref.wav"), np.full(24000, 0.1, np.float32), 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "est.wav"), np.zeros(0, np.float32), 16000, subtype="FLOAT")
    code, out, err = cli("compare", "ref.wav", "est.wav", "--html", "none", "--json", "none")
    assert code == 1, out + err
    assert "R315" in out and "no output at all" in out


def test_an_empty_reference_is_an_error_not_a_pass(cli, tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(str(tmp_path / "ref.wav"), np.zeros(0, np.float32), 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "est.wav"), np.full(24000, 0.1, np.float32), 16000, subtype="FLOAT")
    code, out, err = cli("compare", "ref.wav", "est.wav", "--html", "none", "--json", "none")
    assert code == 1, out + err
    assert "R315" in out and "reference is empty" in out


def test_workers_get_consecutive_pairs_in_batches_bounded_by_count_and_bytes(tmp_path):
    """Every pair lands in exactly one batch, in order; a batch holds at most BATCH_PAIRS pairs and
    BATCH_BYTES of files (one pair alone may exceed it), and there are at least four per worker."""
    from codecdoctor.compare import BATCH_BYTES, BATCH_PAIRS, _batches, _Pair

    pairs = []
    for i in range(200):
        ref, est = tmp_path / f"r{i}.wav", tmp_path / f"e{i}.wav"
        size = BATCH_BYTES + 1 if i == 7 else 40_000
        ref.write_bytes(b"\0" * size)
        est.write_bytes(b"\0" * 1000)
        pairs.append(_Pair(f"p{i}", ref.name, est.name, ref_path=ref, est_path=est))
    pairs.append(_Pair("missing", "x.wav", "y.wav", ref_path=tmp_path / "x.wav", est_path=tmp_path / "y.wav"))
    batches = _batches(pairs, 2)
    assert [i for batch in batches for i in batch] == list(range(len(pairs)))
    assert max(len(b) for b in batches) <= BATCH_PAIRS and len(batches) >= 8
    assert [7] in batches     # the oversized pair is a batch of its own
    for batch in batches:
        if len(batch) > 1:
            assert sum(pairs[i].ref_path.stat().st_size + pairs[i].est_path.stat().st_size
                       for i in batch if pairs[i].ref_path.exists()) <= BATCH_BYTES
    assert _batches(pairs[:3], 2) == [[0], [1], [2]]
