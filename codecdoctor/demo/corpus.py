"""The demo's corpus: clean speech plus one file for each data problem of the negative-SNR story.

The clean training files come from the deterministic speech-like synthesizer (a codec learns them in
the demo's few CPU minutes); the flawed files are Telugu speech from `espeak-ng -v te` when it is
installed (resampled to 16 kHz), else synthetic too. They reproduce what real corpora contain, each
with the problem the audit should name:

| file                         | problem                                   | expected check |
|------------------------------|-------------------------------------------|----------------|
| flawed/peaks_above_1.wav     | float samples reaching -1.0129 / +1.0108  | D103           |
| flawed/dc_offset.wav         | +0.05 DC offset                            | D105           |
| flawed/clipped_pcm16.wav     | driven into the PCM16 rails                | D104           |
| flawed/mostly_silence.wav    | 70% of the time below -60 dBFS             | D107           |
| flawed/rate_22050.wav        | 22.05 kHz in a 16 kHz corpus               | D108           |
| flawed/corrupt.wav           | header promising data that is not there    | D100           |
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from codecdoctor.measure.audio.reader import resample
from codecdoctor.measure.stimuli import speech_like

SAMPLE_RATE = 16000

# Sentences for espeak-ng's Telugu voice (everyday phrases; any Telugu text works).
TELUGU_SENTENCES = (
    "నమస్కారం, మీరు ఎలా ఉన్నారు? ఈ రోజు వాతావరణం చాలా బాగుంది.",
    "తెలుగు భాష చాలా అందమైనది. మన ఊరిలో పెద్ద పండుగ జరుగుతోంది.",
    "రైలు సమయానికి వచ్చింది. మేము హైదరాబాదు నుండి విజయవాడకు ప్రయాణం చేశాము.",
    "పిల్లలు బడికి వెళ్ళారు. అమ్మ వంట చేస్తోంది, నాన్న పత్రిక చదువుతున్నారు.",
    "ఈ సంవత్సరం వర్షాలు బాగా పడ్డాయి. రైతులు సంతోషంగా ఉన్నారు.",
    "కొత్త పుస్తకం కొన్నాను. అందులో చాలా మంచి కథలు ఉన్నాయి.",
)


@dataclass
class DemoCorpus:
    root: Path
    source: str  # of the clean files: "synthetic speech-like"
    flawed_source: str = ""  # of the flawed files: "espeak-ng Telugu" when installed
    clean_files: list[Path] = field(default_factory=list)
    flawed: dict[str, Path] = field(default_factory=dict)  # problem -> file
    peaks_file: Path | None = None

    @property
    def clean_seconds(self) -> float:
        return sum(sf.info(str(p)).duration for p in self.clean_files)


def _espeak_telugu(text: str, workdir: Path) -> tuple[np.ndarray, int] | None:
    """Speak `text` with espeak-ng's Telugu voice; None when espeak-ng is missing or fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    out = workdir / "tts.wav"
    try:
        subprocess.run([exe, "-v", "te", "-s", "150", "-w", str(out), text], check=True,
                       capture_output=True, timeout=60)
        audio, rate = sf.read(str(out), dtype="float32", always_2d=False)
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return None
    return (audio, rate) if audio.size else None


def _speech(seconds: float, seed: int, workdir: Path, rate: int = SAMPLE_RATE, *,
            telugu: bool = True) -> tuple[np.ndarray, str]:
    """About `seconds` of speech at `rate`: espeak-ng Telugu sentences back to back with short
    pauses (when `telugu` and espeak-ng is installed), else the synthesizer. Peak 0.5 (-6 dBFS)."""
    if not telugu:
        return speech_like(seconds, rate, seed=seed, peak=0.5), "synthetic speech-like"
    pieces: list[np.ndarray] = []
    total = 0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(TELUGU_SENTENCES))
    i = 0
    while total < seconds * rate:
        spoken = _espeak_telugu(TELUGU_SENTENCES[order[i % len(order)]], workdir)
        if spoken is None:
            break
        audio, native_rate = spoken
        audio = resample(audio, native_rate, rate).astype(np.float32) if native_rate != rate else audio
        pause = np.zeros(int(rng.uniform(0.2, 0.6) * rate), np.float32)
        pieces += [audio, pause]
        total += audio.size + pause.size
        i += 1
    if not pieces:
        return speech_like(seconds, rate, seed=seed, peak=0.5), "synthetic speech-like"
    speech = np.concatenate(pieces)[: int(seconds * rate)]
    # Room noise far below the speech (-70 dBFS): real recordings are never digitally silent.
    speech = speech + 3e-4 * rng.standard_normal(speech.size).astype(np.float32)
    return (0.5 * speech / np.max(np.abs(speech))).astype(np.float32), "espeak-ng Telugu"


