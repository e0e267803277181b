"""End-to-end speed and memory of the commands on the team's own file sizes, each against a peer.

One run prints one table; every figure is a ratio against its peer, measured the same way: a fresh
process per run (start-up, imports and report writing included, as a user sees it), wall time
from just before the process starts to its exit, its CPU time (user + system, all threads: on a
shared machine wall time also counts the waiting) and its peak RSS (its own high-water mark).
Runs are interleaved (ours, peer, ours, peer, ...) and the medians are reported, so a background
load hits both alike.

Rows (ours | peer):
- compare, one 1.8 h pair (16 kHz float32, EST = 0.9 x REF, 240 samples late, light noise):
  `codecdoctor compare REF EST` (HTML + JSON) | the I/O floor, reading both files with soundfile;
- audit-data, three 1.6-1.8 h files: `codecdoctor audit-data DIR` (HTML + JSON) | `sox FILE -n
  stats` on each, in sequence;
- audit-data, one 1.8 h file: the same | `sox FILE -n stats`;
- start-up: `codecdoctor --help` | `python -c pass`;
- check-ckpt static, ~116 MB checkpoint: `codecdoctor check-ckpt CKPT --no-probes` (HTML + JSON; the static checks) |
  `torch.load(CKPT, weights_only=True)` in a fresh python;
- compare, ten minutes of 10 s pairs: `codecdoctor compare REF/ EST/`, and with `--no-quality` |
  reading every pair with soundfile and one numpy SNR each.

Files are generated into a temporary folder (speech-like audio from codecdoctor.measure.stimuli,
varied in level; about 2 GB for the full sizes) and removed afterwards.

    .venv/bin/python bench/bench_speed.py [--runs 3] [--quick] [--rows TEXT]

`--quick` runs every row once on small inputs (seconds of audio, a 1 MB checkpoint): a smoke test
that the table is complete, not a measurement. The page cache is warmed by one peer run per row
(the peers read the same files), not counted. Children run with bytecode caching on, as in a
user's install (PYTHONDONTWRITEBYTECODE is dropped; codecdoctor's sources are compiled once first).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SR = 16000

# Runs one command and reports its wall time and peak RSS: os.wait4 gives that child's own
# rusage (its ru_maxrss starts from this small runner's, about 10 MB, inherited across fork + exec).
_RUNNER = r"""
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
                  "rc": os.waitstatus_to_exitcode(status)}))
