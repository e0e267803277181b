"""Benchmark of the built-in codec: the training recipe before issue 17 against the current
default, on the same Telugu speech, plus speed against EnCodec's architecture at the same bitrate.

    ./run bench bench_codec                 # 10 minutes per recipe, then speed
    ./run bench bench_codec --minutes 2     # shorter curves
    ./run bench bench_codec --recipes new   # one recipe only
    ./run bench bench_codec --recipes new --variant fixed_lr:lr_decay_on_budget=False --levels --skip-speed
                                            # an ablation beside it; SNR by RVQ levels and unquantized
    ./run bench bench_codec --source synthetic   # the synthetic speech-like signal instead of espeak-ng
    ./run bench bench_codec --source telugu,synthetic   # both sources, one after the other
    ./run bench bench_codec --minutes 0.2 --recipes new --skip-speed   # a quick smoke run

1. Data: espeak-ng Telugu (`espeak-ng -v te`, six voices as variant / rate / pitch, 16 kHz),
   training = 12 sentences spoken by 4 voices (about 5 minutes); held out = 8 OTHER sentences
   (never trained on) by the same 4 voices (about 90 s). Without espeak-ng both parts are the
   synthetic speech-like signal (different seeds), and the output says so.
2. Curves: each recipe trains for `--minutes` of wall clock through the real Trainer (its own
   validation and checkpoints included in the budget). After every epoch the weights it
   validates (the weight average when the recipe uses one) are copied aside; after the run, the
   copies at the first epoch, then about every `--curve-every-s` seconds, and at the end are scored
   on the held-out files, whole, energy-weighted over the set: 10 log10(sum ref^2 / sum err^2)
   (not a mean of per-crop dB). Beside it, the same weights are scored on in-domain audio: the
   audio the trainer trained on (the first seconds of each of its training files, as many seconds
   in all as the held-out set), and the trainer's own `val_snr_db` (same definition, on the
   validation it held out itself) is printed too. In-domain far above held-out is memorisation
   (C219 reads the same gap from a checkpoint). Scoring is not part of the budget.
3. Speed (one CPU thread, interleaved medians): encode+decode real-time factor of our codec (6 kbps
   by default) against EnCodec's SEANet architecture built at 16 kHz with as many codebooks, the
   same bitrate (`encodec` package, random weights), and training steps/s for each recipe's batch shape against
   an EnCodec step on the new recipe's batch (L1 loss, no discriminator).
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

# encodec builds its layers with the deprecated torch.nn.utils.weight_norm; the warning is noise here
warnings.filterwarnings("ignore", category=FutureWarning, module="torch.nn.utils.weight_norm")
warnings.filterwarnings("ignore", category=UserWarning, module="torch.nn.utils.weight_norm")

# The defaults before issue 17 (commit 4047af8), spelled out so the comparison survives later
# changes of the defaults. The mel filterbank is today's (HTK scale) in both: that change is the
# shared mel definition, not part of the recipe.
OLD_RECIPE = {
    "options": {"batch_size": 16, "segment_seconds": 1.0, "learning_rate": 1e-3, "warmup_steps": None,
                "min_lr_ratio": 0.1, "weight_ema_decay": None, "quantizer_warmup_steps": 0},
    "config": {"base_channels": 16, "linear_path": False, "mel_weight": 0.25, "l1_weight": 1.0, "snr_weight": 1.0,
               "snr_loss": "linear", "quantizer_dropout": 0.25, "ema_decay": 0.9, "n_codebooks": 8},
    # the old default warm-up: 5% of the planned steps, at most 500
    "warmup_rule": (0.05, 500),
}
# the current defaults of TrainOptions / CodecConfig with the user's flags (batch 16, 100 epochs, lr 1e-3)
NEW_RECIPE: dict = {"options": {}, "config": {}}
RECIPES = {"old": OLD_RECIPE, "new": NEW_RECIPE}
SAMPLE_RATE = 16000


# -- data ------------------------------------------------------------------------------------------
def make_corpus(root: Path, source: str = "telugu") -> tuple[Path, Path, str]:
    """(train folder, held-out folder, description); `source` "synthetic" skips espeak-ng (a second
    speech source, so a recipe is not judged on one synthesizer's voices only)."""
    from codecdoctor.demo.corpus import TELUGU_HELD_OUT, TELUGU_SENTENCES, TELUGU_VOICES, write_telugu_corpus
    from codecdoctor.measure.stimuli import speech_like

    if root.exists():
        shutil.rmtree(root)
    train, held = root / "train", root / "heldout"
    voices = TELUGU_VOICES[:4]
    written = write_telugu_corpus(train, TELUGU_SENTENCES[:12], voices, seed=0) if source == "telugu" else []
    if written:
        held.mkdir(parents=True)
        for i, voice in enumerate(voices):
            # each voice speaks 4 of the 8 held-out sentences (every sentence twice over the set)
            sentences = [TELUGU_HELD_OUT[(2 * i + k) % len(TELUGU_HELD_OUT)] for k in range(4)]
            level = (0.3 + 0.4 * i / (len(voices) - 1),) * 2
            for path in write_telugu_corpus(root / f"held_{i}", sentences, (voice,), seed=50 + i, peaks=level):
                path.rename(held / f"{i:02d}_{path.name}")
            shutil.rmtree(root / f"held_{i}")
        what = (f"espeak-ng Telugu: training {len(written)} voices x 12 sentences; held out {len(voices)} voices x 4 of "
                f"{len(TELUGU_HELD_OUT)} other sentences (never trained on)")
    else:
        for folder, seeds, seconds in ((train, range(100, 104), 75.0), (held, range(900, 904), 22.0)):
            folder.mkdir(parents=True, exist_ok=True)
            for i, seed in enumerate(seeds):
                audio = speech_like(seconds, SAMPLE_RATE, seed=seed, peak=0.3 + 0.13 * i)
                sf.write(str(folder / f"synthetic_{i:02d}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
        what = ("espeak-ng NOT installed: " if source == "telugu" else "") + (
            "synthetic speech-like signal (training and held-out from different seeds)")
    seconds = lambda folder: sum(sf.info(str(p)).duration for p in folder.glob("*.wav"))  # noqa: E731
    return train, held, f"{what}; {seconds(train):.0f} s training, {seconds(held):.0f} s held out"


def load_held_out(folder: Path) -> list[torch.Tensor]:
    return [torch.from_numpy(sf.read(str(p), dtype="float32")[0]).view(1, 1, -1) for p in sorted(folder.glob("*.wav"))]


@torch.no_grad()
def held_out_snr_db(model: torch.nn.Module, files: list[torch.Tensor]) -> float:
    """Energy-weighted over the whole set: total reference energy / total error energy."""
    model.eval()
    signal = error = 0.0
    for x in files:
        y = model(x).audio
        signal += float(x.double().pow(2).sum())
        error += float((x.double() - y.double()).pow(2).sum())
    return 10 * math.log10(signal / error) if error > 0 else math.inf


def load_in_domain(source, seconds: float) -> list[torch.Tensor]:
    """The audio the trainer trained on, `seconds` in all: an equal share from the start of each
    training file's training region (never its validation tail), at the codec's rate."""
    files = source.train_files
    share = seconds / max(1, len(files))
    out = []
    for f in files:
        n = min(int(f.train_stop * source.sample_rate / f.sample_rate), int(share * source.sample_rate))
        if n >= source.segment_samples:
            out.append(source.read(f, 0, n)[None])
    return out


@torch.no_grad()
def held_out_by_levels(model, files: list[torch.Tensor]) -> dict[str, float]:
    """Held-out SNR decoding with the first n levels (n = 1..all), and with the quantizer bypassed
    (the encoder's latent straight into the decoder: what the autoencoder reaches without the bit
    budget), each energy-weighted over the set."""
    model.eval()
    out = {}
    for n in range(1, model.config.n_codebooks + 1):
        signal = error = 0.0
        for x in files:
            y = model(x, n_quantizers=n).audio
            signal += float(x.double().pow(2).sum())
            error += float((x.double() - y.double()).pow(2).sum())
        out[str(n)] = 10 * math.log10(signal / error)
    signal = error = 0.0
    for x in files:
        padded, length = model._pad(x)
        y = model.decoder(model.encoder(padded))[..., :length]
        signal += float(x.double().pow(2).sum())
        error += float((x.double() - y.double()).pow(2).sum())
    out["unquantized"] = 10 * math.log10(signal / error)
    return out


# -- training curves -------------------------------------------------------------------------------
class Snapshots:
    """Keeps the validated weights after every epoch (in memory, a few MB each)."""

    def __init__(self):
        self.trainer = None
        self.entries: list[dict] = []
        self.weights: list[dict] = []

    def on_epoch(self, entry):
        model = self.trainer.eval_model() if hasattr(self.trainer, "eval_model") else self.trainer.model
        self.entries.append(dict(entry))
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        print(f"  epoch {entry['epoch']:3d}  step {entry['step']:5d}  {entry['seconds'] / 60:5.2f} min  "
              f"trainer val SNR {entry['val_snr_db']:6.2f} dB" + ("  (partial epoch)" if entry.get("partial") else ""),
              flush=True)


def recipe_objects(name: str, train_dir: Path, ckpt: Path, minutes: float):
    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.options import TrainOptions

    recipe = RECIPES[name]
    options = TrainOptions(data_dir=str(train_dir), checkpoint_dir=str(ckpt), experiment_name=name,
                           batch_size=16, num_epochs=100, learning_rate=1e-3, max_minutes=minutes, seed=0)
    for key, value in recipe["options"].items():
        setattr(options, key, value)
    return CodecConfig(**recipe["config"]), options


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string such as db


def add_variant(spec: str) -> str:
    """`name:key=value,key=value` -> a recipe `name` = the new recipe with those CodecConfig /
    TrainOptions fields changed (an ablation); returns the name."""
    import dataclasses

    from codecdoctor_model.config import CodecConfig
    from codecdoctor_model.options import TrainOptions

    name, _, changes = spec.partition(":")
    config_fields = {f.name for f in dataclasses.fields(CodecConfig)}
    option_fields = {f.name for f in dataclasses.fields(TrainOptions)}
    recipe: dict = {"options": dict(NEW_RECIPE["options"]), "config": dict(NEW_RECIPE["config"])}
    for change in filter(None, changes.split(",")):
        key, _, value = change.partition("=")
        if key in config_fields:
            recipe["config"][key] = _literal(value)
        elif key in option_fields:
            recipe["options"][key] = _literal(value)
        else:
            raise SystemExit(f"--variant {spec!r}: {key!r} is neither a CodecConfig nor a TrainOptions field")
    RECIPES[name] = recipe
    return name


def train_curve(name: str, train_dir: Path, held: list[torch.Tensor], out: Path, minutes: float,
                every_s: float, levels: bool = False) -> list[dict]:
    from codecdoctor_model.codec import Codec
    from codecdoctor_model.trainer import Trainer

    ckpt = out / "checkpoints"
    shutil.rmtree(ckpt / name, ignore_errors=True)
    config, options = recipe_objects(name, train_dir, ckpt, minutes)
    snaps = Snapshots()
    trainer = Trainer(config, options, callbacks=[snaps])
    if "warmup_rule" in RECIPES[name] and options.warmup_steps is None:
        fraction, cap = RECIPES[name]["warmup_rule"]
        trainer.warmup_steps = min(cap, max(1, int(trainer.total_steps * fraction)))
    snaps.trainer = trainer
    shape = f"batch {options.batch_size} x {options.segment_seconds} s"
    print(f"== recipe {name!r}: {shape}, peak lr {options.learning_rate:g}, warm-up {trainer.warmup_steps} steps, "
          f"{trainer.steps_per_epoch} steps/epoch, {minutes:g} min, {torch.get_num_threads()} thread(s), "
          f"{trainer.config.bitrate_bps / 1000:.1f} kbps ==", flush=True)
    result = trainer.fit()
    rate = result.steps / result.seconds
    print(f"  trained {result.steps} steps in {result.seconds / 60:.2f} min = {rate:.3f} steps/s", flush=True)
    # score the first epoch, then one snapshot per `every_s` seconds, and the last
    chosen, next_mark = [], 0.0
    for i, entry in enumerate(snaps.entries):
        if i == 0 or i == len(snaps.entries) - 1 or entry["seconds"] >= next_mark:
            chosen.append(i)
            next_mark = entry["seconds"] + every_s
    held_seconds = sum(x.shape[-1] for x in held) / trainer.config.sample_rate
    in_domain = load_in_domain(trainer.source, held_seconds)
    print(f"  trainer's validation: {trainer.source.split.get('description')}", flush=True)
    codec = Codec(trainer.config)
    curve = []
    for i in chosen:
        codec.load_state_dict(snaps.weights[i])
        entry = snaps.entries[i]
        curve.append({"recipe": name, "epoch": entry["epoch"], "step": entry["step"], "minutes": entry["seconds"] / 60,
                      "held_out_snr_db": held_out_snr_db(codec, held),
                      "in_domain_snr_db": held_out_snr_db(codec, in_domain), "trainer_val_snr_db": entry["val_snr_db"],
                      "partial": bool(entry.get("partial")), "steps_per_s": rate})
    if levels:
        by_levels = held_out_by_levels(codec, held)  # the last snapshot is loaded
        print(f"  {name} at the end, held-out SNR dB by levels decoded: "
              + "  ".join(f"{k}: {v:.2f}" for k, v in by_levels.items()), flush=True)
    return curve


def print_curves(curves: dict[str, list[dict]], source: str) -> None:
    print(f"== {source}: SNR vs training time, energy-weighted over each set: held out (never trained on), "
          "in-domain (trained on), the trainer's own validation ==")
    print(f"  {'recipe':8s} {'epoch':>5s} {'step':>6s} {'minutes':>7s} {'held-out dB':>12s} {'in-domain dB':>13s} "
          f"{'trainer val dB':>15s}")
    for name, curve in curves.items():
        for point in curve:
            print(f"  {name:8s} {point['epoch']:5d} {point['step']:6d} {point['minutes']:7.2f} "
                  f"{point['held_out_snr_db']:12.2f} {point['in_domain_snr_db']:13.2f} {point['trainer_val_snr_db']:15.2f}"
                  + ("  (partial epoch)" if point["partial"] else ""))
    for name, curve in curves.items():
        if not curve:
            continue
        first, last = curve[0], curve[-1]
        print(f"  {name}: after epoch 1 (step {first['step']}) {first['held_out_snr_db']:.2f} dB "
              f"({'positive' if first['held_out_snr_db'] > 0 else 'NOT positive'}); after {last['minutes']:.1f} min "
              f"(step {last['step']}) {last['held_out_snr_db']:.2f} dB held out; {last['steps_per_s']:.3f} steps/s")


def print_summary(results: dict[str, dict[str, list[dict]]]) -> None:
    """One row per source and recipe, at the end of training: held out and in-domain side by side."""
    print("== held out vs in-domain at the end of training (dB, energy-weighted) ==")
    print(f"  {'source':10s} {'recipe':8s} {'held-out':>9s} {'in-domain':>10s} {'gap':>6s} {'trainer val':>12s} "
          f"{'val - held-out':>15s}")
    for source, curves in results.items():
        for name, curve in curves.items():
            if curve:
                last = curve[-1]
                held, inside, val = last["held_out_snr_db"], last["in_domain_snr_db"], last["trainer_val_snr_db"]
                print(f"  {source:10s} {name:8s} {held:9.2f} {inside:10.2f} {inside - held:6.2f} {val:12.2f} "
                      f"{val - held:15.2f}")
    if any(source.endswith("*") for source in results):
        print("  * espeak-ng is not installed: the synthetic speech-like signal stood in for Telugu")


# -- speed -----------------------------------------------------------------------------------------
def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up, not timed
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _encodec_16k(kbps: float):
    """EnCodec's architecture at 16 kHz and `kbps`: its SEANet (ratios 8,5,4,2: hop 320) has 50
    frames/s, so each codebook of 1024 is 0.5 kbps (ours at 6 kbps: 12 codebooks, like it)."""
    try:
        from encodec import EncodecModel
    except ImportError:
        return None
    torch.manual_seed(0)
    model = EncodecModel._get_model([kbps], sample_rate=SAMPLE_RATE, channels=1, causal=False,
                                    model_norm="weight_norm", audio_normalize=False, name=f"encodec_16k_{kbps:g}kbps")
    model.set_target_bandwidth(kbps)
    return model


def speed(seconds: float, repeats: int) -> None:
    from codecdoctor_model import Codec, CodecConfig
    from codecdoctor_model.losses import ReconstructionLoss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ours = Codec(CodecConfig())
    ours(0.3 * torch.randn(1, 1, SAMPLE_RATE))  # k-means init of the codebooks (training forward), not timed
    ours.eval()
    peer = _encodec_16k(ours.config.bitrate_bps / 1000.0)
    x = 0.3 * torch.randn(1, 1, int(seconds * SAMPLE_RATE))
    fns = {"ours": lambda: ours.decode(ours.encode(x), length=x.shape[-1])}
    if peer is not None:
        peer.eval()

        def run_peer():
            with torch.no_grad():
                peer.decode(peer.encode(x))

        fns["encodec"] = run_peer
    with torch.inference_mode():
        med = _interleaved_medians(fns, repeats)
    print(f"== encode + decode of {seconds:g} s, one CPU thread, median of {repeats} interleaved ==")
    print(f"  codecdoctor codec ({ours.config.bitrate_bps / 1000:.1f} kbps, 16 kHz): RTF {med['ours'] / seconds:.4f}")
    if peer is None:
        print("  encodec not installed (pip install encodec): no peer ratio")
    else:
        print(f"  EnCodec architecture (16 kHz, {peer.quantizer.n_q} x 1024 codebooks, {peer.bandwidth:g} kbps, random weights): "
              f"RTF {med['encodec'] / seconds:.4f}")
        print(f"  ratio ours / EnCodec RTF: {med['ours'] / med['encodec']:.3f} (below 1 = ours faster)")

    def our_step(batch: int, segment_s: float, config: CodecConfig):
        torch.manual_seed(0)
        codec, loss_fn = Codec(config), ReconstructionLoss(config)
        opt = torch.optim.AdamW(codec.parameters(), lr=1e-3)
        xb = 0.3 * torch.randn(batch, 1, int(segment_s * SAMPLE_RATE))

        def step():
            out = codec(xb)
            loss = loss_fn(out.audio, xb, out.commit_loss)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    steps = {}
    shapes = {}
    for name in RECIPES:
        config, options = recipe_objects(name, Path("."), Path("."), 1.0)
        shapes[name] = (options.batch_size, options.segment_seconds)
        steps[name] = our_step(options.batch_size, options.segment_seconds, config)
    if peer is not None:
        batch, segment_s = shapes["new"]
        peer.train()
        opt = torch.optim.AdamW(peer.parameters(), lr=1e-3)
        xb = 0.3 * torch.randn(batch, 1, int(segment_s * SAMPLE_RATE))

        def peer_step():
            y = peer(xb)
            loss = (y[..., : xb.shape[-1]] - xb).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps["encodec"] = peer_step  # its warm-up call runs EnCodec's k-means init, not timed
    med = _interleaved_medians(steps, max(3, repeats // 2))
    print(f"== training step, one CPU thread, median of {max(3, repeats // 2)} interleaved ==")
    for name in RECIPES:
        b, s = shapes[name]
        print(f"  recipe {name!r} (batch {b} x {s} s = {b * s:g} s of audio): {1 / med[name]:.3f} steps/s")
    if "encodec" in med:
        b, s = shapes["new"]
        print(f"  EnCodec architecture, batch {b} x {s} s: {1 / med['encodec']:.3f} steps/s; "
              f"ratio ours (new) / EnCodec steps/s: {med['encodec'] / med['new']:.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per recipe (wall clock)")
    parser.add_argument("--recipes", default="old,new", help="comma-separated: old, new")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also train the new recipe with these CodecConfig / TrainOptions fields changed "
                             "(an ablation), e.g. lat16:latent_dim=16; repeatable")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the training runs")
    parser.add_argument("--curve-every-s", type=float, default=60.0, help="held-out scoring interval")
    parser.add_argument("--rtf-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--source", default="telugu",
                        help="training / held-out speech, comma-separated: telugu (espeak-ng), synthetic "
                             "(the speech-like signal)")
    parser.add_argument("--levels", action="store_true",
                        help="also score the final weights decoding 1..all levels and unquantized")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "bench_codec",
                        help="working folder (corpus, checkpoints); give each concurrent run its own")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    names += [add_variant(spec) for spec in args.variant]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)} (choose from {', '.join(RECIPES)})")

    sources = [s.strip() for s in args.source.split(",") if s.strip()]
    if not sources or any(s not in ("telugu", "synthetic") for s in sources):
        parser.error(f"--source {args.source!r}: choose from telugu, synthetic (comma-separated)")

    if not args.skip_training:
        torch.set_num_threads(args.threads)
        results = {}
        for source in sources:
            train_dir, held_dir, what = make_corpus(out / f"corpus_{source}", source)
            print(f"data: {what}", flush=True)
            held = load_held_out(held_dir)
            if what.startswith("espeak-ng NOT installed"):
                source = f"{source}*"  # the summary's footnote says what it stands for
            results[source] = {name: train_curve(name, train_dir, held, out / source, args.minutes,
                                                 args.curve_every_s, args.levels) for name in names}
            print_curves(results[source], source)
        print_summary(results)
    if not args.skip_speed:
        speed(args.rtf_seconds, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
