"""Deterministic speech-like test and demo signals: nothing is downloaded.

`speech_like(seconds, sample_rate, seed)`: a glottal-like harmonic source with a slowly varying
pitch, shaped by vowel formants, cut into syllables and words with pauses between them, plus a little
aspiration noise. It has what real speech has that matters to a codec or a data audit: a crest factor
of ~10-15 dB, energy concentrated below 4 kHz with a tilt, silences that are really quiet, and pitch
movement. Used by the demo (at run time) and by the tests (through tests/audio_fixtures.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# (F1, F2, F3) in Hz for a few vowels (Peterson & Barney averages, adult male), with bandwidths.
_VOWEL_FORMANTS_HZ = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),   # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),   # o
)
_FORMANT_BANDWIDTHS_HZ = (80.0, 100.0, 140.0)


def _resonator(x: np.ndarray, freq_hz: float, bandwidth_hz: float, sample_rate: int) -> np.ndarray:
    """Two-pole resonator (one formant), unity gain at DC-normalised peak."""
    from scipy.signal import lfilter

    if freq_hz >= sample_rate / 2 * 0.95:
        return x
    r = np.exp(-np.pi * bandwidth_hz / sample_rate)
    theta = 2 * np.pi * freq_hz / sample_rate
    a = [1.0, -2 * r * np.cos(theta), r * r]
    b = [1.0 - r]  # keeps the peak gain of each resonance near 1/(1-r)*(1-r)
    return lfilter(b, a, x)


def speech_like(
    seconds: float,
    sample_rate: int = 16000,
    seed: int = 0,
    *,
    peak: float = 0.5,
    pause_fraction: float = 0.15,
    f0_range_hz: tuple[float, float] = (90.0, 220.0),
    noise_level: float = 0.02,
    channels: int = 1,
) -> np.ndarray:
    """A deterministic speech-like signal, float32, peak |x| == `peak` (unless all silence).

    Shape: (samples,) for one channel, (samples, channels) otherwise (soundfile's layout); extra
    channels are the first one delayed by a few samples and scaled, like a stereo mic pair.
    `pause_fraction` is the approximate fraction of the time that is exact silence between words
    (exact zeros, so a -60 dBFS silence detector finds them; add noise yourself if you need a floor).
    """
    rng = np.random.default_rng(seed)
    n = max(int(round(seconds * sample_rate)), 0)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out.astype(np.float32) if channels == 1 else np.zeros((0, channels), np.float32)
    # One generator drawn from in a fixed order (layout, then each word): the same seed gives the same signal.
    for start, stop in _word_spans(n, sample_rate, pause_fraction, rng):
        if stop - start >= 8:
            out[start:stop] = _word(stop - start, sample_rate, f0_range_hz, noise_level, rng)
    top = np.max(np.abs(out))
    if top > 0:
        out *= peak / top
    return _as_channels(out.astype(np.float32), channels)


def _word_spans(n: int, sample_rate: int, pause_fraction: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Word / pause layout: words of 0.25-0.9 s, pauses sized so they take ~pause_fraction of the time."""
    t = 0
    spans: list[tuple[int, int]] = []
    while t < n:
        word = int(rng.uniform(0.25, 0.9) * sample_rate)
        spans.append((t, min(t + word, n)))
        mean_pause = 0.575 * pause_fraction / max(1e-6, 1.0 - pause_fraction)
        pause = int(rng.uniform(0.5, 1.5) * mean_pause * sample_rate) if pause_fraction > 0 else 0
        t += word + pause
    return spans


def _word(length: int, sample_rate: int, f0_range_hz: tuple[float, float], noise_level: float,
          rng: np.random.Generator) -> np.ndarray:
    """One word: syllables of ~120-250 ms over one pitch contour, each with its own vowel."""
    cuts = [0]
    while cuts[-1] < length:
        cuts.append(min(length, cuts[-1] + int(rng.uniform(0.12, 0.25) * sample_rate)))
    source = _glottal_source(length, sample_rate, f0_range_hz, noise_level, rng)
    word_sig = np.zeros(length)
    for a, b in zip(cuts[:-1], cuts[1:]):
        word_sig[a:b] = _syllable(source[a:b], sample_rate, rng) * rng.uniform(0.4, 1.0)
    return word_sig


def _glottal_source(length: int, sample_rate: int, f0_range_hz: tuple[float, float], noise_level: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Harmonics of a pitch contour over the word: a declining line plus a slow wobble (intonation)."""
    f0_lo, f0_hi = f0_range_hz
    nyquist = sample_rate / 2
    f_start = rng.uniform(f0_lo + 0.3 * (f0_hi - f0_lo), f0_hi)
    f_end = rng.uniform(f0_lo, f_start)
    frac = np.linspace(0.0, 1.0, length)
    f0 = f_start + (f_end - f_start) * frac
    f0 *= 1.0 + 0.04 * np.sin(2 * np.pi * rng.uniform(2.0, 5.0) * frac * length / sample_rate)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)
    # Glottal-like source: harmonics falling 1/k (-6 dB/octave; with lip radiation's +6 dB/octave
    # the radiated spectrum is roughly flat before the formants shape it), band-limited.
    n_harmonics = int(nyquist * 0.9 / f_start)
    source = np.zeros(length)
    for k in range(1, max(n_harmonics, 1) + 1):
        amp = 1.0 / k
        # Harmonics that would alias at the low end of the contour are faded out.
        alias_ok = (k * f0) < nyquist * 0.95
        source += np.where(alias_ok, amp * np.sin(k * phase), 0.0)
    source += noise_level * rng.standard_normal(length)
    return source


def _syllable(seg: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The source shaped by one vowel's formants and a syllable envelope, sometimes with a fricative onset."""
    f1, f2, f3 = _VOWEL_FORMANTS_HZ[int(rng.integers(len(_VOWEL_FORMANTS_HZ)))]
    shaped = sum(g * _resonator(seg, f, bw, sample_rate)
                 for g, f, bw in zip((1.0, 0.6, 0.3), (f1, f2, f3), _FORMANT_BANDWIDTHS_HZ))
    # Syllable envelope: raised-cosine attack/decay, varying loudness between syllables.
    env = np.sin(np.pi * np.linspace(0.0, 1.0, seg.size)) ** 0.6
    syllable = shaped * env
    if rng.random() < 0.4 and seg.size > sample_rate // 20:
        # A fricative onset (s / sh): twice-differentiated white noise, energy rising to
        # Nyquist, so the signal has real speech's high band (-30 to -40 dB above 4 kHz).
        fric_len = min(int(rng.uniform(0.03, 0.06) * sample_rate), seg.size)
        fric = np.diff(rng.standard_normal(fric_len + 2), n=2)
        fric *= np.hanning(fric_len) * 0.15 * np.max(np.abs(syllable)) / max(np.max(np.abs(fric)), 1e-12)
        syllable[:fric_len] += fric
    return syllable


def _as_channels(mono: np.ndarray, channels: int) -> np.ndarray:
    """Extra channels: the first one delayed by 3 samples per channel and scaled, like a mic pair."""
    if channels == 1:
        return mono
    n = mono.shape[0]
    multi = np.zeros((n, channels), dtype=np.float32)
    for c in range(channels):
        delay = 3 * c
        multi[delay:, c] = mono[: n - delay] * (1.0 - 0.1 * c)
    return multi


def write_audio(path: str | Path, data: np.ndarray, sample_rate: int = 16000, subtype: str = "FLOAT",
                format: str | None = None) -> Path:
    """Write `data` with soundfile (subtype e.g. "FLOAT", "DOUBLE", "PCM_16", "PCM_24"); returns the path."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, subtype=subtype, format=format)
    return path
