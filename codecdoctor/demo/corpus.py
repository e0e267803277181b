"""The demo's corpus: clean speech plus one file for each data problem of the negative-SNR story.

All speech is Telugu from `espeak-ng -v te` when it is installed (resampled to 16 kHz): the clean
training files are the 24 sentences of TELUGU_SENTENCES spoken by six voices (variant, rate, pitch)
at six levels; the flawed files use the same sentences. Without espeak-ng every file falls back to
the deterministic speech-like synthesizer, and the corpus says so (`source`). The flawed files
reproduce what real corpora contain, each with the problem the audit should name:

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

# Sentences for espeak-ng's Telugu voice (everyday phrases; any Telugu text works). The first six
# are the demo's; TELUGU_HELD_OUT is never trained on by the demo or by bench_codec's recipes, so the
# validation SNR measured on it is the codec's SNR on speech it never heard.
TELUGU_SENTENCES = (
    "నమస్కారం, మీరు ఎలా ఉన్నారు? ఈ రోజు వాతావరణం చాలా బాగుంది.",
    "తెలుగు భాష చాలా అందమైనది. మన ఊరిలో పెద్ద పండుగ జరుగుతోంది.",
    "రైలు సమయానికి వచ్చింది. మేము హైదరాబాదు నుండి విజయవాడకు ప్రయాణం చేశాము.",
    "పిల్లలు బడికి వెళ్ళారు. అమ్మ వంట చేస్తోంది, నాన్న పత్రిక చదువుతున్నారు.",
    "ఈ సంవత్సరం వర్షాలు బాగా పడ్డాయి. రైతులు సంతోషంగా ఉన్నారు.",
    "కొత్త పుస్తకం కొన్నాను. అందులో చాలా మంచి కథలు ఉన్నాయి.",
    "మా అన్నయ్య బెంగళూరులో ఉద్యోగం చేస్తున్నాడు. అతను ప్రతి నెల ఇంటికి వస్తాడు.",
    "సాయంత్రం మేమంతా కలిసి పార్కుకు వెళ్దాం. అక్కడ పిల్లలు ఆడుకుంటారు.",
    "ఆసుపత్రి ఇక్కడి నుండి రెండు కిలోమీటర్ల దూరంలో ఉంది.",
    "నా స్నేహితుడు రేపు ఉదయం పది గంటలకు వస్తాడు, మేము కలిసి భోజనం చేస్తాము.",
    "మార్కెట్లో కూరగాయల ధరలు బాగా పెరిగాయి. టమాటాలు చాలా ఖరీదుగా ఉన్నాయి.",
    "గోదావరి నది ఒడ్డున ఒక చిన్న గ్రామం ఉంది. అక్కడి ప్రజలు చాలా మంచివారు.",
    "ఈ కంప్యూటర్ చాలా వేగంగా పని చేస్తుంది. నేను దీనితో రోజంతా పని చేస్తాను.",
    "మీ పేరు ఏమిటి? మీరు ఎక్కడి నుండి వచ్చారు? మీకు తెలుగు వచ్చా?",
    "దయచేసి తలుపు మూసివేయండి, బయట చాలా చల్లగా ఉంది.",
    "ఆమె ఒక అందమైన పాట పాడింది, అందరూ చప్పట్లు కొట్టారు.",
    "బస్సు ఆలస్యంగా వచ్చింది, అందుకే నేను కార్యాలయానికి ఆలస్యంగా చేరుకున్నాను.",
    "మా తాతయ్య ప్రతి రోజు ఉదయం నడకకు వెళ్తారు. ఆయనకు ఎనభై ఏళ్ళు.",
    "వేసవి కాలంలో మామిడి పండ్లు ఎక్కువగా దొరుకుతాయి. నాకు మామిడి అంటే చాలా ఇష్టం.",
    "విద్యార్థులు పరీక్షల కోసం శ్రద్ధగా చదువుతున్నారు. ఫలితాలు వచ్చే నెల వస్తాయి.",
    "ఈ ఊరిలో ఒక పురాతన దేవాలయం ఉంది. ప్రతి సంవత్సరం అక్కడ జాతర జరుగుతుంది.",
    "నేను ప్రతి ఆదివారం మా అమ్మమ్మ ఇంటికి వెళ్తాను. ఆమె రుచికరమైన వంటలు చేస్తుంది.",
    "వంటగదిలో పాలు పొంగిపోతున్నాయి, త్వరగా రా! స్టవ్ ఆపేయి.",
    "క్రికెట్ మ్యాచ్ చూడటానికి చాలా మంది స్టేడియంకు వచ్చారు. మన జట్టు గెలిచింది.",
)
TELUGU_HELD_OUT = (
    "చెరువులో చేపలు ఈదుతున్నాయి, పక్షులు చెట్ల మీద కూర్చున్నాయి.",
    "రేపు సెలవు దినం కాబట్టి మేము సినిమాకు వెళ్తున్నాము.",
    "డాక్టర్ గారు మందులు రోజుకు మూడు సార్లు వేసుకోమని చెప్పారు.",
    "ఆ పెద్ద భవనం పైన జాతీయ జెండా ఎగురుతోంది. ఈ రోజు స్వాతంత్ర్య దినోత్సవం.",
    "మా చెల్లెలు సంగీతం నేర్చుకుంటోంది, ఆమె వీణ బాగా వాయిస్తుంది.",
    "వర్షం పడుతుండగా పిల్లలు కాగితపు పడవలు చేసి నీటిలో వదిలారు.",
    "గ్రంథాలయంలో నిశ్శబ్దంగా ఉండాలి. పుస్తకాలను జాగ్రత్తగా తిరిగి ఇవ్వాలి.",
    "ఉదయాన్నే లేచి వ్యాయామం చేయడం ఆరోగ్యానికి మంచిది.",
)
# (espeak-ng voice, words per minute, pitch 0-99): male and female variants at several speeds,
# so a codec cannot learn one pitch track
TELUGU_VOICES = (("te", 150, 50), ("te+f2", 165, 65), ("te+m3", 135, 40), ("te+f4", 180, 72),
                 ("te+m7", 160, 35), ("te+f1", 145, 58))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@dataclass
class DemoCorpus:
    root: Path
    source: str  # of the clean files: "espeak-ng Telugu", or the synthetic fallback with the reason
    flawed_source: str = ""  # of the flawed files: "espeak-ng Telugu" when installed
    clean_files: list[Path] = field(default_factory=list)
    flawed: dict[str, Path] = field(default_factory=dict)  # problem -> file
    peaks_file: Path | None = None
    fallback_reason: str = ""  # why the speech is synthetic ("" for Telugu): the demo prints it

    @property
    def clean_seconds(self) -> float:
        return sum(sf.info(str(p)).duration for p in self.clean_files)


def _espeak_telugu(text: str, workdir: Path, voice: tuple[str, int, int] = TELUGU_VOICES[0]
                   ) -> tuple[np.ndarray, int] | None:
    """Speak `text` with espeak-ng's Telugu voice; None when espeak-ng is missing or fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    out = workdir / "tts.wav"
    name, words_per_minute, pitch = voice
    try:
        subprocess.run([exe, "-v", name, "-s", str(words_per_minute), "-p", str(pitch), "-w", str(out), text],
                       check=True, capture_output=True, timeout=60)
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


