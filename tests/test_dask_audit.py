"""audit-data on a Dask LocalCluster (2 worker processes) gives the JSON of a local run and of a
--shard + merge run, also when a worker is killed mid-run; a task that kills every worker it
runs on is reported as D100 with the reason, and the rest of the corpus is still audited."""
from __future__ import annotations

import json
import logging
import os
import sys

import pytest
from test_audit_shard_merge import comparable, make_corpus

from codecdoctor.audit import audit_data, merge_partials
from codecdoctor.core.errors import InputError
from codecdoctor.report import json as json_out

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


class KillWorker(distributed.WorkerPlugin):
    """Kills the worker process (no cleanup, like the OOM killer) when it starts a task whose key
    matches `pattern`; once when `sentinel` is given (the file is removed first), else always.
    Keys: codecdoctor-audit-<batch>-<run> for a batch of files, and
    codecdoctor-audit-solo-<batch>-<member>-<run> for its files retried one by one."""

    def __init__(self, pattern: str, sentinel: str | None = None) -> None:
        self.pattern = pattern
        self.sentinel = sentinel

    def transition(self, key, start, finish, **kwargs):
        import re

        if finish != "executing" or not re.search(self.pattern, str(key)):
            return
        if self.sentinel is None:
            os._exit(1)
        if os.path.exists(self.sentinel):
            os.remove(self.sentinel)
            os._exit(1)


@pytest.fixture(scope="module")
def client():
    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.worker.daemon": False}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
        with cluster, distributed.Client(cluster) as c:
            yield c


def _allow_failures(count: int, dask_scheduler=None) -> None:
    dask_scheduler.allowed_failures = count


def _json(report) -> dict:
    return json.loads(json_out.dumps(report))


@pytest.mark.slow
def test_cluster_run_with_a_killed_worker_equals_local_and_shard_merge(client, tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    local = _json(audit_data(root, jobs=1))
    parts = []
    for i in (1, 2):
        path = tmp_path / f"part{i}.json"
        path.write_text(json_out.dumps(audit_data(root, jobs=1, shard=f"{i}/2")))
        parts.append(path)
    merged = _json(merge_partials(parts))

    sentinel = tmp_path / "kill-once"
    sentinel.write_text("")
    client.register_plugin(KillWorker(r"-audit-000000-[0-9a-f]{8}$", str(sentinel)), name="kill-once")
    try:
        on_cluster = _json(audit_data(root, client=client))
    finally:
        client.unregister_worker_plugin("kill-once")
    assert not sentinel.exists(), "the worker was never killed: the test did not test a dead worker"
    assert comparable(on_cluster) == comparable(local) == comparable(merged)
    assert on_cluster["args"]["scheduler"].startswith("tcp://")


@pytest.mark.slow
def test_a_task_that_always_kills_its_worker_is_d100_with_the_reason(client, tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    local = _json(audit_data(root, jobs=1))
    victim = "s0.wav"  # member 1 of the one batch: files are in path order, after bad.wav
    pattern = r"-audit-000000-[0-9a-f]{8}$|-audit-solo-000000-0001-"  # the batch, then s0.wav alone
    client.register_plugin(KillWorker(pattern), name="kill-always")
    client.run_on_scheduler(_allow_failures, 0)  # fewer worker restarts: a faster test, same outcome
    try:
        report = _json(audit_data(root, client=client))
    finally:
        client.run_on_scheduler(_allow_failures, 1)
        client.unregister_worker_plugin("kill-always")
    d100 = [f for f in report["findings"] if f["id"] == "D100" and f["subject"] == victim]
    assert d100 and "KilledWorker" in d100[0]["message"]
    others = {r["path"]: r for r in report["measurements"]["files"] if r["path"] != victim}
    expected = {r["path"]: r for r in local["measurements"]["files"] if r["path"] != victim}
    assert others == expected  # every other file measured exactly as in the local run


def test_scheduler_without_dask_is_a_one_line_input_error(monkeypatch):
    from codecdoctor import distributed as engine

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(InputError, match=r"codecdoctor\[distributed\]"):
        engine.connect("tcp://127.0.0.1:1")


def test_unreachable_scheduler_is_a_one_line_input_error():
    from codecdoctor import distributed as engine

    with pytest.raises(InputError, match="cannot connect"):
        engine.connect("tcp://127.0.0.1:9", timeout_s=1.0)


@pytest.mark.slow
def test_cli_scheduler_address_gives_the_local_json(client, cli, tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    code, _, err = cli("audit-data", root, "--scheduler", client.scheduler.address, "--json", tmp_path / "d.json",
                       "--html", "none", "--no-progress")
    assert code == 1, err  # bad.wav: an error-level finding
    on_cluster = json.loads((tmp_path / "d.json").read_text())
    assert comparable(on_cluster) == comparable(_json(audit_data(root, jobs=1)))
