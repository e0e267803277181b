"""Static `check-ckpt` of a ~100 MB checkpoint, against a bare `torch.load` of the same file.

Builds (once, under bench/out/) a codecdoctor-codec/1 checkpoint whose weights plus AdamW state
(exp_avg, exp_avg_sq: 3 float32 copies of every parameter, as a real training checkpoint holds)
total about 100 MB, then times:
- peer: `torch.load(path, weights_only=True)` (what any loader does before looking at a tensor);
- codecdoctor: `check_checkpoint(path, probes=False)`: safe mmap load, format detection, one
  pass over every tensor (non-finite count, RMS, dtype), optimizer state scan, EMA codebook
  statistics, C2xx / Q4xx / S5xx checks (S503 runs its fp16 loss emulation on 1 s of audio).

    .venv/bin/python bench/bench_ckpt.py [--mb 100] [--repeats 3]
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


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from codecdoctor.check_ckpt import check_checkpoint

    path = build_checkpoint(args.mb)
    size_mb = path.stat().st_size / 1e6
    # Warm the page cache for both contenders alike.
    path.read_bytes()
    peer = best_of(args.repeats, lambda: torch.load(path, map_location="cpu", weights_only=True))
    report = None

    def ours():
        nonlocal report
        report = check_checkpoint(path, probes=False)

    doctor = best_of(args.repeats, ours)
    static = report.measurements["static"]
    print(f"checkpoint: {size_mb:.1f} MB, {static.parameters / 1e6:.2f} M weight elements, "
          f"{static.optimizer_tensors} optimizer tensors, {len(report.checks_run)} checks ran")
    print(f"bare torch.load(weights_only=True): {peer:.3f} s")
    print(f"static check-ckpt:                  {doctor:.3f} s  (load {static.load_seconds:.3f} s mmap, "
          f"tensor scan {static.scan_seconds:.3f} s)")
    print(f"ratio check-ckpt / torch.load: {doctor / peer:.2f}x")


if __name__ == "__main__":
    main()
