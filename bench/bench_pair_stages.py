"""Where a short pair's compare time goes: thread CPU per stage of `compare._measure_one` on 10 s pairs.

Each stage (lag search, the STFT, R317's frame locking, R304's drift windows, pass 1, ...) is
wrapped with a timer that adds the thread CPU spent inside it. The pairs are measured in this one
process with the executable's settings: one OpenBLAS thread and glibc's raised malloc thresholds.
Stages nest (pass 2 holds the lag search), so the column does not add up to the total. Run it twice,
at two commits, to A/B a change: quote the totals' median ratio, because this machine is noisy.

    .venv/bin/python bench/bench_pair_stages.py [--pairs 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as the codecdoctor executable sets it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compare import make_corpus  # noqa: E402

from codecdoctor import compare as C  # noqa: E402
from codecdoctor.core.tuning import keep_freed_memory  # noqa: E402
from codecdoctor.measure.pair import passes as P  # noqa: E402

# each stage is patched where its caller looks it up
STAGES = [(P, "pass_one"), (P, "pass_two"), (P, "estimate_lag"), (P, "correlation_chance"),
          (P.MelSpectra, "update"), (P, "frame_locking_excerpt"), (P, "measure_lag_drift"),
          (C, "judge_pair"), (C, "pair_record"), (C, "_open_pair")]


def instrument(spent: dict[str, float]) -> None:
    for module, name in STAGES:
        original = getattr(module, name)

        label = f"{module.__name__}.{name}" if isinstance(module, type) else name   # a method: its class too

        def timed(*args, _original=original, _name=label, **kwargs):
            start = time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.thread_time() - start
        setattr(module, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the pairs; medians are printed")
    args = parser.parse_args()
    keep_freed_memory()
    with tempfile.TemporaryDirectory(prefix="bench_pair_stages_") as tmp:
        root = Path(tmp)
        (root / "ref").mkdir()
        (root / "est").mkdir()
        make_corpus(root, (args.pairs + 10) * 10 / 60, 10.0)
        pairs, _ = C._pairs_from_paths(root / "ref", root / "est")
        settings = C._Settings(None, None, None, False, False)
        spent: dict[str, float] = {}
        instrument(spent)
        for pair in pairs[:10]:      # warm-up: imports, caches
            C._measure_one(pair, settings)
        totals, per_stage = [], {}
        for _ in range(max(1, args.rounds)):
            spent.clear()
            start = time.thread_time()
            for pair in pairs[10:10 + args.pairs]:
                C._measure_one(pair, settings)
            totals.append((time.thread_time() - start) / args.pairs * 1e3)
            for name, value in spent.items():
                per_stage.setdefault(name, []).append(value / args.pairs * 1e3)
    print(f"CPU per 10 s pair: {statistics.median(totals):.2f} ms (median of {len(totals)} rounds of "
          f"{args.pairs} pairs; rounds {', '.join(f'{t:.2f}' for t in totals)})")
    for name, values in sorted(per_stage.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {name:24s} {statistics.median(values):6.2f} ms")


if __name__ == "__main__":
    main()
