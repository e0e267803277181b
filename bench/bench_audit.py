"""Benchmark `codecdoctor audit-data` against `sox stats` and `ffmpeg astats` (run: ./run bench bench_audit).

Generates, in a temporary folder that is removed afterwards:
  * three float32 16 kHz files of 1.6, 1.7 and 1.8 hours (the team's validation set),
  * a 1.8-hour 16 kHz mono speech-like file as float32 and as PCM16 (the user's case),
  * a 0.5-hour and a 2-hour float32 file (peak RSS must be flat in file length),
  * a 40-file corpus (speed-up of --jobs 2 over --jobs 1).
First prints the end-to-end goals: `codecdoctor audit-data` with its defaults (HTML + JSON, all
cores) on the three files against `sox FILE -n stats` run on them one after another (goal <= 0.8x
sox's time), and on the 1.8-hour file alone (goal <= 1.0x), medians of `--repeat` interleaved
runs, with the same audit without HTML to show what the figures cost. Then prints wall time and
throughput (float32-equivalent bytes = samples × 4 per second) of
`codecdoctor audit-data --jobs 1` vs `sox FILE -n stats` vs `ffmpeg -i FILE -af astats -f null -`,
with ratios; peak RSS of the audit process; and the --jobs 2 speed-up. Each timing is the best of
`--repeat` runs (default 2) with the files already in the page cache. The machine may be shared:
the ratios against peers measured in the same run are what to read, not the absolute numbers.

Options: --hours-long H (default 1.8), --corpus-files N (40), --corpus-file-s S (120), --repeat R (2),
--keep (do not delete the temp folder), --only-goals (only the end-to-end table).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from codecdoctor.measure.stimuli import speech_like  # noqa: E402

SR = 16000


def write_long(path: Path, seconds: float, subtype: str, base: np.ndarray) -> int:
    """Stream a long file: the base speech tiled with a slowly varying gain (bounded memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    total = int(seconds * SR)
    written = 0
    with sf.SoundFile(str(path), "w", SR, 1, subtype=subtype) as out:
        k = 0
        while written < total:
            gain = 0.55 + 0.4 * abs(np.sin(0.37 * k))
            chunk = (base * gain)[: total - written]
            out.write(chunk)
            written += len(chunk)
            k += 1
    return total


GNU_TIME = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)


def _run_once(cmd: list[str]) -> tuple[float, float, int, int]:
    """Wall time, CPU time (user + sys, the process and the workers it waited for), peak RSS
    (bytes) and exit code of one run. The RSS comes from GNU time when installed: a child forked
    from this (large) Python process would otherwise report the parent's RSS until its exec."""
    rss_file = tempfile.NamedTemporaryFile(suffix=".rss", delete=False)
    rss_file.close()
    wrapped = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd] if GNU_TIME else cmd
    start = time.perf_counter()
    proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rss = usage.ru_maxrss * 1024  # Linux reports KiB
    try:
        text = Path(rss_file.name).read_text().strip().splitlines()
        if GNU_TIME and text and text[-1].isdigit():
            rss = int(text[-1]) * 1024
    finally:
        os.unlink(rss_file.name)
    return wall, usage.ru_utime + usage.ru_stime, rss, os.waitstatus_to_exitcode(status)


def run_timed(cmd: list[str], repeat: int) -> tuple[float, int, int]:
    """Best wall time over `repeat` runs, peak RSS (bytes) of the best run's process, exit code."""
    best, best_rss, rc = float("inf"), 0, 0
    for _ in range(repeat):
        wall, _, rss, rc = _run_once(cmd)
        if wall < best:
            best, best_rss = wall, rss
    return best, best_rss, rc


