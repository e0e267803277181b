"""check-ckpt on the command line: bad input never crashes; an unsafe pickle is refused (exit 2)
and its payload never runs; --model builds a foreign codec."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from fixtures.checkpoints import own_state, save


class _CreatesFile:
    """Unpickling this calls open(path, "w"): a live payload that leaves evidence on disk."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _json(tmp_path, name="r.json"):
    return json.loads((tmp_path / name).read_text())


def test_malicious_pickle_is_refused_with_exit_2_and_runs_nothing(cli, tmp_path):
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(2)}, "payload": _CreatesFile(marker)}, ckpt)
    code, out, err = cli("check-ckpt", ckpt, "--json", tmp_path / "r.json", "--html", "none")
    assert code == 2
    assert not marker.exists()
    report = _json(tmp_path)
    assert report["findings"][0]["id"] == "C200" and report["findings"][0]["severity"] == "critical"
    assert report["findings"][0]["evidence"]["refused"] == "io.open"
    assert "Traceback" not in out + err


def test_the_payload_is_live_under_unsafe_load(cli, tmp_path):
    # Proves the refusal test above is meaningful: executing the pickle does create the file.
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "evil.pt"
    torch.save({"payload": _CreatesFile(marker)}, ckpt)
    code, out, err = cli("check-ckpt", ckpt, "--unsafe-load", "--json", "none", "--html", "none")
    assert marker.exists() and "unsafe-load" in out + err
    assert code == 2 and "without any tensors" in err  # it ran, but a dict without tensors is no checkpoint


