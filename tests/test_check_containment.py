"""A check that raises is a bug in that check: the registry contains it, names it in the report's
notes, and the run goes on with every other check."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from codecdoctor import cli
from codecdoctor.core import registry


def _broken(*args, **kwargs):
    raise ZeroDivisionError("a judge divided by zero")


@pytest.fixture
def q405_raises(monkeypatch):
    registry.load_all()
    info = registry._REGISTRY["Q405"]
    monkeypatch.setitem(registry._REGISTRY, "Q405", dataclasses.replace(info, func=_broken))


def test_run_checks_contains_a_raising_check_and_runs_the_others(q405_raises):
    from codecdoctor.measure.quantizer import LevelStats, QuantizerMeasurements

    levels = [LevelStats(name=f"q.layers.{i}", codebook_size=64, used=64, perplexity=60.0, total_count=640.0,
                         codebook_rms=1.0, initted=True) for i in range(2)]
    run = registry.run_checks("quantizer", QuantizerMeasurements(levels=levels))
    assert "Q405" not in run.checks_run
    assert {"Q401", "Q402", "Q404", "Q406"} <= set(run.checks_run)
    assert run.notes == ["internal error in check Q405 on QuantizerMeasurements: ZeroDivisionError: a judge "
                         "divided by zero (the check did not run; the others did)"]


def test_check_ckpt_folder_with_a_raising_check_writes_the_report_naming_check_file_and_exception(
        q405_raises, tmp_path, capsys):
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig

    folder = tmp_path / "ckpts"
    folder.mkdir()
    state = {"config": CodecConfig.tiny().to_dict(), "model": Codec(CodecConfig.tiny()).state_dict()}
    for name in ("a.pt", "b.pt"):
        torch.save(state, folder / name)
    out = tmp_path / "report.json"
    code = cli.main(["check-ckpt", str(folder), "--no-probes", "--json", str(out), "--html", str(tmp_path / "r.html")])
    assert code in (0, 1)  # judged, not an internal error (2)
    report = json.loads(out.read_text())
    assert [row["path"] for row in report["measurements"]["checkpoints"]] == ["a.pt", "b.pt"]
    internal = [n for n in report["notes"] if "internal error" in n]
    assert [n.split(":")[0] for n in internal] == ["a.pt", "b.pt"]
    assert all("check Q405" in n and "ZeroDivisionError: a judge divided by zero" in n for n in internal)
    assert "Q401" in report["checks_run"] and "Q405" not in report["checks_run"]
    assert "internal error in check Q405" in capsys.readouterr().out  # the terminal shows the notes too


@pytest.fixture
def r304_raises(monkeypatch):
    registry.load_all()
    info = registry._REGISTRY["R304"]
    monkeypatch.setitem(registry._REGISTRY, "R304", dataclasses.replace(info, func=_broken))


def test_compare_with_a_raising_pair_check_names_it_in_the_notes_and_still_judges_the_pair(r304_raises, tmp_path):
    import numpy as np
    import soundfile as sf

    from codecdoctor.compare import compare
    from codecdoctor.measure.stimuli import speech_like

    ref = np.asarray(speech_like(2.0, 16000, seed=1, peak=0.5), np.float32)
    sf.write(str(tmp_path / "ref.wav"), ref, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "est.wav"), -ref, 16000, subtype="FLOAT")  # an inverted output: R303
    report = compare(tmp_path / "ref.wav", tmp_path / "est.wav", quality=False, progress=None)
    internal = [n for n in report.notes if "internal error" in n]
    assert len(internal) == 1 and "check R304 on " in internal[0] and "ZeroDivisionError" in internal[0]
    assert "R303" in report.ids() and "R304" not in report.checks_run


def test_the_monitor_names_a_raising_training_check_once_and_keeps_monitoring(monkeypatch):
    from monitor_loops import crops, run_codec, speech_bank, tiny_codec

    import codecdoctor

    registry.load_all()
    monkeypatch.setitem(registry._REGISTRY, "T605", dataclasses.replace(registry._REGISTRY["T605"], func=_broken))
    model, loss_fn = tiny_codec()
    bank = speech_bank()
    monitor = codecdoctor.Monitor(model, sample_rate=16000, mode="warn", read_every=5)
    taken = run_codec(monitor, model, loss_fn, 15, lambda step: crops(bank, step))
    report = monitor.close()
    assert taken == 15
    internal = [n for n in report.notes if "internal error" in n]
    assert internal == ["internal error in check T605 on TrainingMeasurements: ZeroDivisionError: a judge divided "
                        "by zero (the check did not run; the others did)"]  # three read-backs, one note
    assert "T601" in report.checks_run and "T605" not in report.checks_run


def test_audit_with_a_raising_file_check_names_the_file_and_audits_every_file(monkeypatch, tmp_path):
    import numpy as np
    import soundfile as sf

    from codecdoctor.audit import audit_data

    registry.load_all()
    monkeypatch.setitem(registry._REGISTRY, "D105", dataclasses.replace(registry._REGISTRY["D105"], func=_broken))
    for name in ("a.wav", "b.wav"):
        sf.write(str(tmp_path / name), 0.3 * np.sin(np.arange(16000) / 10.0), 16000, subtype="PCM_16")
    report = audit_data(tmp_path, jobs=1)
    assert sorted(f["path"] for f in report.measurements["files"]) == ["a.wav", "b.wav"]
    internal = sorted(n for n in report.notes if "internal error" in n)
    assert [n.split(": ")[0] for n in internal] == ["internal error in check D105 on a.wav",
                                                    "internal error in check D105 on b.wav"]
    assert "D105" not in report.checks_run and "D103" in report.checks_run
