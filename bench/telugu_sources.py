"""Telugu speech corpora for judging whether the codec generalises: each source is a training folder
of about 5 minutes of word salad (random words of the training sentences) spoken at 4 rates x 4
pitches, one file per rate/pitch at several levels, and a held-out folder of natural sentences the
training audio never contains, one file each, spoken by the same voice at its middle rate and pitch.
Held out by utterance: no held-out sentence and few of its words occur in training.

Two kinds of source, kept apart on purpose:
- TUNING sources: the recipe's levers were chosen on these (and on bench_codec's own espeak-ng set).
- CHECK sources: never used to choose anything; they only report what the chosen recipe reaches.

- salad-m7 (tuning): espeak-ng `te+m7`, formant synthesis, a male variant.
- klatt (check): espeak-ng `te+klatt4`, the Klatt cascade/parallel synthesizer, not espeak's own
  formant model.
- room (check): espeak-ng `te+Andrea` (a female variant) through a recording chain: a small room's
  reverberation (RT60 0.35 s), a microphone's 80 Hz high-pass, background noise 50 dB below the
  speech.

    .venv/bin/python bench/telugu_sources.py OUT_DIR klatt   # writes OUT_DIR/klatt/{train,heldout}
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
RATES_WPM = (120, 145, 170, 195)
PITCHES = (30, 45, 60, 75)


@dataclass(frozen=True)
class Source:
    voice: str
    room: bool = False
    tuning: bool = False


SOURCES = {
    "salad-m7": Source("te+m7", tuning=True),
    "klatt": Source("te+klatt4"),
    "room": Source("te+Andrea", room=True),
}


def word_salad(sentences: tuple[str, ...], count: int, rng: np.random.Generator) -> list[str]:
    """`count` pseudo-sentences of 5-9 words drawn from the words of `sentences`."""
    words = [w.strip(",.?!") for s in sentences for w in s.split()]
    words = [w for w in words if w]
    return [" ".join(rng.choice(words, size=int(rng.integers(5, 10)))) + "." for _ in range(count)]


def room_chain(audio: np.ndarray, seed: int) -> np.ndarray:
    """A small room (exponentially decaying noise tail, RT60 0.35 s, after a direct path), an 80 Hz
    high-pass and background noise 50 dB below the speech's RMS."""
    from scipy.signal import butter, fftconvolve, sosfilt

    rng = np.random.default_rng(seed)
    n = int(0.4 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.91 * t / 0.35)  # -60 dB at 0.35 s
    rir = 0.35 * tail / np.sqrt(np.sum(tail ** 2))
    rir[0] = 1.0  # the direct path dominates: a speaker close to the microphone
    wet = fftconvolve(audio, rir)[: audio.size]
    wet = sosfilt(butter(2, 80, "highpass", fs=SAMPLE_RATE, output="sos"), wet)
    rms = np.sqrt(np.mean(wet ** 2))
    return wet + rms * 10 ** (-50 / 20) * rng.standard_normal(wet.size)


def _spoken(sentences: list[str], voice: tuple[str, int, int], workdir: Path, seed: int, peak: float,
            room: bool) -> np.ndarray:
    from codecdoctor.demo.corpus import spoken_sentences

    audio = spoken_sentences(sentences, voice, workdir, seed=seed, peak=peak)
    if audio is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng): these sources need it")
    if room:
        audio = room_chain(audio.astype(np.float64), seed)
        audio = peak * audio / np.max(np.abs(audio))
    return audio.astype(np.float32)


def write_source(root: Path, name: str, train_seconds: float = 300.0) -> tuple[Path, Path]:
    """Write ROOT/NAME/train and ROOT/NAME/heldout (replacing them); returns both folders."""
    from codecdoctor.demo.corpus import TELUGU_HELD_OUT, TELUGU_SENTENCES

    source = SOURCES[name]
    train, held = root / name / "train", root / name / "heldout"
    for folder in (train, held):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.wav"):
            old.unlink()
    rng = np.random.default_rng(7)
    combos = [(r, p) for r in RATES_WPM for p in PITCHES]
    peaks = np.linspace(0.2, 0.8, len(combos))
    per_file = train_seconds / len(combos)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (rate, pitch) in enumerate(combos):
            # about 2.4 s per pseudo-sentence at the middle rate; a few spare, then cut to length
            salad = word_salad(TELUGU_SENTENCES, int(per_file / 2.0) + 2, rng)
            audio = _spoken(salad, (source.voice, rate, pitch), Path(tmp), seed=i, peak=float(peaks[i]),
                            room=source.room)
            sf.write(str(train / f"salad_{rate}wpm_p{pitch}.wav"), audio[: int(per_file * SAMPLE_RATE)],
                     SAMPLE_RATE, subtype="PCM_16")
        held_peaks = np.linspace(0.3, 0.7, len(TELUGU_HELD_OUT))
        for i, sentence in enumerate(TELUGU_HELD_OUT):
            audio = _spoken([sentence], (source.voice, 157, 52), Path(tmp), seed=100 + i, peak=float(held_peaks[i]),
                            room=source.room)
            sf.write(str(held / f"sentence_{i:02d}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
    return train, held


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    out = Path(sys.argv[1])
    for source_name in sys.argv[2:] or list(SOURCES):
        t, h = write_source(out, source_name)
        seconds = sum(sf.info(str(p)).duration for p in t.glob("*.wav"))
        held_s = sum(sf.info(str(p)).duration for p in h.glob("*.wav"))
        print(f"{source_name}: {len(list(t.glob('*.wav')))} training files, {seconds:.0f} s; "
              f"{len(list(h.glob('*.wav')))} held-out sentences, {held_s:.0f} s")
