"""Audit throughput on a Dask LocalCluster with 2 worker processes vs `--jobs 2` on the same machine
(run: ./run bench bench_dask).

Generates a corpus of `--files` speech-like float32 files of `--file-s` seconds (default 200 x 30 s,
1.7 h) in a temporary folder, warms the page cache, then times `audit_data(root, jobs=2)` and
`audit_data(root, client=Client(LocalCluster(n_workers=2, threads_per_worker=1)))` interleaved,
`--repeat` times each, and prints medians, audio hours per second and the ratio. The cluster is
started once before the timed runs (its start-up is printed separately): what is compared is the
engine's cost per audit, one task per file and a tree reduction of the accumulators on the cluster,
against the process pool's batches. Both results are checked to be the same JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from codecdoctor.audit import audit_data  # noqa: E402
from codecdoctor.measure.stimuli import speech_like  # noqa: E402
from codecdoctor.report import json as json_out  # noqa: E402

SR = 16000


def comparable(report) -> dict:
    data = json.loads(json_out.dumps(report))
    m = data["measurements"]
    return {"files": m["files"], "corpus": m["corpus"], "findings": data["findings"], "envelopes": m["envelopes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--file-s", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    try:
        import distributed
    except ImportError:
        print("bench_dask: needs dask[distributed] (pip install 'codecdoctor[distributed]')")
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    print(f"bench_dask: temp folder {tmp}; cores {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    try:
        base = speech_like(60.0, SR, seed=1, peak=0.8)
        rng = np.random.default_rng(0)
        n = int(opts.file_s * SR)
        for i in range(opts.files):
            start = int(rng.integers(0, len(base) - n)) if len(base) > n else 0
            clip = np.resize(base[start:], n) * float(rng.uniform(0.3, 1.0))
            path = tmp / "corpus" / f"spk{i % 10:02d}" / f"utt_{i:04d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, clip.astype(np.float32), SR, subtype="FLOAT")
        for path in (tmp / "corpus").rglob("*.wav"):
            path.read_bytes()  # page cache
        hours = opts.files * opts.file_s / 3600
        print(f"corpus: {opts.files} files x {opts.file_s:g} s = {hours:.2f} h")

        t0 = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        print(f"LocalCluster start-up (2 worker processes): {time.perf_counter() - t0:.2f} s (not in the timings)")
        try:
            audit_data(tmp / "corpus", client=client)  # warm-up: workers import codecdoctor once
            times: dict[str, list[float]] = {"--jobs 2 (process pool)": [], "Dask LocalCluster, 2 workers": []}
            results = {}
            for _ in range(opts.repeat):
                for name in times:
                    start = time.perf_counter()
                    if name.startswith("--jobs"):
                        report = audit_data(tmp / "corpus", jobs=2)
                    else:
                        report = audit_data(tmp / "corpus", client=client)
                    times[name].append(time.perf_counter() - start)
                    results[name] = comparable(report)
        finally:
            client.close()
            cluster.close()
        same = len({json.dumps(r, sort_keys=True) for r in results.values()}) == 1
        print(f"\n{'engine':32} {'median s':>9} {'audio h/s':>10}")
        medians = {name: float(np.median(t)) for name, t in times.items()}
        for name, wall in medians.items():
            print(f"{name:32} {wall:9.2f} {hours / wall:10.2f}")
        jobs, dask = medians["--jobs 2 (process pool)"], medians["Dask LocalCluster, 2 workers"]
        print(f"\nDask throughput / --jobs 2 throughput: {jobs / dask:.2f}x "
              f"(load average now {os.getloadavg()[0]:.2f}); same JSON: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
