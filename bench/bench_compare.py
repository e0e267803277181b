"""Throughput of `codecdoctor.compare` on one hour of paired audio (folders of 10 s files).

Prints seconds of audio compared per second of wall time, for the diagnosis alone (quality=False)
and with the quality metrics (STOI, ESTOI, PESQ, multi-scale mel), and the same for a simple peer over the
same files: read both with soundfile and compute torchmetrics' SNR (falls back to a numpy SNR when
torchmetrics is absent). The ratio says what the full differential diagnosis (SNR family, lag search,
mel spectrograms, band transfer, per-segment levels, 17 checks) costs relative to the one number.

    .venv/bin/python bench/bench_compare.py [--minutes 60] [--file-seconds 10] [--repeats 1] [--no-quality]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from codecdoctor.measure.stimuli import speech_like  # noqa: E402

SR = 16000


def make_corpus(root: Path, minutes: float, file_seconds: float) -> float:
    """REF/EST folders of paired files; EST = REF + noise at 20-30 dB, every 7th delayed by 40 samples."""
    rng = np.random.default_rng(0)
    base = speech_like(60.0, SR, seed=1).astype(np.float64)  # one minute, reused with varied gains
    per_file = int(file_seconds * SR)
    n_files = int(round(minutes * 60 / file_seconds))
    for i in range(n_files):
        start = (i * per_file) % (base.size - per_file)
        ref = base[start:start + per_file] * rng.uniform(0.3, 1.0)
        noise = rng.standard_normal(per_file) * np.sqrt(np.mean(ref ** 2)) * 10 ** (-rng.uniform(20, 30) / 20)
        est = ref + noise
        if i % 7 == 3:
            est = np.concatenate([np.zeros(40), est[:-40]])
        sf.write(str(root / "ref" / f"{i:04d}.wav"), ref, SR, subtype="PCM_16")
        sf.write(str(root / "est" / f"{i:04d}.wav"), est, SR, subtype="PCM_16")
    return n_files * file_seconds


def peer(root: Path) -> float:
    """Read every pair and compute one SNR per file (torchmetrics when available; imported before
    the clock starts, see main)."""
    try:
        import torch
        from torchmetrics.functional.audio import signal_noise_ratio

        torch.set_num_threads(1)

        def snr(r, e):
            return float(signal_noise_ratio(torch.from_numpy(e), torch.from_numpy(r)))
        name = "torchmetrics SNR"
    except ImportError:
        def snr(r, e):
            return float(10 * np.log10(np.sum(r ** 2) / np.sum((r - e) ** 2)))
        name = "numpy SNR"
    total = 0.0
    for path in sorted((root / "ref").iterdir()):
        r, _ = sf.read(str(path), dtype="float64")
        e, _ = sf.read(str(root / "est" / path.name), dtype="float64")
        total += snr(r, e)
    peer.name = name
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--file-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians are printed")
    parser.add_argument("--no-quality", action="store_true",
                        help="time the diagnosis and the peer only (the quality metrics take ~20x the diagnosis)")
    args = parser.parse_args()
    from codecdoctor.compare import compare

    with tempfile.TemporaryDirectory(prefix="bench_compare_") as tmp:
        root = Path(tmp)
        (root / "ref").mkdir()
        (root / "est").mkdir()
        t0 = time.perf_counter()
        audio_s = make_corpus(root, args.minutes, args.file_seconds)
        print(f"corpus: {audio_s / 3600:.2f} h of paired audio in {args.file_seconds:g} s files "
              f"(generated in {time.perf_counter() - t0:.1f} s)")

        # Warm-up (imports of torch/torchmetrics/scipy/pystoi/pesq, filterbank caches) outside the timings.
        with tempfile.TemporaryDirectory() as warm:
            (Path(warm) / "ref").mkdir()
            (Path(warm) / "est").mkdir()
            make_corpus(Path(warm), 10 / 60, 10.0)
            peer(Path(warm))
            compare(Path(warm) / "ref", Path(warm) / "est", quality=not args.no_quality)
        times: dict[str, list[float]] = {"peer": [], "diagnosis": [], "quality": []}
        reports = {}
        for _ in range(max(1, args.repeats)):   # interleaved: machine load hits all three alike
            t0 = time.perf_counter()
            peer(root)
            times["peer"].append(time.perf_counter() - t0)
            for name, quality in (("diagnosis", False),) + ((("quality", True),) if not args.no_quality else ()):
                t0 = time.perf_counter()
                reports[name] = compare(root / "ref", root / "est", quality=quality)
                times[name].append(time.perf_counter() - t0)
        peer_s, plain_s = (float(np.median(times[k])) for k in ("peer", "diagnosis"))
        agg = reports["diagnosis"].measurements["aggregate"]
        print(f"compare, diagnosis only (quality=False): {plain_s:7.2f} s -> {audio_s / plain_s:8.1f} s of audio per second "
              f"({agg['pairs']} pairs, total SNR {agg['total_snr_db']:.2f} dB, top findings {agg['top_findings']}; "
              f"rounds {', '.join(f'{t:.2f}' for t in times['diagnosis'])} s)")
        if times["quality"]:
            quality_s = float(np.median(times["quality"]))
            agg = reports["quality"].measurements["aggregate"]
            print(f"compare with quality metrics (STOI, ESTOI, PESQ WB+NB, multi-scale mel): {quality_s:7.2f} s -> "
                  f"{audio_s / quality_s:8.1f} s of audio per second (mean STOI {agg.get('mean_stoi')}, "
                  f"mean PESQ WB {agg.get('mean_pesq_wb')})")
        print(f"peer ({peer.name}): {peer_s:7.2f} s  -> {audio_s / peer_s:8.1f} s of audio per second")
        ratios = f"ratios: diagnosis {plain_s / peer_s:.1f}x the peer's time"
        if times["quality"]:
            ratios += (f", with quality {quality_s / peer_s:.1f}x; the quality metrics cost {quality_s / plain_s:.2f}x "
                       "the diagnosis alone")
        print(f"{ratios} (medians of {len(times['peer'])} interleaved round(s))")


if __name__ == "__main__":
    main()
