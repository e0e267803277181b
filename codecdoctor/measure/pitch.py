"""The pitch (F0) range of a voice, from the one analysis window of measure/spectral.py.

R317 asks it: a voice's own glottal pulses repeat at its pitch, so a codec that smears them leaves
residual energy modulated at F0, which looks like a frame-rate line when the codec's hop is unknown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codecdoctor.measure.spectral import mel_fft_size, window_array

# Voices span about 60 Hz (low male) to 400 Hz (children, high female).
F0_RANGE_HZ = (60.0, 400.0)
# A frame is voiced when its normalised autocorrelation at the period reaches 0.5: half of its
# energy repeats one period later (noise and fricatives stay near 0; steady vowels reach 0.8-0.95).
VOICED_CORRELATION = 0.5
# Frames more than 30 dB below the loudest carry too little of the voice to read a pitch from.
ACTIVE_RANGE_DB = 30.0
# A pitch needs a few voiced frames (at hop n_fft/4 = 16 ms, 5 frames are 80 ms of voicing).
MIN_VOICED_FRAMES = 5
# Within 0.9 of the highest peak the shortest lag wins: a period's multiples (2T, 3T) correlate
# almost as well as T itself, and picking them would halve the pitch.
SUBHARMONIC_TOLERANCE = 0.9


@dataclass
class PitchRange:
    low_hz: float        # 5th percentile of the voiced frames' F0
    high_hz: float       # 95th percentile
    median_hz: float
    voiced_frames: int


def pitch_range(x: np.ndarray, sample_rate: int, *, max_frames: int = 2000) -> PitchRange | None:
    """F0 range of the voiced frames of `x` (None when fewer than MIN_VOICED_FRAMES are voiced).

    Frames of the spectral module's analysis window (Hann, 64 ms: two periods of a 31 Hz voice)
    at hop n_fft/4; each frame's autocorrelation is the inverse FFT of its power spectrum
    (zero-padded to twice the frame: linear, not circular), divided by the window's own
    autocorrelation so the taper does not favour short lags. The period is the shortest lag in
    the F0 range whose correlation is within 0.9 of the best, refined by a parabola."""
    from scipy.fft import irfft, rfft

    x = np.asarray(x, dtype=np.float64).reshape(-1)
    n_fft = mel_fft_size(sample_rate)
    hop = max(1, n_fft // 4)
    shortest = max(2, int(math.floor(sample_rate / F0_RANGE_HZ[1])))
    longest = min(int(math.ceil(sample_rate / F0_RANGE_HZ[0])), n_fft // 2)
    if x.size < n_fft or longest <= shortest + 2 or not np.all(np.isfinite(x)):
        return None
    peak = float(np.max(np.abs(x)))
    if not peak > 0.0:
        return None
    x = x / peak   # correlations are scale-free; squares of 1e200-sized samples are not
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    energy = np.einsum("ij,ij->i", frames, frames)
    loudest = float(energy.max())
    if not loudest > 0.0:
        return None
    active = np.flatnonzero(energy >= loudest * 10.0 ** (-ACTIVE_RANGE_DB / 10.0))
    if active.size > max_frames:   # bounded work on long pairs: evenly spaced frames
        active = active[np.linspace(0, active.size - 1, max_frames).astype(int)]
    window = window_array("hann", n_fft)
    spectrum = rfft(frames[active] * window, 2 * n_fft, axis=-1)
    lags = irfft(spectrum.real ** 2 + spectrum.imag ** 2, 2 * n_fft, axis=-1)[:, : longest + 2]
    taper = irfft(np.abs(rfft(window, 2 * n_fft)) ** 2, 2 * n_fft)[: longest + 2]
    correlation = (lags / np.maximum(lags[:, :1], 1e-300)) / (taper / taper[0])
    f0 = []
    for row in correlation:
        search = row[shortest:longest + 1]
        best = float(search.max())
        if not best >= VOICED_CORRELATION:
            continue
        lag = shortest + int(np.flatnonzero(search >= SUBHARMONIC_TOLERANCE * best)[0])
        while lag + 1 <= longest and row[lag + 1] > row[lag]:   # climb to the local peak
            lag += 1
        a, b, c = row[lag - 1], row[lag], row[lag + 1]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
        f0.append(sample_rate / (lag + shift))
    if len(f0) < MIN_VOICED_FRAMES:
        return None
    values = np.asarray(f0)
    low, median, high = np.percentile(values, [5, 50, 95])
    return PitchRange(float(low), float(high), float(median), len(f0))
