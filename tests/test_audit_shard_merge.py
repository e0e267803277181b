"""--shard i/n + merge gives the numbers of one run; the CLI writes and reads the partial JSONs."""
from __future__ import annotations

import json

import numpy as np
from audio_fixtures import speech_like, write_audio

from codecdoctor.audit import audit_data, merge_partials
from codecdoctor.report import json as json_out

SR = 16000


def make_corpus(root):
    for i in range(7):
        write_audio(root / f"s{i}.wav", speech_like(1.5 + 0.2 * i, SR, seed=i, peak=0.4 + 0.15 * i))
    write_audio(root / "sub" / "hot.wav", speech_like(2.0, SR, seed=20, peak=1.2))
    write_audio(root / "sub" / "r8k.wav", speech_like(2.0, 8000, seed=21, peak=0.5), 8000)
    write_audio(root / "sub" / "zero.wav", np.zeros(4000, np.float32))
    (root / "sub" / "meta.csv").write_text("a,b\n")
    (root / "bad.wav").write_bytes(b"RIFF....junk")


def comparable(data: dict) -> dict:
    """The parts of a report that must not depend on how the work was split."""
    m = data["measurements"]
    return {"files": m["files"], "corpus": m["corpus"], "findings": data["findings"], "summary": data["summary"],
            "checks_run": data["checks_run"], "envelopes": m["envelopes"]}