def _write_corrupt_wav(path: Path) -> None:
    """A RIFF/WAVE header that promises 10 s of PCM16 followed by 100 bytes of data."""
    promised = 10 * SAMPLE_RATE * 2
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    data_header = struct.pack("<4sI", b"data", promised)
    body = fmt + data_header + bytes(100)
    path.write_bytes(struct.pack("<4sI4s", b"RIFF", 4 + len(fmt) + 8 + promised, b"WAVE") + body)


def build_corpus(root: Path, *, clean_files: int = 6, seconds_per_file: float = 30.0, seed: int = 0) -> DemoCorpus:
    """Write the demo corpus under `root` (replacing what is there) and describe it."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    (root / "clean").mkdir(parents=True)
    (root / "flawed").mkdir()
    corpus = DemoCorpus(root=root, source="")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The clean training files are synthetic speech-like: a codec learns them within the demo's
        # two CPU minutes (about +9 dB validation SNR after 160 steps), while espeak-ng's Telugu,
        # with its energy spread over 0.3-4 kHz like real speech, stays near 0 dB for the first
        # few hundred steps, and the saga steps need a codec whose output follows its input.
        for i in range(clean_files):
            audio, corpus.source = _speech(seconds_per_file, seed + i, work, telugu=False)
            path = root / "clean" / f"speaker_{i:02d}.wav"
            sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
            corpus.clean_files.append(path)

        base, corpus.flawed_source = _speech(20.0, seed + 100, work)
        # the user's 1.01 file is replayed through the trained codec: same kind of speech as training
        synthetic_base, _ = _speech(20.0, seed + 100, work, telugu=False)

        corpus.peaks_file = _write(root / "flawed" / "peaks_above_1.wav", _peaks_like_the_users(synthetic_base), "FLOAT")
        corpus.flawed["samples beyond [-1, 1]"] = corpus.peaks_file

        corpus.flawed["DC offset"] = _write(root / "flawed" / "dc_offset.wav", base + 0.05, "PCM_16")
        clipped = np.clip(base * 4.0, -1.0, 32767 / 32768)
        corpus.flawed["clipping"] = _write(root / "flawed" / "clipped_pcm16.wav", clipped, "PCM_16")
        quiet = np.zeros(int(20.0 * SAMPLE_RATE), np.float32)
        quiet[: base.size * 3 // 10] = base[: base.size * 3 // 10]
        corpus.flawed["long silence"] = _write(root / "flawed" / "mostly_silence.wav", quiet, "PCM_16")

        other_rate, _ = _speech(10.0, seed + 200, work, rate=22050)
        path = root / "flawed" / "rate_22050.wav"
        sf.write(str(path), other_rate, 22050, subtype="PCM_16")
        corpus.flawed["wrong sample rate"] = path

        path = root / "flawed" / "corrupt.wav"
        _write_corrupt_wav(path)
        corpus.flawed["corrupt file"] = path
    return corpus


def _peaks_like_the_users(audio: np.ndarray, overs_fraction: float = 0.001) -> np.ndarray:
    """Float audio whose loudest 0.1% of samples go beyond +-1 with extremes -1.0129 and +1.0108,
    like a mix normalised to 0 dBFS before a final gain stage added ~0.1 dB: level each half-wave so
    its 99.9th percentile sits at 1.0, then squeeze everything above 1.0 so the extremes land on the
    user's measured values."""
    out = np.asarray(audio, np.float64).copy()
    for sign, extreme in ((1.0, 1.0108), (-1.0, 1.0129)):
        side = sign * out > 0
        level = np.quantile(sign * out[side], 1.0 - overs_fraction)
        out[side] /= level  # each half-wave levelled on its own: speech is often asymmetric
        over = side & (sign * out > 1.0)
        excess = sign * out[over] - 1.0
        out[over] = sign * (1.0 + excess * (extreme - 1.0) / excess.max())
    return out.astype(np.float32)


def _write(path: Path, audio: np.ndarray, subtype: str) -> Path:
    sf.write(str(path), np.asarray(audio, np.float32), SAMPLE_RATE, subtype=subtype)
    return path