def median_timed(commands: dict[str, list[list[str]]], repeat: int) -> dict[str, tuple[float, float, int]]:
    """Median wall time, median CPU time and the largest peak RSS per named job (a job = commands
    run one after another), interleaved round by round so a change in machine load hits all alike."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, int] = {name: 0 for name in commands}
    for _ in range(repeat):
        for name, cmds in commands.items():
            total, cpu = 0.0, 0.0
            for cmd in cmds:
                wall, used, peak, _ = _run_once(cmd)
                total += wall
                cpu += used
                rss[name] = max(rss[name], peak)
            walls[name].append(total)
            cpus[name].append(cpu)
    return {name: (float(np.median(walls[name])), float(np.median(cpus[name])), rss[name]) for name in commands}


def defaults_cmd(folder: Path, out: Path, html: bool) -> list[str]:
    return [sys.executable, "-m", "codecdoctor", "audit-data", str(folder), "--no-progress", "--fail-on", "critical",
            "--json", str(out / "r.json"), "--html", str(out / "r.html") if html else "none"]


def goals(tmp: Path, three: list[Path], repeat: int) -> None:
    print(f"\n== end to end, defaults (HTML + JSON, all {os.cpu_count()} cores) vs sox stats; "
          f"medians of {repeat} interleaved runs ==")
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    for label, files, goal in (("3 files 1.6-1.8 h", three, 0.8), ("1 file 1.8 h", three[-1:], 1.0)):
        folder = files[0].parent if len(files) > 1 else tmp / "one"
        if len(files) == 1:
            folder.mkdir(exist_ok=True)
            if not (folder / files[0].name).exists():
                os.link(files[0], folder / files[0].name)
        jobs = {"sox FILE -n stats, one after another": [["sox", str(f), "-n", "stats"] for f in files],
                "codecdoctor audit-data (HTML + JSON)": [defaults_cmd(folder, out, True)],
                "codecdoctor audit-data --html none": [defaults_cmd(folder, out, False)]}
        result = median_timed(jobs, repeat)
        sox_t, sox_cpu, _ = result["sox FILE -n stats, one after another"]
        print(f"{label} (load average {os.getloadavg()[0]:.1f}):")
        for name, (wall, cpu, rss) in result.items():
            ratio = wall / sox_t
            mark = f"  (goal <= {goal:.1f}x: {'met' if ratio <= goal else 'NOT met'})" if "HTML +" in name else ""
            print(f"  {name:40} wall {wall:6.2f} s {ratio:5.2f}x sox | CPU {cpu:6.2f} s {cpu / sox_cpu:5.2f}x sox | "
                  f"peak RSS {rss / 1e6:6.1f} MB{mark}")


def audit_cmd(folder: Path, jobs: int, json_path: Path) -> list[str]:
    return [sys.executable, "-m", "codecdoctor", "audit-data", str(folder), "--jobs", str(jobs), "--html", "none",
            "--json", str(json_path), "--no-progress", "--fail-on", "critical"]


def audit_seconds(json_path: Path) -> float:
    return float(json.loads(json_path.read_text())["measurements"]["timing"]["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours-long", type=float, default=1.8)
    parser.add_argument("--corpus-files", type=int, default=40)
    parser.add_argument("--corpus-file-s", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--only-goals", action="store_true", help="only the end-to-end goals table")
    opts = parser.parse_args()

    have_sox, have_ffmpeg = shutil.which("sox") is not None, shutil.which("ffmpeg") is not None
    tmp = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    print(f"bench_audit: temp folder {tmp}; cores {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    try:
        t0 = time.perf_counter()
        base = speech_like(60.0, SR, seed=1, peak=0.9)
        long_s = opts.hours_long * 3600
        files = {
            "f32": (tmp / "long_f32" / "long.wav", long_s, "FLOAT"),
            "pcm16": (tmp / "long_pcm16" / "long.wav", long_s, "PCM_16"),
            "rss_0.5h": (tmp / "rss_05" / "a.wav", 0.5 * 3600, "FLOAT"),
            "rss_2h": (tmp / "rss_2" / "a.wav", 2.0 * 3600, "FLOAT"),
        }
        three = [tmp / "three" / f"{name}.wav" for name in ("a", "b", "c")]
        for path, hours in zip(three, (1.6, 1.7, 1.8)):
            write_long(path, hours * 3600, "FLOAT", base)
        if opts.only_goals:
            files = {}
        samples = {key: write_long(path, secs, sub, base) for key, (path, secs, sub) in files.items()}
        corpus = tmp / "corpus"
        corpus_samples = 0
        for i in range(0 if opts.only_goals else opts.corpus_files):
            corpus_samples += write_long(corpus / f"spk{i % 8:02d}" / f"utt_{i:03d}.wav", opts.corpus_file_s, "FLOAT",
                                         base[i * 100:])
        print(f"generated {sum(p.stat().st_size for p, _, _ in files.values()) / 1e9:.2f} GB of long files and "
              f"{0 if opts.only_goals else opts.corpus_files} corpus files in {time.perf_counter() - t0:.1f} s")
        for path in [p for p, _, _ in files.values()] + sorted(corpus.rglob("*.wav")) + three:
            with open(path, "rb") as handle:  # warm the page cache so every tool reads from memory
                while handle.read(1 << 24):
                    pass
        if have_sox:
            goals(tmp, three, max(opts.repeat, 3))
        if opts.only_goals:
            return 0

        print(f"\n== {opts.hours_long} h, 16 kHz mono: wall time (best of {opts.repeat}) and throughput "
              "(float32-equivalent GB/s) ==")
        print(f"{'file':8} {'tool':32} {'wall s':>8} {'GB/s':>7} {'vs sox':>8} {'vs ffmpeg':>10}")
        for key in ("f32", "pcm16"):
            path = files[key][0]
            gb = samples[key] * 4 / 1e9
            json_path = tmp / f"{key}.json"
            rows = [("codecdoctor audit-data --jobs 1", run_timed(audit_cmd(path.parent, 1, json_path), opts.repeat))]
            inner = audit_seconds(json_path)
            if have_sox:
                rows.append(("sox FILE -n stats", run_timed(["sox", str(path), "-n", "stats"], opts.repeat)))
            if have_ffmpeg:
                rows.append(("ffmpeg -af astats -f null -", run_timed(
                    ["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "astats", "-f", "null", "-"],
                    opts.repeat)))
            walls = {name: r[0] for name, r in rows}
            sox_t = walls.get("sox FILE -n stats")
            ff_t = walls.get("ffmpeg -af astats -f null -")
            for name, (wall, _, rc) in rows:
                vs_sox = f"{sox_t / wall:.2f}x" if sox_t else "n/a"
                vs_ff = f"{ff_t / wall:.2f}x" if ff_t else "n/a"
                flag = "" if rc in (0, 1) else f"  (exit {rc})"
                print(f"{key:8} {name:32} {wall:8.2f} {gb / wall:7.2f} {vs_sox:>8} {vs_ff:>10}{flag}")
            print(f"{key:8} {'  (audit loop only, no startup)':32} {inner:8.2f} {gb / inner:7.2f}"
                  + (f" {sox_t / inner:7.2f}x" if sox_t else ""))
        if not have_sox or not have_ffmpeg:
            print("(sox or ffmpeg not installed: their rows are missing)")

        print("\n== peak RSS of codecdoctor audit-data --jobs 1 (must be flat in file length, < 200 MB) ==")
        for key, label in (("rss_0.5h", "0.5 h"), ("rss_2h", "2 h")):
            _, rss, _ = run_timed(audit_cmd(files[key][0].parent, 1, tmp / "rss.json"), 1)
            print(f"{label:6} file ({samples[key] * 4 / 1e6:6.0f} MB as float32): peak RSS {rss / 1e6:6.1f} MB")

        print(f"\n== {opts.corpus_files}-file corpus ({corpus_samples / SR / 3600:.2f} h): --jobs 2 vs --jobs 1 ==")
        results = {}
        for jobs in (1, 2):
            json_path = tmp / f"corpus_j{jobs}.json"
            wall, rss, _ = run_timed(audit_cmd(corpus, jobs, json_path), opts.repeat)
            results[jobs] = (wall, audit_seconds(json_path))
            print(f"--jobs {jobs}: wall {wall:6.2f} s, audit loop {results[jobs][1]:6.2f} s, "
                  f"{corpus_samples * 4 / 1e9 / wall:5.2f} GB/s")
        print(f"speed-up --jobs 2 over --jobs 1: {results[1][0] / results[2][0]:.2f}x wall, "
              f"{results[1][1] / results[2][1]:.2f}x audit loop (goal >= 1.7x; {os.cpu_count()} cores, "
              f"load average now {os.getloadavg()[0]:.2f})")
    finally:
        if opts.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
