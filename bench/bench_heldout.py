"""Does the default codec generalise? The commands a user types, on Telugu sources held out from the
recipe's tuning (bench/telugu_sources.py says which sources are which):

    codecdoctor train --data_dir SRC/train --checkpoint_dir OUT --max-minutes 10
    codecdoctor check-ckpt OUT/codec/last.pt --data SRC/heldout --json REPORT.json

and one table: the trainer's validation SNR after epoch 1 and at the end, the held-out SNR that
check-ckpt measured (energy-weighted over the held-out sentences), the gap between the two, and the
findings C219 raised.

    ./run bench bench_heldout                         # the check sources, 10 minutes each
    ./run bench bench_heldout --sources salad-m7 --minutes 4 --train-args="--codebook_size 256"
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from telugu_sources import SOURCES, write_source  # noqa: E402

EXE = [sys.executable, "-m", "codecdoctor"]


def run_source(name: str, out: Path, minutes: float, train_args: list[str]) -> dict:
    train, held = write_source(out / "corpora", name)
    ckpt = out / "checkpoints" / name
    started = time.monotonic()
    subprocess.run([*EXE, "train", "--data_dir", str(train), "--checkpoint_dir", str(ckpt), "--max-minutes",
                    str(minutes), *train_args], stdout=subprocess.DEVNULL)  # exit 1 = findings, still a run
    trained_s = time.monotonic() - started
    report = out / f"{name}.json"
    last = ckpt / "codec" / "last.pt"
    subprocess.run([*EXE, "check-ckpt", str(last), "--data", str(held), "--json", str(report)],
                   stdout=subprocess.DEVNULL)
    doc = json.loads(report.read_text())
    measurements = doc["measurements"]
    gap = measurements.get("validation_gap", {})
    history = _history(last)
    by_level = held_out_by_level(last, held)
    return {"source": name, "minutes": trained_s / 60, "steps": history[-1]["step"] if history else None,
            "epoch1_val_db": history[0]["val_snr_db"] if history else None,
            "final_val_db": history[-1]["val_snr_db"] if history else None,
            "held_out_db": gap.get("measured_snr_db"), "stderr_db": gap.get("measured_stderr_db"),
            "split": (gap.get("validation_split") or {}).get("description"), "by_level": by_level,
            "findings": sorted({f["id"] for f in doc["findings"] if f["severity"] in ("warning", "error")})}


PEAKS_DBFS = (-26.0, -20.0, -10.0, -6.0, -3.0, -0.5)


def held_out_by_level(checkpoint: Path, held: Path) -> dict[float, float]:
    """Held-out SNR (energy-weighted, bench_codec.held_out_snr_db) with every sentence scaled to the
    same peak, for each peak in PEAKS_DBFS: a codec that learnt its training levels only loses SNR
    on quieter or louder speech."""
    from bench_codec import held_out_snr_db, load_held_out

    from codecdoctor_model.checkpoint import build_codec, load_checkpoint

    model = build_codec(load_checkpoint(str(checkpoint)))
    files = load_held_out(held)
    return {peak_db: held_out_snr_db(model, [x * (10 ** (peak_db / 20) / x.abs().max()) for x in files])
            for peak_db in PEAKS_DBFS}


def _history(path: Path) -> list[dict]:
    import torch

    saved = torch.load(str(path), map_location="cpu", weights_only=True)
    return [h for h in saved.get("history", []) if isinstance(h.get("val_snr_db"), (int, float))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default=",".join(n for n, s in SOURCES.items() if not s.tuning))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--train-args", default="", help="extra `codecdoctor train` flags (one string)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "bench_heldout")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores; torch threads: the default; train flags: {args.train_args or '(defaults)'}")
    rows = [run_source(name, args.out, args.minutes, shlex.split(args.train_args))
            for name in args.sources.split(",")]
    print("| source | trained | steps | trainer val, epoch 1 | trainer val, end | held out (check-ckpt --data) "
          "| end val - held out | warnings |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        held = r["held_out_db"]
        gap = r["final_val_db"] - held if held is not None and r["final_val_db"] is not None else None
        print(f"| {r['source']} | {r['minutes']:.1f} min | {r['steps']} | {r['epoch1_val_db']:+.2f} dB | "
              f"{r['final_val_db']:.2f} dB | **{held:.2f} dB** (+-{r['stderr_db'] or 0:.2f}) | {gap:+.2f} dB | "
              f"{', '.join(r['findings']) or 'none'} |")
    print("\nheld out with every sentence at one peak level (dB SNR by peak dBFS):")
    print("| source | " + " | ".join(f"{p:g} dBFS" for p in PEAKS_DBFS) + " |")
    print("|---|" + "---|" * len(PEAKS_DBFS))
    for r in rows:
        print(f"| {r['source']} | " + " | ".join(f"{r['by_level'][p]:.2f}" for p in PEAKS_DBFS) + " |")
    for r in rows:
        print(f"  {r['source']}: validation {r['split']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