def spoken_sentences(sentences: tuple[str, ...] | list[str], voice: tuple[str, int, int], workdir: Path, *,
                     seed: int = 0, rate: int = SAMPLE_RATE, peak: float = 0.5) -> np.ndarray | None:
    """Every sentence once, in a seeded order, spoken by one espeak-ng voice at `rate`, with
    0.2-0.6 s pauses and room noise 70 dB below full scale; scaled to `peak`. None when espeak-ng
    is missing or fails."""
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    for index in rng.permutation(len(sentences)):
        spoken = _espeak_telugu(sentences[int(index)], workdir, voice)
        if spoken is None:
            return None
        audio, native_rate = spoken
        audio = resample(audio, native_rate, rate).astype(np.float32) if native_rate != rate else audio
        pieces += [audio, np.zeros(int(rng.uniform(0.2, 0.6) * rate), np.float32)]
    if not pieces:
        return None
    speech = np.concatenate(pieces)
    # real recordings are never digitally silent
    speech = speech + 3e-4 * float(np.max(np.abs(speech))) * rng.standard_normal(speech.size).astype(np.float32)
    return (peak * speech / np.max(np.abs(speech))).astype(np.float32)


def write_telugu_corpus(folder: Path, sentences: tuple[str, ...] | list[str] = TELUGU_SENTENCES,
                        voices: tuple[tuple[str, int, int], ...] = TELUGU_VOICES, *, seed: int = 0,
                        peaks: tuple[float, float] = (0.3, 0.7)) -> list[Path]:
    """One 16 kHz PCM16 file per voice under `folder` (created), each speaking every sentence once;
    file peaks spread over `peaks` so the corpus has several levels. Returns [] without espeak-ng."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    levels = np.linspace(peaks[0], peaks[1], len(voices)) if len(voices) > 1 else np.array([peaks[1]])
    with tempfile.TemporaryDirectory() as tmp:
        for i, (voice, level) in enumerate(zip(voices, levels)):
            audio = spoken_sentences(sentences, voice, Path(tmp), seed=seed + i, peak=float(level))
            if audio is None:
                return []
            path = folder / f"{voice[0].replace('+', '_')}_{i:02d}.wav"
            sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
            written.append(path)
    return written


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
        # The clean training files: Telugu speech, several voices and levels (the codec's recipe
        # reaches a positive SNR on it within the demo's first training minute)
        corpus.clean_files = write_telugu_corpus(root / "clean", TELUGU_SENTENCES, TELUGU_VOICES, seed=seed)
        corpus.source = "espeak-ng Telugu"
        if not corpus.clean_files:
            corpus.fallback_reason = ("espeak-ng is not installed (apt install espeak-ng)"
                                      if not espeak_available() else "espeak-ng failed to speak Telugu (voice 'te')")
            for i in range(clean_files):
                audio, _ = _speech(seconds_per_file, seed + i, work, telugu=False)
                path = root / "clean" / f"speaker_{i:02d}.wav"
                sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
                corpus.clean_files.append(path)
            corpus.source = "synthetic speech-like (espeak-ng is not installed, so no Telugu speech)"

        base, corpus.flawed_source = _speech(20.0, seed + 100, work)
        # the user's 1.01 file is the demo's fixed reference for the tanh rounds (R307 / R306): kept
        # as it was, from the deterministic synthesizer, so those rounds do not change with the voice
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
