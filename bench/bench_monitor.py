"""Overhead of the live monitor on a training step, and proof that it adds no per-step host sync
(run: ./run bench bench_monitor, or .venv/bin/python bench/bench_monitor.py).

1. Overhead. The built-in codec (default config: 8 × 1024 RVQ, 6.0 M parameters) trains on the CPU
   at batch 16 × 1 s. Steps with and without the monitor's hooks alternate on the same model in
   ABBA order (so drift in machine load hits both sides equally); the script prints the median step
   time of each, their ratio, the median time spent inside the hooks per step, the cost of one
   read-back and of T612's loss-balance measurement (both once per window), and the amortised
   overhead (hooks + (read-back + balance) / read_every) / step. Goal: ratio ≤ 1.03.
2. Host reads. A test double (`tests/host_reads.py`, `HostReadCounter`: dispatcher-level
   `_local_scalar_dense` and copies to CPU, plus .item/.tolist/.numpy/.cpu/bool/float/int patched)
   counts device-to-host reads made inside the hooks, step by step, on the tiny codec for
   2 × read_every steps: every step but the scheduled read-backs must read 0. On a CUDA machine it
   also runs a few monitored steps under `torch.cuda.set_sync_debug_mode("error")`.

3. --amp fp16|bf16: the same overhead measurement for a mixed-precision step: the forward under
   `torch.autocast("cpu", dtype)`, and for fp16 a real `torch.amp.GradScaler` whose scale and
   growth tracker the monitor copies on the device in `on_step(scaler)` (T606).

Options: --pairs N (with/without step pairs, default 10), --batch B (16), --seconds S (1.0),
--config default|tiny, --read-every K (25), --threads T (1), --amp none|fp16|bf16 (none).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the host-read counter is a test double, not part of the package

from host_reads import HostReadCounter  # noqa: E402

import codecdoctor  # noqa: E402
from codecdoctor.measure.stimuli import speech_like  # noqa: E402


def make_batches(count: int, batch: int, samples: int, seed: int = 0) -> list[torch.Tensor]:
    bank = torch.from_numpy(np.asarray(speech_like(max(8.0, 2 * samples / 16000), 16000, seed=seed, peak=0.7),
                                       dtype=np.float32).reshape(-1))
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        starts = torch.randint(0, bank.numel() - samples, (batch,), generator=g).tolist()
        out.append(torch.stack([bank[s: s + samples] for s in starts]).unsqueeze(1))
    return out


def build(config_name: str):
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    torch.manual_seed(0)
    config = CodecConfig.preset(config_name)
    model = Codec(config)
    return model, ReconstructionLoss(config), torch.optim.AdamW(model.parameters(), lr=3e-4)


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def step(model, loss_fn, optimizer, x, monitor=None, amp: str = "none", scaler=None) -> tuple[float, float, float]:
    """One training step; returns (wall seconds, CPU seconds of this process, wall seconds inside
    the monitor's hooks). On a shared machine the CPU time is the steadier measure of the work done:
    wall time also counts the time other processes held the core."""
    hooks = 0.0
    start_cpu = time.process_time()
    start = time.perf_counter()
    with torch.autocast(x.device.type, dtype=AMP_DTYPES.get(amp, torch.float32), enabled=amp in AMP_DTYPES):
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
    if monitor is not None:
        t = time.perf_counter()
        monitor.on_batch(x, out.audio, losses)
        hooks += time.perf_counter() - t
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(losses["total"]).backward()
        scaler.unscale_(optimizer)
    else:
        losses["total"].backward()
    if monitor is not None:
        t = time.perf_counter()
        monitor.on_backward(model)
        hooks += time.perf_counter() - t
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if monitor is not None:
        t = time.perf_counter()
        monitor.on_step(scaler)
        hooks += time.perf_counter() - t
    return time.perf_counter() - start, time.process_time() - start_cpu, hooks


def overhead(args) -> None:
    model, loss_fn, optimizer = build(args.config)
    scaler = torch.amp.GradScaler("cpu") if args.amp == "fp16" else None
    step_kw = {"amp": args.amp, "scaler": scaler}
    samples = int(args.seconds * 16000)
    batches = make_batches(2 * args.pairs + 2, args.batch, samples)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=args.read_every, optimizer=optimizer)
    step(model, loss_fn, optimizer, batches[0], **step_kw)  # warm-up: allocator, k-means init
    step(model, loss_fn, optimizer, batches[1], monitor, **step_kw)
    with_s, without_s, hook_s, with_cpu, without_cpu = [], [], [], [], []
    for i in range(args.pairs):
        order = (True, False) if i % 2 == 0 else (False, True)  # ABBA
        for j, monitored in enumerate(order):
            x = batches[2 + 2 * i + j]
            seconds, cpu, hooks = step(model, loss_fn, optimizer, x, monitor if monitored else None, **step_kw)
            (with_s if monitored else without_s).append(seconds)
            (with_cpu if monitored else without_cpu).append(cpu)
            if monitored:
                hook_s.append(hooks)
        print(f"  pair {i + 1}/{args.pairs}: with {with_s[-1]:.3f} s (cpu {with_cpu[-1]:.3f}), "
              f"without {without_s[-1]:.3f} s (cpu {without_cpu[-1]:.3f})", flush=True)
    # the read-back: fill a full window of rows, then time the transfer + checks
    readback_s = []
    for _ in range(3):
        for _ in range(min(args.read_every, 5)):
            monitor.on_batch(batches[0], batches[0], {"total": torch.tensor(1.0)})
        t = time.perf_counter()
        monitor.flush()
        readback_s.append(time.perf_counter() - t)
    monitor.close()
    # T612's loss-balance measurement runs on the first step of each window only: one autograd.grad
    # per loss term from the term to the decoder output
    from codecdoctor.monitor.balance import term_grad_norms

    balance_s = []
    for x in batches[:3]:
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        t = time.perf_counter()
        term_grad_norms(out.audio, losses)
        balance_s.append(time.perf_counter() - t)
        optimizer.zero_grad(set_to_none=True)
    med_with, med_without = statistics.median(with_s), statistics.median(without_s)
    med_hooks, med_readback = statistics.median(hook_s), statistics.median(readback_s)
    med_balance = statistics.median(balance_s)
    amortised = (med_hooks + (med_readback + med_balance) / args.read_every) / med_without
    params = sum(p.numel() for p in model.parameters())
    print(f"\nmonitor overhead, {args.config} codec ({params / 1e6:.2f} M params), batch {args.batch} x {args.seconds:g} s, "
          f"CPU, {torch.get_num_threads()} thread(s), {args.pairs} interleaved pairs, autocast {args.amp}"
          f"{' + GradScaler' if scaler is not None else ''}")
    print(f"  median step without monitor : {med_without:.3f} s")
    print(f"  median step with monitor    : {med_with:.3f} s")
    print(f"  ratio of medians (wall)     : {med_with / med_without:.4f}   (goal <= 1.03)")
    cpu_with, cpu_without = statistics.median(with_cpu), statistics.median(without_cpu)
    print(f"  median CPU time with/without: {cpu_with:.3f} s / {cpu_without:.3f} s")
    print(f"  ratio of medians (CPU time) : {cpu_with / cpu_without:.4f}   (goal <= 1.03)")
    print(f"  median time inside hooks    : {1000 * med_hooks:.2f} ms/step")
    print(f"  one read-back (incl. checks): {1000 * med_readback:.2f} ms, every {args.read_every} steps")
    print(f"  T612 loss balance, all terms: {1000 * med_balance:.2f} ms, every {args.read_every} steps")
    print(f"  amortised overhead          : 1 + {amortised:.5f} = {1 + amortised:.4f}")


def host_reads(args) -> None:
    model, loss_fn, optimizer = build("tiny")
    k = args.read_every
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=k, optimizer=optimizer)
    scaler = torch.amp.GradScaler("cpu") if args.amp == "fp16" else None
    batches = make_batches(2 * k, 4, 4000, seed=1)
    per_step = []
    for i, x in enumerate(batches):
        with torch.autocast(x.device.type, dtype=AMP_DTYPES.get(args.amp, torch.float32), enabled=args.amp in AMP_DTYPES):
            out = model(x)
            losses = loss_fn(out.audio, x, out.commit_loss)
        with HostReadCounter() as reads:
            monitor.on_batch(x, out.audio, losses)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(losses["total"]) if scaler is not None else losses["total"]).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        with HostReadCounter() as reads_backward:
            monitor.on_backward(model)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        with HostReadCounter() as reads_step:
            monitor.on_step(scaler)  # the scale and growth tracker are copied on the device (T606)
        per_step.append((i, reads.total + reads_backward.total + reads_step.total, dict(reads.counts)))
    monitor.close()
    read_back_steps = [i for i, n, _ in per_step if n]
    quiet = [n for i, n, _ in per_step if i not in (k, 2 * k)]
    print(f"\nhost reads inside the hooks, tiny codec, read_every={k}, {len(per_step)} steps, autocast {args.amp}"
          f"{' + GradScaler' if scaler is not None else ''}:")
    print(f"  steps with any read: {read_back_steps} (scheduled read-backs at steps {k}"
          f"{', ' + str(2 * k) if 2 * k < len(per_step) else ''})")
    print(f"  reads on the other {len(quiet)} steps: total {sum(quiet)}, max {max(quiet) if quiet else 0}")
    for i, n, counts in per_step:
        if n:
            print(f"  step {i}: {counts}")
    if torch.cuda.is_available():
        cuda_sync_check(k)


def cuda_sync_check(k: int) -> None:
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    config = CodecConfig.tiny()
    model, loss_fn = Codec(config).cuda(), ReconstructionLoss(config).cuda()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=k)
    x = torch.randn(4, 1, 4000, device="cuda") * 0.1
    for _ in range(3):  # warm-up (k-means init syncs inside the codec itself)
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        monitor.on_batch(x, out.audio, losses)
        losses["total"].backward()
        optimizer.step()
    errors = 0
    for i in range(3, k - 1):
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        torch.cuda.set_sync_debug_mode("error")
        try:
            monitor.on_batch(x, out.audio, losses)
        except RuntimeError as exc:
            errors += 1
            print(f"  sync in on_batch at step {i}: {exc}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
        optimizer.zero_grad()
        losses["total"].backward()
        torch.cuda.set_sync_debug_mode("error")
        try:
            monitor.on_backward(model)
            monitor.on_step()
        except RuntimeError as exc:
            errors += 1
            print(f"  sync in on_backward/on_step at step {i}: {exc}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
        optimizer.step()
    monitor.close()
    print(f"  CUDA: hooks under set_sync_debug_mode('error') for {k - 4} steps: {errors} syncs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--config", default="default", choices=("default", "tiny"))
    parser.add_argument("--read-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    host_reads(args)
    if not args.skip_overhead:
        overhead(args)


if __name__ == "__main__":
    main()
