"""`codecdoctor demo` end to end at a short training budget, and every report it writes as a browser
renders it: page height, findings or tables present, every plot decoded, no network request, no
console error. Screenshots go to reports/screenshots/demo_*.png (look at them).

The full demo (360 training steps) is what the README's main command runs; at the reduced budget
here (40 steps) the codec is barely trained, so the saga steps' diagnosis is not asserted (the diagnosis itself
is specified by tests/test_diagnosis_gallery.py); the data audit's findings are.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_cdp import find_chromium, load_page
from rich.console import Console

SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from codecdoctor.demo.run import DemoRunner

    out = tmp_path_factory.mktemp("demo")
    runner = DemoRunner(out, Console(file=open(out / "console.txt", "w"), width=80), steps=40)
    index = runner.run()
    return runner, index


def test_demo_trains_its_step_budget_and_says_nothing_about_a_cap(demo):
    runner, _ = demo
    train = runner.steps[1].report
    assert train.command == "train"
    assert train.measurements["steps"] == 40 and train.measurements["stop_reason"] != "max_minutes"
    assert not [fact for fact in runner.facts if "--minutes" in fact]


def test_demo_without_espeak_says_in_one_terminal_line_that_it_used_synthetic_speech(demo):
    from codecdoctor.demo.corpus import espeak_available

    runner, _ = demo
    console = (runner.out / "console.txt").read_text()
    lines = [ln for ln in console.splitlines() if ln.startswith("note: the demo trains on synthetic speech-like audio")]
    if espeak_available():
        assert lines == []
    else:
        assert len(lines) == 1 and "espeak-ng is not installed" in lines[0], lines


def test_a_minutes_cap_that_stops_training_early_is_said_in_the_terminal_the_index_and_the_report(tmp_path):
    from codecdoctor.core.findings import Report
    from codecdoctor.demo.run import DemoRunner

    console_file = tmp_path / "console.txt"
    runner = DemoRunner(tmp_path, Console(file=open(console_file, "w"), width=400), steps=360, minutes=0.5)
    report = Report(command="train", measurements={"stop_reason": "max_minutes", "steps": 57})
    runner._say_if_capped(report)
    runner.console.file.flush()
    assert "after 57 of 360 steps" in report.notes[0] and "--minutes 0.5" in report.notes[0]
    assert runner.facts == report.notes
    assert "note: Training stopped at the --minutes 0.5 cap after 57 of 360 steps" in console_file.read_text()
    finished = Report(command="train", measurements={"stop_reason": "completed", "steps": 360})
    runner._say_if_capped(finished)
    assert finished.notes == [] and len(runner.facts) == 1


def test_demo_runs_every_step_and_writes_an_index_linking_each_report(demo):
    runner, index = demo
    assert index.is_file()
    titles = [step.title for step in runner.steps]
    assert len(titles) == 10, titles  # audit, train, check-ckpt, probe, six saga cases
    failed = [f"{step.title}: {step.error}" for step in runner.steps if step.error]
    assert not failed, failed
    page = index.read_text()
    for step in runner.steps:
        assert step.html_path.is_file() and step.json_path.is_file()
        assert step.html_path.name in page


def test_demo_audit_names_every_planted_data_problem(demo):
    runner, _ = demo
    audit = runner.steps[0]
    assert audit.report.command == "audit-data"
    assert not audit.missing_ids, audit.missing_ids
    d103 = next(f for f in audit.report.findings if f.id == "D103")
    assert d103.subject.endswith("peaks_above_1.wav")
    assert "1.0129" in d103.message and "dB" in d103.message  # the extreme and the SNR ceiling


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt install chromium)")
def test_every_demo_report_renders_in_a_browser(demo):
    runner, index = demo
    pages = [index] + [step.html_path for step in runner.steps]
    for page in pages:
        name = re.sub(r"[^a-z0-9_]+", "_", page.stem.lower())
        result = load_page(page, screenshot=SCREENSHOTS / f"demo_{name}.png")
        assert result.requests == [], (page.name, result.requests)
        assert result.console_errors == [], (page.name, result.console_errors)
        assert result.images == result.images_decoded, f"{page.name}: {result.images_decoded}/{result.images} plots decoded"
        assert result.height_px > 400, page.name
        if page != index:
            assert result.findings + result.tables > 0, f"{page.name} shows neither findings nor tables"


def test_the_demo_trains_the_same_codec_with_two_cpu_bound_processes_beside_it(tmp_path):
    """What the demo shows is a function of its step budget, not of the machine's load: the same
    steps with two CPU-bound processes running beside the training give bit-identical weights and
    validation numbers (the full demo's 360 steps on a busy machine are only slower)."""
    import io
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf
    import torch

    from codecdoctor.demo.run import DemoRunner
    from codecdoctor.measure.stimuli import speech_like

    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(2):
        sf.write(str(clean / f"speaker_{i}.wav"), np.asarray(speech_like(6.0, 16000, seed=i, peak=0.5)), 16000,
                 subtype="PCM_16")

    def train(out):
        runner = DemoRunner(out, Console(file=io.StringIO()), steps=4, batch_size=2)
        report = runner._train(clean)
        state = torch.load(report.measurements["checkpoints"]["last"], map_location="cpu", weights_only=True)
        return report, state["model"]

    quiet, quiet_weights = train(tmp_path / "quiet")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        busy, busy_weights = train(tmp_path / "busy")
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert quiet.measurements["steps"] == busy.measurements["steps"] == 4
    assert quiet.measurements["stop_reason"] == busy.measurements["stop_reason"] == "completed"
    measured = ("step", "train_loss", "val_snr_db", "val_si_snr_db", "val_mel_distance", "lr")
    assert [[e[k] for k in measured] for e in quiet.measurements["history"]] == \
        [[e[k] for k in measured] for e in busy.measurements["history"]]
    assert quiet_weights.keys() == busy_weights.keys()
    assert all(torch.equal(quiet_weights[k], busy_weights[k]) for k in quiet_weights)
