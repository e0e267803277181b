"""What each setting of codecdoctor/core/tuning.py buys, as a share of a bench_speed row.

Each row's command runs with every setting on (as the `codecdoctor` executable runs it) and with
one setting off, interleaved, in fresh processes; medians of wall and CPU time are printed with
the share of the row's time the setting saves. Settings:

- `mallopt`: core.tuning.keep_freed_memory (glibc keeps freed blocks for the next streamed block);
- `fast exit`: core.tuning.exit_now (no interpreter teardown at the end);
- `one BLAS thread`: OPENBLAS_NUM_THREADS=1 set before numpy loads (core.tuning.before_command),
  against one BLAS thread per core.

    .venv/bin/python bench/bench_tuning.py [--runs 3] [--quick] [--rows TEXT] [--settings TEXT]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import Inputs, compile_sources, run_once  # noqa: E402

# The console script with one setting replaced: the command line after `--` is codecdoctor's own.
_CLI = ("import sys\n"
        "import codecdoctor.core.tuning as t\n"
        "{patch}\n"
        "sys.argv = ['codecdoctor', *sys.argv[1:]]\n"
        "from codecdoctor.cli import console\n"
        "console()\n")
PATCHES = {
    "mallopt": "t.keep_freed_memory = lambda: False",
    "fast exit": "t.exit_now = lambda code: sys.exit(code)",
    "one BLAS thread": "import os; os.environ['OPENBLAS_NUM_THREADS'] = str(os.cpu_count())",
}


def variants(inputs: Inputs, quick: bool, wanted: str) -> dict[str, tuple[tuple[str, ...], list[str]]]:
    """row name -> (setting, command line) for the rows whose name contains `wanted`."""
    short_min = 0.5 if quick else 10.0
    rows = {
        "compare, one 1.8 h pair (full diagnosis)": (("mallopt", "fast exit", "one BLAS thread"), _CLI,
                                                     lambda: ["compare", *map(str, inputs["pair"]),
                                                              "--html", "r.html", "--json", "r.json"]),
        "audit-data, one 1.8 h file": (("fast exit",), _CLI,
                                       lambda: ["audit-data", str(Path(inputs["one"]).parent),
                                                "--html", "a.html", "--json", "a.json"]),
        f"compare, {short_min:g} min of 10 s pairs, no quality metrics": (
            ("mallopt", "fast exit", "one BLAS thread"), _CLI,
            lambda: ["compare", *map(str, inputs["short"]), "--no-quality", "--html", "s.html", "--json", "s.json"]),
    }
    return {name: row for name, row in rows.items() if wanted in name}


def share(on: list[float], off: list[float]) -> str:
    base, without = statistics.median(on), statistics.median(off)
    return f"{base:6.2f} s with, {without:6.2f} s without: saves {100 * (without - base) / without:+5.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", default="")
    parser.add_argument("--settings", default="", help="only the settings whose name contains this text")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench_tuning_"))
    try:
        inputs = Inputs(root, args.quick)
        rows = variants(inputs, args.quick, args.rows)
        compile_sources()
        for name, (settings, template, make_args) in rows.items():
            settings = tuple(s for s in settings if args.settings in s)
            if not settings:
                continue
            tail = make_args()
            commands = {"all on": [sys.executable, "-c", template.format(patch=""), *tail]}
            for setting in settings:
                commands[f"no {setting}"] = [sys.executable, "-c", template.format(patch=PATCHES[setting]), *tail]
            run_once(commands["all on"], root)   # page cache warm for every variant alike
            times: dict[str, dict[str, list[float]]] = {k: {"wall_s": [], "cpu_s": []} for k in commands}
            for _ in range(max(1, args.runs)):
                for label, command in commands.items():
                    result = run_once(command, root)
                    for key in times[label]:
                        times[label][key].append(result[key])
            print(f"{name} ({args.runs} interleaved runs, {os.cpu_count()} CPUs, "
                  f"load {os.getloadavg()[0]:.1f})", flush=True)
            for setting in settings:
                for key in ("wall_s", "cpu_s"):
                    print(f"  {setting:16s} {key[:-2]:4s}: {share(times['all on'][key], times[f'no {setting}'][key])}",
                          flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
