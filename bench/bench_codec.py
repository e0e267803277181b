"""Benchmark of the built-in codec (run: ./run bench bench_codec [--minutes 10]).

1. Speed of inference: encode + decode real-time factor (RTF = compute seconds / audio seconds) on
   one CPU thread, and the ratio against the `encodec` package's 24 kHz architecture (random
   weights, 6 kbps) run the same way in this script. EnCodec's k-means codebook init runs only in
   its training forward, not in encode(); a warm-up call is excluded from timing for both models.
2. Training speed: steps/s of our trainer step vs an EnCodec-24 kHz forward+backward step on the
   same batch (reconstruction L1, no discriminator for either).
3. Quality in a wall-clock budget: a generated speech-like corpus (harmonic source with varying
   pitch, formant filtering, pauses; deterministic seeds), the default 4 kbps codec trained for
   `--minutes`, validation SNR (total power over the held-out crops) printed per epoch.
   Targets from the issue: positive SNR after the first epoch; >= 5 dB after 10 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

import torch  # noqa: E402

# encodec builds its layers with the deprecated torch.nn.utils.weight_norm; the warning is noise here
warnings.filterwarnings("ignore", category=FutureWarning, module="torch.nn.utils.weight_norm")


def make_corpus(folder: Path, seconds: float, files: int) -> Path:
    from codecdoctor.measure.stimuli import speech_like, write_audio

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(files):
        write_audio(folder / f"speaker{i}.wav", speech_like(seconds / files, 16000, seed=100 + i), subtype="PCM_16")
    return folder


def _best_of(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rtf_ours(seconds: float, repeats: int) -> tuple[float, float]:
    from codecdoctor_model import Codec, CodecConfig

    torch.manual_seed(0)
    codec = Codec(CodecConfig())
    x = 0.3 * torch.randn(1, 1, int(seconds * 16000))
    codec(x[..., :16000])  # k-means init of the codebooks (training-mode forward), not timed
    codec.eval()

    def run():
        with torch.inference_mode():
            codec.decode(codec.encode(x), length=x.shape[-1])

    run()
    return _best_of(run, repeats) / seconds, codec.config.bitrate_bps


def rtf_encodec(seconds: float, repeats: int) -> float | None:
    try:
        from encodec import EncodecModel
    except ImportError:
        return None
    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    model.eval()
    x = 0.3 * torch.randn(1, 1, int(seconds * 24000))

    def run():
        with torch.inference_mode():
            model.decode(model.encode(x))

    run()
    return _best_of(run, repeats) / seconds


def train_step_rate_ours(batch: int, segment_s: float, steps: int) -> float:
    from codecdoctor_model import Codec, CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    torch.manual_seed(0)
    cfg = CodecConfig()
    codec, loss_fn = Codec(cfg), ReconstructionLoss(cfg)
    opt = torch.optim.AdamW(codec.parameters(), lr=1e-3)
    x = 0.3 * torch.randn(batch, 1, int(segment_s * 16000))

    def step():
        out = codec(x)
        loss = loss_fn(out.audio, x, out.commit_loss)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def train_step_rate_encodec(batch: int, segment_s: float, steps: int) -> float | None:
    try:
        from encodec import EncodecModel
    except ImportError:
        return None
    torch.manual_seed(0)
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = 0.3 * torch.randn(batch, 1, int(segment_s * 24000))

    def step():
        y = model(x)
        loss = (y[..., : x.shape[-1]] - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # includes EnCodec's k-means init; not timed
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


class EpochPrinter:
    def __init__(self):
        self.entries = []

    def on_epoch(self, entry):
        self.entries.append(entry)
        print(f"  epoch {entry['epoch']:3d}  step {entry['step']:5d}  {entry['seconds'] / 60:5.1f} min  "
              f"val SNR {entry['val_snr_db']:6.2f} dB  SI-SNR {entry['val_si_snr_db']:6.2f} dB  "
              f"mel {entry['val_mel_distance']:.3f}  train loss {entry['train_loss']:.3f}"
              + ("  (partial epoch)" if entry.get("partial") else ""), flush=True)


def train_budget(args, out_dir: Path) -> list[dict]:
    from codecdoctor_model import CodecConfig
    from codecdoctor_model.trainer import Trainer, TrainOptions

    data = make_corpus(out_dir / "corpus", args.corpus_seconds, args.corpus_files)
    ckpt = out_dir / "checkpoints"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    options = TrainOptions(data_dir=str(data), checkpoint_dir=str(ckpt), experiment_name="bench",
                           batch_size=args.batch_size, num_epochs=1000, learning_rate=args.learning_rate,
                           segment_seconds=args.segment_seconds, max_minutes=args.minutes,
                           warmup_steps=args.warmup_steps, max_val_crops=32, seed=0)
    printer = EpochPrinter()
    trainer = Trainer(CodecConfig(**json.loads(args.config_json)), options, callbacks=[printer])
    print(f"corpus: {args.corpus_seconds:.0f} s in {args.corpus_files} files; {trainer.steps_per_epoch} steps per "
          f"epoch (batch {args.batch_size} x {args.segment_seconds} s); {args.minutes} min budget; "
          f"{torch.get_num_threads()} thread(s); codec at {trainer.config.bitrate_bps / 1000:.1f} kbps")
    result = trainer.fit()
    print(f"  trained {result.steps} steps in {result.seconds / 60:.1f} min = {result.steps / result.seconds:.2f} steps/s")
    return printer.entries


def speed(args) -> None:
    torch.set_num_threads(1)
    print("== encode + decode, one CPU thread ==")
    ours, bitrate = rtf_ours(args.rtf_seconds, repeats=3)
    print(f"  codecdoctor codec ({bitrate / 1000:.1f} kbps, 16 kHz): RTF {ours:.4f} ({1 / ours:.0f}x real time)")
    peer = rtf_encodec(args.rtf_seconds, repeats=3)
    if peer is None:
        print("  encodec not installed: no peer ratio")
    else:
        print(f"  encodec 24 kHz (6 kbps, random weights):   RTF {peer:.4f} ({1 / peer:.0f}x real time)")
        print(f"  ratio ours / encodec RTF: {ours / peer:.3f} (below 1 = ours faster)")

    print(f"== training step, one CPU thread, batch {args.batch_size} x {args.segment_seconds} s ==")
    ours_rate = train_step_rate_ours(args.batch_size, args.segment_seconds, steps=5)
    print(f"  codecdoctor codec: {ours_rate:.2f} steps/s")
    peer_rate = train_step_rate_encodec(args.batch_size, args.segment_seconds, steps=3)
    if peer_rate is not None:
        print(f"  encodec 24 kHz:    {peer_rate:.2f} steps/s   ratio ours / encodec: {ours_rate / peer_rate:.2f}")



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget (wall clock)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the training run")
    parser.add_argument("--corpus-seconds", type=float, default=360.0)
    parser.add_argument("--corpus-files", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-seconds", type=float, default=0.5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--rtf-seconds", type=float, default=10.0)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-speed", action="store_true", help="only the training run")
    parser.add_argument("--config-json", default="{}", help='CodecConfig overrides, e.g. \'{"base_channels": 32}\'')
    args = parser.parse_args(argv)
    out_dir = ROOT / "bench" / "out" / "bench_codec"
    out_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_speed:
        speed(args)
    if args.skip_training:
        return 0
    torch.set_num_threads(args.threads)
    print(f"== {args.minutes} min training run (validation SNR per epoch) ==")
    entries = train_budget(args, out_dir)
    if entries:
        first, last = entries[0], entries[-1]
        best = max(e["val_snr_db"] for e in entries)
        print(f"  first epoch val SNR {first['val_snr_db']:.2f} dB ({'positive' if first['val_snr_db'] > 0 else 'NOT positive'}); "
              f"final {last['val_snr_db']:.2f} dB; best {best:.2f} dB "
              f"({'meets' if best >= 5 else 'below'} the 5 dB target for a 10-minute run)")
        if torch.cuda.is_available():
            print("  (a CUDA device is present; this run used the CPU as configured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