def test_truncated_checkpoint_is_c200_static_only(cli, tmp_path):
    good = save(own_state(), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    code, out, err = cli("check-ckpt", tmp_path / "cut.pt", "--json", tmp_path / "r.json", "--html", "none")
    report = _json(tmp_path)
    # a single checkpoint that cannot be read: exit 2, one line, and the report still written
    assert code == 2 and report["checks_run"] == ["C200"] and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and "truncated" in err
    assert report["findings"][0]["evidence"]["status"] == "truncated"
    assert any("no static or dynamic checks" in n for n in report["notes"])


def test_zip_that_is_not_a_checkpoint_is_c200(cli, tmp_path):
    with zipfile.ZipFile(tmp_path / "x.pt", "w") as archive:
        archive.writestr("readme.txt", "hello")
    code, _, err = cli("check-ckpt", tmp_path / "x.pt", "--json", tmp_path / "r.json", "--html", "none")
    report = _json(tmp_path)
    assert code == 2 and report["findings"][0]["evidence"]["status"] == "not_checkpoint"


def test_empty_and_missing_files(cli, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    code, _, _ = cli("check-ckpt", tmp_path / "empty.pt", "--json", tmp_path / "r.json", "--html", "none")
    assert code == 2 and _json(tmp_path)["findings"][0]["evidence"]["status"] == "empty"
    code, _, err = cli("check-ckpt", tmp_path / "nope.pt")
    assert code == 2 and "not found" in err and "Traceback" not in err


def test_json_contract_for_own_checkpoint_with_probes(cli, tmp_path):
    ckpt = save(own_state(), tmp_path / "own.pt")
    code, _, _ = cli("check-ckpt", ckpt, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html")
    report = _json(tmp_path)
    m = report["measurements"]
    assert m["format"] == "codecdoctor-codec/1" and m["parameters"] > 0 and m["tensors_nonfinite"] == []
    assert m["quantizer"][0]["codebook_size"] == 16 and "perplexity" in m["quantizer"][0]
    assert m["bitrate_bps"] == 3200.0
    assert "level_slope_db_per_db" in m["probes"] and "C210" in report["checks_run"]
    html = (tmp_path / "r.html").read_text()
    assert "Level in/out" in html and "Magnitude response" in html and "Impulse response" in html


# a model factory for --model: a Linear module to hold the checkpoint's weights, beside the Adapter
BUILD = '''
def build(state_dict):
    module = torch.nn.Linear(2, 2)
    module.load_state_dict(state_dict)
    return module, Adapter()
'''

FACTORY = '''
import torch

class Adapter:
    sample_rate = 8000
    codebook_size = 4
    def encode(self, audio):
        # 2 levels of 4 codes from the sign and magnitude of 80-sample frame means
        frames = audio[:, 0, : audio.shape[-1] // 80 * 80].reshape(audio.shape[0], -1, 80).mean(-1)
        level0 = (frames > 0).long() * 2 + (frames.abs() > 0.01).long()
        return torch.stack([level0, torch.zeros_like(level0)], dim=1)
    def decode(self, codes):
        return torch.zeros(codes.shape[0], 1, codes.shape[-1] * 80)
    def reconstruct(self, audio):
        return audio * 0.5
''' + BUILD


def test_foreign_model_through_model_factory(cli, tmp_path, monkeypatch):
    (tmp_path / "my_codec.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    code, _, err = cli("check-ckpt", ckpt, "--model", "my_codec:build", "--json", tmp_path / "r.json",
                       "--html", "none")
    report = _json(tmp_path)
    assert report["measurements"]["model_built"] is True, err
    # reconstruct = 0.5·x: level slope 1 (scale kept, gain -6 dB), no latency, normal polarity
    probes = report["measurements"]["probes"]
    assert abs(probes["level_slope_db_per_db"] - 1.0) < 0.01 and abs(probes["low_level_gain_db"] + 6.02) < 0.05
    assert probes["latency_samples"] == 0 and probes["polarity"] == 1
    assert "C210" in report["checks_run"] and not [f for f in report["findings"] if f["id"] == "C210"]


def test_bad_model_spec_is_an_input_error(cli, tmp_path):
    ckpt = save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    code, _, err = cli("check-ckpt", ckpt, "--model", "no_such_module_xyz:build")
    assert code == 2 and "cannot import" in err


def test_explain_shows_the_new_checks(cli):
    for check_id in ("C217", "C218", "Q407", "Q408"):
        code, out, _ = cli("explain", check_id)
        assert code == 0 and check_id in out
        assert all(section in out for section in ("What it checks", "Why", "How to fix")), out


def test_a_folder_run_keeps_going_past_an_unreadable_checkpoint(cli, tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    data = save(own_state(), runs / "a" / "best.pt").read_bytes()
    (runs / "b").mkdir()
    (runs / "b" / "last.pt").write_bytes(data[: len(data) // 3])  # an interrupted save
    code, out, err = cli("check-ckpt", runs, "--no-probes", "--json", tmp_path / "r.json", "--html", "none")
    report = _json(tmp_path)
    rows = {r["path"]: r for r in report["measurements"]["checkpoints"]}
    assert set(rows) == {"a/best.pt", "b/last.pt"}
    assert rows["b/last.pt"]["unreadable"] is True and rows["a/best.pt"]["unreadable"] is False
    assert rows["a/best.pt"]["parameters"] > 0 and rows["b/last.pt"]["top"] == "C200"
    c200 = [f for f in report["findings"] if f["id"] == "C200"]
    assert [f["subject"] for f in c200] == ["b/last.pt"]
    # the folder run is not fatal: findings decide the exit code (C200 is an error)
    assert code == 1 and "Traceback" not in out + err


def test_a_checkpoint_that_kills_its_worker_process_is_c200_and_the_rest_of_the_folder_is_checked(tmp_path,
                                                                                                 monkeypatch):
    """A folder is checked in a worker process (core/pool.py): a file that crashes it (a reader
    segfault on a bit-flipped file, here os._exit) is a C200 naming it; the other files keep
    their own results, and nothing runs again in this process."""
    import os

    import codecdoctor.check_ckpt as check_ckpt

    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("a.pt", "b.pt", "c.pt"):
        save(own_state(), runs / name)
    real, parent = check_ckpt.check_checkpoint, os.getpid()

    def crashing(path, **options):   # the forked worker inherits this: b.pt "segfaults" it
        assert os.getpid() != parent
        if Path(path).name == "b.pt":
            os._exit(1)
        return real(path, **options)

    monkeypatch.setattr(check_ckpt, "check_checkpoint", crashing)
    report = check_ckpt._check_folder(runs, {"probes": False})
    rows = {r["path"]: r for r in report.measurements["checkpoints"]}
    assert set(rows) == {"a.pt", "b.pt", "c.pt"}
    assert rows["b.pt"]["unreadable"] and rows["b.pt"]["top"] == "C200"
    assert rows["a.pt"]["parameters"] > 0 and rows["c.pt"]["parameters"] == rows["a.pt"]["parameters"]
    c200 = [f for f in report.findings if f.id == "C200"]
    assert [f.subject for f in c200] == ["b.pt"] and "worker process" in c200[0].message


LOWPASS_FACTORY = '''
import torch

class Adapter:
    sample_rate = 8000
    def reconstruct(self, audio):   # a 1 kHz low-pass (4th-order magnitude roll-off)
        spectrum = torch.fft.rfft(audio)
        freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / 8000)
        return torch.fft.irfft(spectrum / torch.sqrt(1 + (freqs / 1000.0) ** 4), n=audio.shape[-1])
''' + BUILD


def test_check_ckpt_with_data_measures_the_band_on_the_data_beside_the_sine_sweep(cli, tmp_path, monkeypatch):
    import soundfile as sf

    from codecdoctor.measure.stimuli import speech_like

    (tmp_path / "lowpass_codec.py").write_text(LOWPASS_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        sf.write(data / f"s{seed}.wav", 0.3 * speech_like(3.0, 8000, seed=seed), 8000, subtype="FLOAT")
    ckpt = save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    cli("check-ckpt", ckpt, "--model", "lowpass_codec:build", "--data", data, "--json", tmp_path / "r.json",
        "--html", tmp_path / "r.html")
    probes = _json(tmp_path)["measurements"]["probes"]
    assert 700 < probes["data_bandwidth_3db_hz"] <= 1000 and probes["data_bandwidth_3db_hz"] == probes["bandwidth_3db_hz"]
    [c215] = [f for f in _json(tmp_path)["findings"] if f["id"] == "C215"]
    assert c215["severity"] == "warning" and "as well" in c215["message"]
    assert "on the data" in (tmp_path / "r.html").read_text()