def test_three_shards_merged_equal_one_run(tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    single = json.loads(json_out.dumps(audit_data(root, jobs=1)))
    parts = []
    for i in (1, 2, 3):
        part = audit_data(root, jobs=1, shard=f"{i}/3")
        path = tmp_path / f"part{i}.json"
        path.write_text(json_out.dumps(part))
        parts.append(path)
        assert 0 < len(part.measurements["files"]) < len(single["measurements"]["files"])
    merged = json.loads(json_out.dumps(merge_partials(parts)))
    assert comparable(merged) == comparable(single)
    assert merged["measurements"]["corpus"]["hours"] == single["measurements"]["corpus"]["hours"]


def test_parallel_jobs_give_the_same_numbers_as_one_job(tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    one = json.loads(json_out.dumps(audit_data(root, jobs=1)))
    two = json.loads(json_out.dumps(audit_data(root, jobs=2)))
    assert comparable(one) == comparable(two)


def _small_parts(monkeypatch) -> None:
    """Parts small enough that a 6.1 s file is split: blocks of 4800 frames, parts of 14400 frames
    (a 6.1 s file at 16 kHz has 7), and any file big enough to split."""
    import codecdoctor.audit as audit_module
    from codecdoctor.measure.audio import reader

    monkeypatch.setattr(reader, "TARGET_BLOCK_SAMPLES", 5000)
    monkeypatch.setattr(reader, "PART_BLOCKS", 3)
    monkeypatch.setattr(audit_module, "SPLIT_BYTES", 1)


def test_one_long_file_alone_is_measured_in_parallel_parts_on_threads_without_worker_processes(tmp_path, monkeypatch):
    """A run of one long file splits it into parts measured on threads of this process (no pool
    is started) and joins them into the numbers of one sequential pass, bit for bit."""
    import threading

    import codecdoctor.audit as audit_module
    from codecdoctor.measure.audio import file as file_module

    _small_parts(monkeypatch)
    x = speech_like(6.1, SR, seed=30, peak=0.9)
    x[14400 - 5:14400 + 5] = 1.0  # a rail run across the first cut
    x[30000] = np.nan
    write_audio(tmp_path / "long.wav", x)
    one = json.loads(json_out.dumps(audit_data(tmp_path, jobs=1)))

    def no_pool(*args, **kwargs):
        raise AssertionError("a run of one file started worker processes")

    measured_on: set[str] = set()
    measure_part = file_module.measure_file_part

    def recording(*args, **kwargs):
        measured_on.add(threading.current_thread().name)
        return measure_part(*args, **kwargs)

    monkeypatch.setattr(audit_module, "run_isolated", no_pool)
    monkeypatch.setattr(audit_module, "measure_file_part", recording)
    two = json.loads(json_out.dumps(audit_data(tmp_path, jobs=2)))
    assert comparable(two) == comparable(one)
    assert one["measurements"]["files"][0]["clipped_samples"] == 10
    assert measured_on and threading.main_thread().name not in measured_on


def test_a_part_that_raises_on_a_thread_has_the_file_measured_in_one_pass(tmp_path, monkeypatch):
    import codecdoctor.audit as audit_module

    _small_parts(monkeypatch)
    write_audio(tmp_path / "long.wav", speech_like(6.1, SR, seed=32, peak=0.5))
    one = json.loads(json_out.dumps(audit_data(tmp_path, jobs=1)))
    measure_part = audit_module.measure_file_part
    started = []

    def fails_on_part_3(path, index, **kwargs):
        started.append(index)
        if index == 3:
            raise OSError("the file changed")
        return measure_part(path, index, **kwargs)

    monkeypatch.setattr(audit_module, "measure_file_part", fails_on_part_3)
    two = json.loads(json_out.dumps(audit_data(tmp_path, jobs=2)))
    assert 3 in started and comparable(two) == comparable(one)
    assert two["measurements"]["files"][0]["error"] is None


def test_one_long_file_on_more_cores_than_threads_pay_for_goes_to_worker_processes(tmp_path, monkeypatch):
    """Beyond THREADS_FOR_ONE_FILE workers the GIL would cap threads: the parts go to the pool."""
    import codecdoctor.audit as audit_module

    _small_parts(monkeypatch)
    write_audio(tmp_path / "long.wav", speech_like(6.1, SR, seed=31, peak=0.5))
    one = json.loads(json_out.dumps(audit_data(tmp_path, jobs=1)))
    pooled = []
    run_isolated = audit_module.run_isolated

    def spy(work, items, **kwargs):
        pooled.append(len(items))
        return run_isolated(work, items, **kwargs)

    monkeypatch.setattr(audit_module, "run_isolated", spy)
    three = json.loads(json_out.dumps(audit_data(tmp_path, jobs=audit_module.THREADS_FOR_ONE_FILE + 1)))
    assert pooled == [7] and comparable(three) == comparable(one)


def test_cli_shard_then_merge(cli, tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    for i in (1, 2):
        code, _, err = cli("audit-data", root, "--shard", f"{i}/2", "--json", tmp_path / f"p{i}.json",
                           "--html", "none", "--no-progress", "--jobs", "1")
        assert code in (0, 1), err
    code, out, err = cli("merge", tmp_path / "p1.json", tmp_path / "p2.json", "--json", tmp_path / "all.json",
                         "--html", tmp_path / "all.html")
    assert code == 1  # the corpus has error-level findings (bad.wav)
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["command"] == "audit-data" and len(merged["measurements"]["files"]) == 12
    assert "D100" in {f["id"] for f in merged["findings"]}
    assert "<svg" in (tmp_path / "all.html").read_text()  # figures drawn inline


def test_merge_rejects_a_shard_given_twice_and_non_reports(cli, tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    cli("audit-data", root, "--shard", "1/2", "--json", tmp_path / "p1.json", "--html", "none", "--no-progress")
    code, _, err = cli("merge", tmp_path / "p1.json", tmp_path / "p1.json")
    assert code == 2 and "twice" in err
    (tmp_path / "x.json").write_text("{}")
    code, _, err = cli("merge", tmp_path / "x.json")
    assert code == 2 and err.count("\n") == 1
    code, _, err = cli("audit-data", root, "--shard", "3/2")
    assert code == 2 and "--shard" in err


def test_each_files_checks_run_once_in_a_run_and_once_in_a_merge(tmp_path, monkeypatch):
    import codecdoctor.audit as audit

    calls: list[str] = []
    real = audit.run_checks

    def counting(scope, subject, *args, level=None, **kwargs):
        if level == "file":
            calls.append(subject.path)
        return real(scope, subject, *args, level=level, **kwargs)

    monkeypatch.setattr(audit, "run_checks", counting)
    root = tmp_path / "corpus"
    make_corpus(root)
    single = audit_data(root, jobs=1)
    paths = [r["path"] for r in single.measurements["files"]]
    assert sorted(calls) == sorted(paths)  # every file judged, none twice
    parts = []
    for i in (1, 2):
        part = audit_data(root, jobs=1, shard=f"{i}/2")
        path = tmp_path / f"part{i}.json"
        path.write_text(json_out.dumps(part))
        parts.append(path)
    calls.clear()
    merged = merge_partials(parts)
    assert sorted(calls) == sorted(paths)  # merge reads each row back once, then only combines
    assert comparable(json.loads(json_out.dumps(merged))) == comparable(json.loads(json_out.dumps(single)))


def test_a_file_that_kills_its_worker_process_is_d100_and_the_rest_is_audited(tmp_path, monkeypatch):
    import os

    import codecdoctor.audit as audit

    root = tmp_path / "corpus"
    make_corpus(root)
    local = json.loads(json_out.dumps(audit_data(root, jobs=1)))
    real = audit.audit_task

    def crashing(task, thresholds):  # forked workers inherit this: s1.wav "segfaults" its worker
        if task.subject == "s1.wav":
            os._exit(1)
        return real(task, thresholds)

    monkeypatch.setattr(audit, "audit_task", crashing)
    report = json.loads(json_out.dumps(audit_data(root, jobs=2)))
    d100 = [f for f in report["findings"] if f["id"] == "D100" and f["subject"] == "s1.wav"]
    assert d100 and "worker process" in d100[0]["message"]
    rows = {r["path"]: r for r in report["measurements"]["files"] if r["path"] != "s1.wav"}
    assert rows == {r["path"]: r for r in local["measurements"]["files"] if r["path"] != "s1.wav"}
