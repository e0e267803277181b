"""Speech sources for the diagnosis tests: espeak-ng Telugu at several rates and pitches, the
package's synthetic speech, and sox-made voiced signals. All generated on the machine, nothing
downloaded; each source is made once per test session (cached in a temp folder).

`speech(name)` returns float64 mono at 16 kHz, peak 0.5. `SOURCES` lists every name; the espeak
ones are skipped (pytest.skip with the reason) when espeak-ng is not installed, the sox one when sox
is not.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from codecdoctor.measure.stimuli import speech_like

SR = 16000

# Two Telugu sentences (different words, so a mixed-up pair is truly another utterance).
TELUGU_TEXTS = (
    "నమస్కారం, మీరు ఎలా ఉన్నారు? ఈ రోజు వాతావరణం చాలా బాగుంది.",
    "మా ఊరిలో ఒక పెద్ద చెరువు ఉంది, అక్కడ పిల్లలు సాయంత్రం ఆడుకుంటారు.",
)
# (words per minute, pitch 0-99): slow and low, default, fast and high.
ESPEAK_VOICES = {"te-slow-low": (110, 30), "te-default": (160, 50), "te-fast-high": (220, 80)}

SOURCES = (*ESPEAK_VOICES, "synthetic", "sox-vowels")

_TMP = Path(tempfile.mkdtemp(prefix="codecdoctor_speech_"))


def _normalise(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return x * (peak / np.max(np.abs(x)))


def _read_at_16k(path: Path) -> np.ndarray:
    import soundfile as sf

    from codecdoctor.measure.audio.reader import resample

    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return resample(data.mean(axis=1), int(rate), SR)


def _trim_silence(x: np.ndarray) -> np.ndarray:
    """espeak pads with ~0.1-0.3 s of silence; keep it short so tests measure speech."""
    active = np.flatnonzero(np.abs(x) > 1e-3 * np.max(np.abs(x)))
    return x[max(0, active[0] - 800): active[-1] + 800] if active.size else x


@functools.lru_cache(maxsize=None)
def espeak_telugu(voice: str = "te-default", text_index: int = 0) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    rate, pitch = ESPEAK_VOICES[voice]
    out = _TMP / f"{voice}-{text_index}.wav"
    subprocess.run(["espeak-ng", "-v", "te", "-s", str(rate), "-p", str(pitch), "-w", str(out),
                    TELUGU_TEXTS[text_index]], check=True, capture_output=True, timeout=60)
    return _normalise(_trim_silence(_read_at_16k(out)))


@functools.lru_cache(maxsize=None)
def sox_vowels(seed: int = 0, seconds: float = 3.0) -> np.ndarray:
    """A sawtooth voice with vibrato through two formant band-passes, gated into syllables by a
    tremolo, plus a breath of pink noise: voiced, pitched and modulated like speech."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    # another utterance has another pitch, vowel and syllable rhythm
    f0 = (110, 150, 190)[seed % 3]
    syllables_hz = (4.5, 3.3, 5.7)[seed % 3]
    out = _TMP / f"sox-{seed}.wav"
    subprocess.run(["sox", "-n", "-r", str(SR), "-b", "16", str(out),
                    "synth", str(seconds), "sawtooth", f"{f0}-{f0 * 1.3:.0f}", "pinknoise", "mix",
                    "vol", "0.3",
                    "tremolo", f"{syllables_hz}", "90",
                    "bandpass", f"{600 + 150 * seed}", "2q", "bandpass", "1200", "0.7q",
                    "highpass", "60"], check=True, capture_output=True, timeout=60)
    return _normalise(_read_at_16k(out))


def speech(name: str, variant: int = 0, max_seconds: float = 4.0) -> np.ndarray:
    """Speech from source `name` (see SOURCES), at most `max_seconds` long (tests stay fast);
    `variant` picks another utterance of the same source (another text, seed or pitch)."""
    if name in ESPEAK_VOICES:
        x = espeak_telugu(name, variant % len(TELUGU_TEXTS))
    elif name == "synthetic":
        x = _normalise(speech_like(3.0, SR, seed=11 + 31 * variant))
    elif name == "sox-vowels":
        x = sox_vowels(variant)
    else:
        raise KeyError(name)
    return _normalise(x[: int(max_seconds * SR)])


def at_level(x: np.ndarray, rms_dbfs: float) -> np.ndarray:
    """`x` scaled to an RMS of `rms_dbfs` over its whole length."""
    rms = float(np.sqrt(np.mean(np.square(x))))
    return x * (10.0 ** (rms_dbfs / 20.0) / rms)
