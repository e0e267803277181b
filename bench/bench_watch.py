"""Overhead of `codecdoctor watch` on a foreign training loop (run: ./run bench bench_watch, or
.venv/bin/python bench/bench_watch.py).

The loop is a user's own: a SEANet-style conv codec defined here (encoder strides 2-4-5-8 = hop 320,
channels 16-256, 7-tap convs between the strided ones, decoder ending in tanh; not this project's
codec), L1 + L2 + a multi-resolution STFT magnitude loss, Adam, batch B × S seconds at 16 kHz, on
the CPU. `watch` attaches to it exactly as it does to a script: the global module forward hooks, the
optimizer step hooks, the Tensor.backward wrapper, and the Monitor they feed. Steps with and without
those hooks alternate in ABBA order on the same model (the hooks are installed and removed between
steps), so drift in machine load hits both sides equally. Printed: the median step time of each,
their ratio (goal <= 1.03), the same for process CPU time (steadier on a shared machine), the time
spent inside the hooks per step (median, and the mean including the read-backs), and the cost of one
read-back.

With --amp fp16 (or bf16) the loop is a mixed-precision one: its forward under
`torch.autocast(device, dtype)`, the STFT loss in float32 with autocast disabled, and for fp16 a
`torch.amp.GradScaler` (scale / step / update), so watch's GradScaler wrappers are in the timing too.

On a CUDA machine it then runs watched steps under `torch.cuda.set_sync_debug_mode("error")` and
counts the steps where the hooks synchronised (scheduled read-backs excluded).

Options: --pairs N (30), --batch B (8), --seconds S (1.0), --read-every K (25), --threads T (1),
--amp none|fp16|bf16 (none).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codecdoctor.measure.stimuli import speech_like  # noqa: E402
from codecdoctor.monitor.monitor import Monitor  # noqa: E402
from codecdoctor.monitor.tap import ModelTap  # noqa: E402


class ForeignCodec(nn.Module):
    def __init__(self, base: int = 16, strides=(2, 4, 5, 8)):
        super().__init__()
        enc, dec = [nn.Conv1d(1, base, 7, padding=3), nn.ELU()], []
        channels = base
        for s in strides:  # a residual-free SEANet block: a 7-tap conv, then the strided down-sampling
            enc += [nn.Conv1d(channels, channels, 7, padding=3), nn.ELU(), nn.Conv1d(channels, 2 * channels, s, stride=s),
                    nn.ELU()]
            channels *= 2
        for s in reversed(strides):
            dec += [nn.ConvTranspose1d(channels, channels // 2, s, stride=s), nn.ELU(),
                    nn.Conv1d(channels // 2, channels // 2, 7, padding=3), nn.ELU()]
            channels //= 2
        dec += [nn.Conv1d(channels, 1, 7, padding=3), nn.Tanh()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z


def stft_loss(y, x):
    loss = 0.0
    for n_fft in (512, 1024):
        window = torch.hann_window(n_fft)
        Y = torch.stft(y.squeeze(1), n_fft, n_fft // 4, window=window, return_complex=True).abs()
        X = torch.stft(x.squeeze(1), n_fft, n_fft // 4, window=window, return_complex=True).abs()
        loss = loss + (Y - X).abs().mean()
    return loss


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def train_step(model, optimizer, x, amp: str = "none", scaler=None) -> tuple[float, float]:
    start_cpu, start = time.process_time(), time.perf_counter()
    with torch.autocast(x.device.type, dtype=AMP_DTYPES.get(amp, torch.float32), enabled=amp in AMP_DTYPES):
        y, _ = model(x)
        y = y.float()
        loss = (y - x).abs().mean() + (y - x).pow(2).mean()
        with torch.autocast(x.device.type, enabled=False):  # the spectral loss in float32
            loss = loss + stft_loss(y, x)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, time.process_time() - start_cpu


class TimedTap(ModelTap):
    """The watch tap with a stopwatch on every hook it installs (a slight over-estimate: the
    stopwatch's own two clock reads per call are counted)."""

    spent = 0.0

    def _timed(self, method, *args):
        t = time.perf_counter()
        try:
            return method(*args)
        finally:
            TimedTap.spent += time.perf_counter() - t

    def _pre(self, *args):
        return self._timed(super()._pre, *args)

    def _post(self, *args):
        return self._timed(super()._post, *args)

    def _before_step(self, *args):
        return self._timed(super()._before_step, *args)

    def _after_step(self, *args):
        return self._timed(super()._after_step, *args)

    def on_loss(self, *args):
        return self._timed(super().on_loss, *args)


def batches(count: int, batch: int, samples: int) -> list[torch.Tensor]:
    bank = torch.from_numpy(speech_like(max(8.0, 2 * samples / 16000), 16000, seed=0, peak=0.7).astype("float32"))
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        starts = torch.randint(0, bank.numel() - samples, (batch,), generator=g).tolist()
        out.append(torch.stack([bank[s: s + samples] for s in starts]).unsqueeze(1))
    return out


def overhead(args) -> None:
    torch.manual_seed(0)
    model = ForeignCodec()
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler("cpu") if args.amp == "fp16" else None
    step_kw = {"amp": args.amp, "scaler": scaler}
    data = batches(2 * args.pairs + 2, args.batch, int(args.seconds * 16000))
    readbacks: list[float] = []

    def make_monitor(m, bound):
        monitor = Monitor(m, 16000, mode="strict", stop_on="nonfinite", output_bound=bound, read_every=args.read_every)
        original = monitor._read_back

        def timed_read_back(*a, **k):
            t = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                readbacks.append(time.perf_counter() - t)

        monitor._read_back = timed_read_back
        return monitor

    tap = TimedTap(make_monitor)
    train_step(model, optimizer, data[0], **step_kw)  # warm-up: allocator, first-call costs
    tap.install()
    train_step(model, optimizer, data[1], **step_kw)  # the model is found on this forward
    tap.remove()
    assert tap.model is model, "the tap did not find the foreign codec"
    tap.monitor.flush()  # the first read-back imports the checks: a one-time cost, not a per-window one
    readbacks.clear()
    with_s, without_s, with_cpu, without_cpu, hook_s = [], [], [], [], []
    for i in range(args.pairs):
        for j, watched in enumerate((True, False) if i % 2 == 0 else (False, True)):  # ABBA
            if watched:
                tap.install()
                TimedTap.spent = 0.0
            seconds, cpu = train_step(model, optimizer, data[2 + 2 * i + j], **step_kw)
            if watched:
                hook_s.append(TimedTap.spent)
                tap.remove()
            (with_s if watched else without_s).append(seconds)
            (with_cpu if watched else without_cpu).append(cpu)
        print(f"  pair {i + 1}/{args.pairs}: with {with_s[-1]:.3f} s, without {without_s[-1]:.3f} s, "
              f"hooks {1000 * hook_s[-1]:.2f} ms", flush=True)
    # the read-back on its own: a window of rows (written as the hooks write them), then the transfer
    # and the checks; scheduled every read_every steps
    monitor = tap.monitor
    for _ in range(3):
        for x in data[: min(args.read_every, 10)]:
            monitor.on_batch(x, x, {"loss": torch.tensor(0.1)})
        monitor.flush()
    report = tap.finish("watch")
    med_with, med_without = statistics.median(with_s), statistics.median(without_s)
    params = sum(p.numel() for p in model.parameters())
    print(f"\nwatch overhead on a foreign loop: SEANet-style codec ({params / 1e6:.2f} M params), batch {args.batch} x "
          f"{args.seconds:g} s, CPU, {torch.get_num_threads()} thread(s), {args.pairs} interleaved pairs, "
          f"read_every {args.read_every}, autocast {args.amp}{' + GradScaler' if scaler is not None else ''}")
    print(f"  median step without watch   : {med_without:.4f} s")
    print(f"  median step with watch      : {med_with:.4f} s")
    print(f"  ratio of medians (wall)     : {med_with / med_without:.4f}   (goal <= 1.03)")
    cpu_with, cpu_without = statistics.median(with_cpu), statistics.median(without_cpu)
    print(f"  ratio of medians (CPU time) : {cpu_with / cpu_without:.4f}")
    print(f"  hook time per step          : median {1000 * statistics.median(hook_s):.3f} ms, "
          f"mean {1000 * statistics.mean(hook_s):.3f} ms (incl. read-backs) = "
          f"{100 * statistics.mean(hook_s) / med_without:.2f}% of a step")
    readback = statistics.median(readbacks[-3:])
    amortised = (statistics.median(hook_s) + readback / args.read_every) / med_without
    print(f"  one read-back (incl. checks): {1000 * readback:.2f} ms, every {args.read_every} steps")
    print(f"  amortised overhead          : 1 + {amortised:.5f} = {1 + amortised:.4f}")
    print(f"  findings: {report.ids() or 'none'}")


def cuda_sync_check(args) -> None:
    device = torch.device("cuda")
    model = ForeignCodec().to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.from_numpy(speech_like(2.0, 16000, seed=0, peak=0.7).astype("float32"))[:16000].to(device)
    x = x.reshape(1, 1, -1).repeat(4, 1, 1)
    k = args.read_every
    tap = ModelTap(lambda m, b: Monitor(m, 16000, mode="warn", output_bound=b, read_every=k)).install()
    synced = []
    try:
        for step in range(2 * k):
            scheduled = step > 0 and step % k == 0
            if step >= 2 and not scheduled:
                torch.cuda.set_sync_debug_mode("error")
            try:
                y, _ = model(x)
                loss = (y - x).abs().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            except RuntimeError as exc:
                synced.append((step, str(exc).splitlines()[0]))
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        tap.remove()
    tap.finish("watch")
    print(f"\nCUDA: {2 * k - 2 - 1} watched steps under set_sync_debug_mode('error') (read-back steps excluded): "
          f"{len(synced)} synchronised {synced[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--read-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overhead(args)
    if torch.cuda.is_available():
        cuda_sync_check(args)


if __name__ == "__main__":
    main()