"""


@dataclass
class Row:
    name: str
    ours_label: str
    peer_label: str
    ours: list[str]
    peer: list[str]
    goal: str
    audio_s: float = 0.0            # when set, the row also reports seconds of audio per second
    cwd: Path | None = None
    ours_runs: list[dict] = field(default_factory=list)
    peer_runs: list[dict] = field(default_factory=list)


def user_environment() -> dict[str, str]:
    """The environment a user's shell gives: bytecode caching on (a sandbox that sets
    PYTHONDONTWRITEBYTECODE makes every run compile codecdoctor's ~60 modules again, ~0.2 s)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_sources() -> None:
    """Write the .pyc files an installed package has (pip compiles at install time)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "codecdoctor"), str(ROOT / "model")],
                   env=user_environment(), check=False, stdout=subprocess.DEVNULL)


def run_once(command: list[str], cwd: Path | None) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUNNER, *command], capture_output=True, text=True, cwd=cwd,
                         check=True, env=user_environment())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] not in (0, 1):  # 1 = findings at or above --fail-on: a finished run
        raise RuntimeError(f"{' '.join(command)} exited {result['rc']}")
    return result


def codecdoctor() -> list[str]:
    script = Path(sys.executable).with_name("codecdoctor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "codecdoctor"]


def write_speech(path: Path, seconds: float, *, seed: int, delay: int = 0, gain: float = 1.0,
                 noise: float = 0.0) -> None:
    """Speech-like float32 audio written a minute at a time (memory stays small): a minute of
    codecdoctor.measure.stimuli speech repeated at varying levels; optionally delayed, scaled and
    with white noise added (an estimate)."""
    from codecdoctor.measure.stimuli import speech_like

    base = speech_like(60.0, SR, seed=seed).astype(np.float64)
    rng = np.random.default_rng(seed)
    levels = (0.5, 0.9, 0.3, 0.7, 1.0, 0.4)
    total = int(seconds * SR)
    carry = np.zeros(delay)
    with sf.SoundFile(str(path), "w", SR, 1, "FLOAT") as handle:
        for index, start in enumerate(range(0, total, base.size)):
            block = base[: min(base.size, total - start)] * levels[index % len(levels)]
            if delay:
                joined = np.concatenate([carry, block])
                block, carry = joined[: block.size], joined[block.size:]
            if noise:
                block = gain * block + rng.standard_normal(block.size) * noise
            elif gain != 1.0:
                block = gain * block
            handle.write(block.astype(np.float32))


class Inputs(dict):
    """The benchmark's files, each generated on first use, so `--rows` builds only what its rows
    read (the audit rows need no checkpoint, no short pairs and no noisy estimate)."""

    def __init__(self, root: Path, quick: bool) -> None:
        super().__init__()
        self.root, self.quick = root, quick
        self.hour = 20.0 if quick else 3600.0

    def __missing__(self, key: str):
        getattr(self, f"_build_{key}")()
        return self[key]

    def _ref(self) -> Path:
        ref = self.root / "pair" / "ref.wav"
        if not ref.exists():
            ref.parent.mkdir(exist_ok=True)
            write_speech(ref, 1.8 * self.hour, seed=1)
        return ref

    def _build_pair(self) -> None:
        ref = self._ref()
        write_speech(ref.with_name("est.wav"), 1.8 * self.hour, seed=1, delay=240, gain=0.9, noise=3e-4)
        self["pair"] = (ref, ref.with_name("est.wav"))

    def _build_three(self) -> None:
        three = self.root / "three"
        three.mkdir()
        for index, hours in enumerate((1.6, 1.7)):
            write_speech(three / f"val_{index}.wav", hours * self.hour, seed=2 + index)
        os.link(self._ref(), three / "val_2.wav")
        self["three"] = sorted(three.iterdir())

    def _build_one(self) -> None:
        one = self.root / "one"
        one.mkdir()
        os.link(self._ref(), one / "val.wav")
        self["one"] = one / "val.wav"

    def _build_ckpt(self) -> None:
        if self.quick:  # a plain 1 MB state dict: the row's plumbing, not a checkpoint worth timing
            import torch

            self["ckpt"] = self.root / "small.pt"
            torch.save({"model": {"weight": torch.randn(256, 1024)}, "step": 1}, self["ckpt"])
        else:
            from bench_ckpt import build_checkpoint

            self["ckpt"] = build_checkpoint(116.0)

    def _pairs_of_10_s(self, name: str, minutes: float) -> None:
        """REF/EST folders of 10 s pairs (bench_compare's corpus) under `name`, and their seconds."""
        from bench_compare import make_corpus

        folder = self.root / name
        (folder / "ref").mkdir(parents=True)
        (folder / "est").mkdir()
        self[f"{name}_audio_s"] = make_corpus(folder, minutes, 10.0)
        self[name] = (folder / "ref", folder / "est")

    def _build_short(self) -> None:
        # ten minutes: the rate (s of audio per s) is what the row reports, and PESQ + STOI on every
        # pair make the quality row minutes long per run at an hour
        self._pairs_of_10_s("short", 0.5 if self.quick else 10.0)

    def _build_hour(self) -> None:
        # an hour for the no-quality row: a validation folder's size, where the command's fixed costs
        # (start-up, the report) are spread as they are for a user
        self._pairs_of_10_s("hour", 1.0 if self.quick else 60.0)

    _build_short_audio_s = _build_short
    _build_hour_audio_s = _build_hour


READ_BOTH = ("import soundfile as sf, sys\n"
             "for path in sys.argv[1:]:\n"
             "    with sf.SoundFile(path) as f:\n"
             "        for block in f.blocks(blocksize=1 << 20, dtype='float32'):\n"
             "            pass\n")
SHORT_PEER = ("import soundfile as sf, sys, numpy as np, pathlib\n"
              "ref, est = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
              "for path in sorted(ref.iterdir()):\n"
              "    r, _ = sf.read(str(path), dtype='float64')\n"
              "    e, _ = sf.read(str(est / path.name), dtype='float64')\n"
              "    n = min(r.size, e.size)\n"
              "    snr = 10 * np.log10(np.sum(r[:n] ** 2) / np.sum((r[:n] - e[:n]) ** 2))\n")


def rows_for(inputs: Inputs, root: Path, wanted: str = "") -> list[Row]:
    """The rows whose name contains `wanted`; only their inputs are generated."""
    cd = codecdoctor()
    py = sys.executable
    short_min = 0.5 if inputs.quick else 10.0
    hour_min = 1.0 if inputs.quick else 60.0
    ckpt_mb = 1 if inputs.quick else 116

    def pair() -> tuple[str, str]:
        return tuple(str(p) for p in inputs["pair"])  # type: ignore[return-value]

    def sox_three() -> list[str]:
        return ["bash", "-c", " ; ".join(f"sox '{p}' -n stats 2>/dev/null" for p in inputs["three"])]

    makers = {
        "compare, one 1.8 h pair (full diagnosis)": lambda name: Row(
            name, "codecdoctor compare (HTML+JSON)", "I/O floor: soundfile read of both",
            [*cd, "compare", *pair()], [py, "-c", READ_BOTH, *pair()], "<= 5 s, < 500 MB", cwd=root),
        "audit-data, three 1.6-1.8 h files": lambda name: Row(
            name, "codecdoctor audit-data (HTML+JSON)", "sox stats x3 in sequence",
            [*cd, "audit-data", str(Path(inputs["three"][0]).parent)], sox_three(), "<= 0.8x sox", cwd=root),
        "audit-data, one 1.8 h file": lambda name: Row(
            name, "codecdoctor audit-data (HTML+JSON)", "sox stats",
            [*cd, "audit-data", str(Path(inputs["one"]).parent)], ["sox", str(inputs["one"]), "-n", "stats"],
            "<= 1.0x sox", cwd=root),
        "start-up": lambda name: Row(name, "codecdoctor --help", "python -c pass", [*cd, "--help"],
                                     [py, "-c", "pass"], "(no torch/matplotlib imported)", cwd=root),
        f"check-ckpt static, {ckpt_mb} MB checkpoint": lambda name: Row(
            name, "codecdoctor check-ckpt --no-probes (HTML+JSON)", "torch.load(weights_only=True)",
            [*cd, "check-ckpt", str(inputs["ckpt"]), "--no-probes"],
            [py, "-c", "import sys, torch; torch.load(sys.argv[1], map_location='cpu', weights_only=True)",
             str(inputs["ckpt"])], "<= 1.5x", cwd=root),
        f"compare, {short_min:g} min of 10 s pairs": lambda name: Row(
            name, "codecdoctor compare REF/ EST/", "soundfile read + numpy SNR per pair",
            [*cd, "compare", *(str(p) for p in inputs["short"])],
            [py, "-c", SHORT_PEER, *(str(p) for p in inputs["short"])], ">= 1000 s of audio/s",
            audio_s=inputs["short_audio_s"], cwd=root),
        f"compare, {short_min:g} min of 10 s pairs, no quality metrics": lambda name: Row(
            name, "codecdoctor compare REF/ EST/ --no-quality", "soundfile read + numpy SNR per pair",
            [*cd, "compare", *(str(p) for p in inputs["short"]), "--no-quality"],
            [py, "-c", SHORT_PEER, *(str(p) for p in inputs["short"])], ">= 1000 s of audio/s",
            audio_s=inputs["short_audio_s"], cwd=root),
        f"compare, {hour_min:g} min of 10 s pairs, no quality metrics": lambda name: Row(
            name, "codecdoctor compare REF/ EST/ --no-quality", "soundfile read + numpy SNR per pair",
            [*cd, "compare", *(str(p) for p in inputs["hour"]), "--no-quality"],
            [py, "-c", SHORT_PEER, *(str(p) for p in inputs["hour"])], ">= 1000 s of audio/s",
            audio_s=inputs["hour_audio_s"], cwd=root),
    }
    return [make(name) for name, make in makers.items() if wanted in name]


def table(rows: list[Row]) -> str:
    header = ("| work | ours (s) | peer (s) | ratio | ours CPU (s) | peer CPU (s) | ours peak RSS (MB) | "
              "peer peak RSS (MB) | goal |\n|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    for row in rows:
        ours = statistics.median(r["wall_s"] for r in row.ours_runs)
        peer = statistics.median(r["wall_s"] for r in row.peer_runs)
        ours_cpu = statistics.median(r["cpu_s"] for r in row.ours_runs)
        peer_cpu = statistics.median(r["cpu_s"] for r in row.peer_runs)
        ours_rss = statistics.median(r["rss_mb"] for r in row.ours_runs)
        peer_rss = statistics.median(r["rss_mb"] for r in row.peer_runs)
        extra = f" ({row.audio_s / ours:.0f} s of audio/s)" if row.audio_s else ""
        lines.append(f"| {row.name}: {row.ours_label} vs {row.peer_label} | {ours:.2f}{extra} | {peer:.2f} | "
                     f"{ours / peer:.2f}x | {ours_cpu:.2f} | {peer_cpu:.2f} | {ours_rss:.0f} | {peer_rss:.0f} | "
                     f"{row.goal} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per row (medians reported)")
    parser.add_argument("--quick", action="store_true", help="small inputs, one run: checks the table is complete")
    parser.add_argument("--rows", default="", help="only the rows whose name contains this text (default: all)")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    root = Path(tempfile.mkdtemp(prefix="bench_speed_"))
    try:
        started = time.perf_counter()
        rows = rows_for(Inputs(root, args.quick), root, args.rows)
        print(f"inputs generated in {time.perf_counter() - started:.1f} s under {root}", flush=True)
        compile_sources()
        for row in rows:  # the peers read the same files: the page cache is warm for both alike
            run_once(row.peer, row.cwd)
        for index in range(runs):
            for row in rows:
                row.ours_runs.append(run_once(row.ours, row.cwd))
                row.peer_runs.append(run_once(row.peer, row.cwd))
                print(f"run {index + 1}/{runs} {row.name}: ours {row.ours_runs[-1]['wall_s']:.2f} s, "
                      f"peer {row.peer_runs[-1]['wall_s']:.2f} s", flush=True)
        print(f"medians of {runs} interleaved run(s), {os.cpu_count()} CPUs"
              + (" (--quick: small inputs, not a measurement)" if args.quick else ""))
        print(table(rows))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
