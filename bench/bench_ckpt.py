"""Static `check-ckpt` of a ~116 MB checkpoint, against a bare `torch.load` of the same file.

Builds (once, under bench/out/) a codecdoctor-codec/1 checkpoint whose weights plus AdamW state
(exp_avg, exp_avg_sq: 3 float32 copies of every parameter, as a real training checkpoint holds)
total about 116 MB, then times, interleaved (peer, ours, peer, ours, ...; the ratio is the median
of the per-pair ratios, so a background load hits both alike):
- peer: `torch.load(path, weights_only=True)` (what any loader does before looking at a tensor);
- codecdoctor: `check_checkpoint(path, probes=False)`: safe mmap load, format detection, one
  pass over every tensor (non-finite count, RMS, dtype), optimizer state scan, EMA codebook
  statistics, C2xx / Q4xx / S5xx checks (S503 runs its fp16 loss emulation on 1 s of audio).

Peak RSS: each contender once more in a fresh subprocess that reports its own VmHWM.

    .venv/bin/python bench/bench_ckpt.py [--mb 116] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

torch.set_num_threads(1)

OUT = Path(__file__).resolve().parent / "out"


def build_checkpoint(target_mb: float) -> Path:
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig

    path = OUT / f"ckpt_{int(target_mb)}mb.pt"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    # Parameters scale with base_channels²; pick the width whose weights + 2 Adam moments reach the target.
    base = 32
    while True:
        codec = Codec(CodecConfig(base_channels=base))
        params = sum(p.numel() for p in codec.parameters())
        buffers = sum(b.numel() for b in codec.buffers())
        if (3 * params + buffers) * 4 / 1e6 >= target_mb or base > 512:
            break
        base += 8
    optimizer = torch.optim.AdamW(codec.parameters(), lr=3e-4)
    for p in codec.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()  # creates exp_avg / exp_avg_sq for every parameter
    from codecdoctor_model.checkpoint import save_checkpoint

    save_checkpoint(path, {"config": codec.config.to_dict(), "model": codec.state_dict(),
                           "optimizer": optimizer.state_dict(), "scaler": {"scale": 65536.0}, "step": 1, "epoch": 0,
                           "history": [], "train_args": {"learning_rate": 3e-4}})
    return path


def _rss_child(path: Path, which: str) -> float:
    """Peak RSS (MB) of a fresh process that imports torch and runs one contender."""
    import subprocess

    code = (f"import sys, torch; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            "torch.set_num_threads(1); "
            + ("torch.load(sys.argv[1], map_location='cpu', weights_only=True)" if which == "peer" else
               "from codecdoctor.check_ckpt import check_checkpoint; check_checkpoint(sys.argv[1], probes=False)")
            # VmHWM belongs to the new address space; ru_maxrss survives exec and would report the parent
            + "; print(int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=116.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import statistics

    from codecdoctor.check_ckpt import check_checkpoint

    path = build_checkpoint(args.mb)
    size_mb = path.stat().st_size / 1e6
    path.read_bytes()  # warm the page cache for both contenders alike
    report = check_checkpoint(path, probes=False)  # warm imports
    peer_times, ours_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        torch.load(path, map_location="cpu", weights_only=True)
        peer_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = check_checkpoint(path, probes=False)
        ours_times.append(time.perf_counter() - started)
    ratios = [o / p for o, p in zip(ours_times, peer_times)]
    static = report.measurements["static"]
    peer_rss, ours_rss = _rss_child(path, "peer"), _rss_child(path, "ours")
    print(f"checkpoint: {size_mb:.1f} MB, {static.parameters / 1e6:.2f} M weight elements, "
          f"{static.optimizer_tensors} optimizer tensors, {len(report.checks_run)} checks ran")
    print(f"bare torch.load(weights_only=True): median {statistics.median(peer_times):.3f} s")
    print(f"static check-ckpt:                  median {statistics.median(ours_times):.3f} s  (last run: load "
          f"{static.load_seconds:.3f} s mmap, tensor scan {static.scan_seconds:.3f} s)")
    print(f"ratio check-ckpt / torch.load: {statistics.median(ratios):.2f}x (median of {len(ratios)} interleaved "
          f"pairs; range {min(ratios):.2f} .. {max(ratios):.2f})")
    print(f"peak RSS: torch.load {peer_rss:.0f} MB, check-ckpt {ours_rss:.0f} MB (fresh process each, torch imported)")


if __name__ == "__main__":
    main()
