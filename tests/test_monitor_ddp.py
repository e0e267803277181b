"""T611 across two real processes (gloo on the CPU): the tiny codec all-reduces its EMA statistics,
so its codebooks agree across ranks until one rank's buffer is perturbed."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

PERTURB_AT_STEP = 4
STEPS = 8


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
    from monitor_loops import crops, run_codec, speech_bank, tiny_codec

    import codecdoctor

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, loss_fn = tiny_codec(seed=0)  # same initial weights on both ranks
        monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=2)
        bank = speech_bank(2.0, seed=rank)  # each rank sees its own data, as under a DistributedSampler
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        run_codec(monitor, model, loss_fn, PERTURB_AT_STEP, lambda s: crops(bank, s), optimizer=opt)
        before = [f.id for f in monitor.findings]
        if rank == 1:
            with torch.no_grad():
                model.quantizer.levels[0].embed_avg[3, 0] += 0.05  # a rank-local update that skipped the all-reduce
        run_codec(monitor, model, loss_fn, STEPS - PERTURB_AT_STEP, lambda s: crops(bank, PERTURB_AT_STEP + s),
                  optimizer=opt)
        report = monitor.close()
        t611 = [f.to_dict() for f in report.findings if f.id == "T611"]
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"before": before, "t611": t611,
                                                                 "checks_run": report.checks_run}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_codebooks_differing_across_two_gloo_ranks_give_T611(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    init_file = tmp_path / "rendezvous"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(init_file), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert "T611" in result["checks_run"]
        assert "T611" not in result["before"]  # in sync while the EMA statistics were all-reduced
        assert len(result["t611"]) == 1
        evidence = result["t611"][0]["evidence"]
        assert evidence["world_size"] == 2 and evidence["worst_tensor"].startswith("quantizer.levels.0.")
        # the read-back scheduled at step 4 (read_every=2) checksums the buffers after step 4's forward
        assert result["t611"][0]["subject"] == f"step {PERTURB_AT_STEP}"


NAN_RANK, NAN_STEP = 1, 3


def _strict_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import datetime
    import time

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
    from monitor_loops import PassThroughCodec, crops, speech_bank

    import codecdoctor

    torch.set_num_threads(1)
    # a short collective timeout: if a rank were left waiting, this test fails in a minute, not in 30
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    outcome: dict = {"rank": rank}
    start = time.monotonic()
    try:
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(PassThroughCodec(gain=0.8))
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        monitor = codecdoctor.Monitor(model, 16000, mode="strict", stop_on="nonfinite", read_every=10, optimizer=opt)
        bank = speech_bank(2.0, seed=rank)
        for step in range(12):
            x = crops(bank, step)
            if rank == NAN_RANK and step == NAN_STEP:
                x[0, 0, 5] = float("nan")  # one rank's data is broken; the other's is fine
            y = model(x)
            loss = (y - x).abs().mean()
            monitor.on_batch(x, y, {"l1": loss})
            opt.zero_grad()
            loss.backward()
            monitor.on_backward(model)
            opt.step()
            outcome["last_step"] = step
            monitor.on_step()
        outcome["ending"] = "completed"
    except codecdoctor.CheckFailed as exc:
        outcome.update(ending="CheckFailed", ids=[f.id for f in exc.findings],
                       subjects=[f.subject for f in exc.findings])
    except Exception as exc:  # a collective timeout or a peer gone: what the stop vote prevents
        outcome.update(ending=type(exc).__name__, error=str(exc)[:300])
    outcome["seconds"] = time.monotonic() - start
    Path(out_dir, f"strict{rank}.json").write_text(json.dumps(outcome))
    # leave together: a rank tearing gloo down while its peer still talks aborts the process
    # ("terminate called without an active exception"), which is teardown, not the stop under test
    dist.barrier()
    dist.destroy_process_group()
    # and end without the C++ static destructors: a full-suite run still lost a rank to the same
    # abort (SIGABRT) despite the barrier; the outcome file is written and closed by now
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
def test_strict_stop_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_strict_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"strict{r}.json").read_text()) for r in range(2)]
    for result in results:
        # both ranks raise CheckFailed after the faulty step, not a gloo timeout 60 s later
        assert result["ending"] == "CheckFailed", result
        assert result["last_step"] == NAN_STEP
        assert "T601" in result["ids"]
    # rank 0 saw nothing wrong in its own data: it names rank 1's finding
    assert any(s.startswith(f"rank {NAN_RANK}: step {NAN_STEP}") for s in results[0]["subjects"]), results[0]
    print(f"strict DDP stop: ranks stopped after {[round(r['seconds'], 2) for r in results]} s")
