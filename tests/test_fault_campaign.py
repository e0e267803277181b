"""The fault campaign at a reduced N: every command over corrupted WAV/FLAC files and checkpoints.

The full campaign (N=100 per kind, 20 kills) is `./run bench fault_campaign`; this CI version uses a few
variants of every corruption kind (they are generated round robin, so N >= 9 covers each kind of
both families) and must finish in about two minutes on two shared cores.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_modules import load_bench_module

pytestmark = pytest.mark.slow  # ~2 minutes on two shared cores: dozens of subprocesses
CI_N = 9  # one variant of each of the 9 checkpoint kinds, 8 audio kinds + 1


fc = load_bench_module("fault_campaign")


@pytest.fixture(scope="module")
def campaign_cases(tmp_path_factory, pytestconfig):
    workdir = tmp_path_factory.mktemp("faults")
    cases = fc.campaign(CI_N, workdir=workdir, timeout_s=90.0, workers=2, seed=1234)
    # shown in the CI log even though pytest captures output: the table is the campaign's result
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + fc.format_table(cases))
        failures = fc.format_failures(cases)
        if failures:
            print(failures)
    return cases


def test_variants_cover_every_corruption_kind_and_include_unreadable_inputs(tmp_path):
    import random

    rng = random.Random(0)
    valid = fc.make_valid_audio(tmp_path / "valid")
    audio = fc.make_audio_variants(valid, len(fc.AUDIO_CORRUPTIONS), tmp_path / "audio", rng)
    assert {v.kind for v in audio} == set(fc.AUDIO_CORRUPTIONS)
    # empty files and bare headers can never be decoded: the ground truth must say so
    assert all(v.corrupt for v in audio if v.kind in ("empty", "header-only"))
    assert all(fc.audio_is_readable(p) for p in valid)

    kinds = list(fc.CKPT_BYTE_CORRUPTIONS) + list(fc.CKPT_STATE_CORRUPTIONS)
    ckpts = fc.make_ckpt_variants(fc.make_valid_state(), len(kinds), tmp_path / "ckpt", rng)
    assert {v.kind for v in ckpts} == set(kinds)
    by_kind = {v.kind: v for v in ckpts}
    assert by_kind["truncate-zip"].corrupt and by_kind["garbage"].corrupt
    assert not by_kind["wrong-shape"].buildable
    assert fc.checkpoint_truth(tmp_path / "ckpt" / "valid.pt") == (True, True)


def test_the_judge_counts_tracebacks_internal_errors_and_odd_exit_codes_as_crashes():
    v = fc.Variant("x.wav", "empty", "a.wav", "", Path("x.wav"), corrupt=True)

    def judge(code, out="", err=""):
        return fc.judge_single("compare", v, fc.RunResult([], code, out, err, 1.0), expect_error=True)[0]

    assert judge(1, err="Traceback (most recent call last):\n ...") == "crash"
    assert judge(2, err="codecdoctor: internal error: ZeroDivisionError: division by zero") == "crash"
    assert judge(-9) == "crash"
    assert judge(None) == "hang"
    assert judge(0) == "wrong"  # exit 0 on an unreadable input
    assert judge(2, err="codecdoctor: error: x.wav: not a readable audio file") == "ok"
    assert judge(2, err="codecdoctor: error: 'compare' is not built yet in this version") == "not-built"
    assert judge(2, err="Usage: codecdoctor compare [OPTIONS]\nError: No such option: --bogus") == "harness"


def test_campaign_has_no_crashes_and_no_hangs(campaign_cases):
    table = fc.summarize(campaign_cases)
    crashes = [c for c in campaign_cases if c.outcome == "crash"]
    hangs = [c for c in campaign_cases if c.outcome == "hang"]
    assert not crashes and not hangs, fc.format_table(campaign_cases) + "\n" + fc.format_failures(crashes + hangs)
    assert sum(sum(row.values()) for row in table.values()) >= 4 * CI_N


def test_the_campaign_calls_every_command_correctly(campaign_cases):
    harness = [c for c in campaign_cases if c.outcome == "harness"]
    assert not harness, fc.format_failures(harness)  # a usage error tests nothing


def test_corrupt_inputs_never_pass_silently(campaign_cases):
    wrong = [c for c in campaign_cases if c.outcome == "wrong"]
    assert not wrong, fc.format_failures(wrong)



def test_check_ckpt_on_a_folder_of_102_damaged_checkpoints_covers_every_file_without_errors_or_warnings(tmp_path):
    """Bit flips, truncations and non-finite values in every tensor family of a trained checkpoint,
    one `check-ckpt FOLDER` run: every file is in the report, no check raised (neither out of the
    run nor contained as an internal-error note) and no RuntimeWarning reached the terminal."""
    import random

    folder = tmp_path / "ckpt_folder"
    variants = fc.make_ckpt_folder(fc.make_valid_state(), 102, folder, random.Random(29))
    families = {v.detail.split(":")[0] for v in variants if v.kind == "nonfinite"}
    assert families == set(fc.TENSOR_FAMILIES)
    assert {v.kind for v in variants} == set(fc.FOLDER_CKPT_KINDS)
    cases = fc.ckpt_folder_batch(variants, folder, tmp_path, timeout_s=120.0)
    assert len(cases) == 102
    bad = [c for c in cases if c.outcome != "ok"]
    assert not bad, fc.format_failures(bad)
    report = json.loads((tmp_path / "runs" / "ckpt_folder" / "report.json").read_text())
    rows = report["measurements"]["checkpoints"]
    assert sorted(r["path"] for r in rows) == sorted(v.name for v in variants)
    assert sum(r["unreadable"] for r in rows) > 0 and sum(not r["unreadable"] for r in rows) > 0
    assert not [n for n in report["notes"] if "internal error" in n]
