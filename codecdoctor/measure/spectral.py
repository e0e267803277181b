"""The one window / mel definition shared by the metrics, the STFT-risk checks and (by a test that
pins them equal) the codec's training loss in model/losses.py.

Mel filters are HTK-scale triangles (mel = 2595 log10(1 + f/700)) from 0 Hz to Nyquist with Slaney
area normalisation (each triangle scaled by 2 / its width in Hz), exactly
`torchaudio.functional.melscale_fbanks(n_freqs, 0, sr/2, n_mels, sr, norm="slaney", mel_scale="htk")`;
tests/test_spectral.py holds them together. Written in numpy so the diagnostics keep working
when torchaudio fails to import (that is finding E701).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

MEL_SCALE = "htk"
MEL_NORM = "slaney"


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=64)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(center - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - center, 1e-9)
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / np.maximum(upper - lower, 1e-9))
    bank = bank.T.copy()
    bank.setflags(write=False)  # cached and shared: nobody may scale it in place
    return bank


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Mel filters, shape (n_fft // 2 + 1, n_mels), read-only (cached per configuration)."""
    return _filterbank(int(sample_rate), int(n_fft), int(n_mels))


def mel_fft_size(sample_rate: int) -> int:
    """64 ms analysis window rounded to a power of two (1024 at 16 kHz), at least 64."""
    return int(max(64, 2 ** round(math.log2(max(0.064 * sample_rate, 1.0)))))


def is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def window_array(name: str, n_fft: int) -> np.ndarray:
    """Periodic windows as torch builds them (torch.hann_window default periodic=True), read-only
    (cached: a pair's compare asks for the same few windows several times)."""
    return _window(str(name), int(n_fft))


@lru_cache(maxsize=32)
def _window(name: str, n_fft: int) -> np.ndarray:
    window = _build_window(name, n_fft)
    window.setflags(write=False)
    return window


def _build_window(name: str, n_fft: int) -> np.ndarray:
    k = np.arange(n_fft)
    if name == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * k / n_fft)
    if name == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * k / n_fft)
    if name in ("rect", "ones", "boxcar"):
        return np.ones(n_fft)
    raise ValueError(f"unknown window {name!r} (hann, hamming, rect)")


# Welch and the FIR below are written here rather than taken from scipy.signal because importing
# scipy.signal costs about 1.2 s (it imports scipy.stats), more than a whole compare of a short pair;
# tests/test_spectral.py pins both to scipy.signal.welch and scipy.signal.oaconvolve.

def welch_density(x: np.ndarray, sample_rate: float, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density, as `scipy.signal.welch(x, fs, nperseg=segment, detrend=False)`:
    periodic Hann segments overlapping by half, one-sided, density scaling (V^2/Hz), the mean over
    segments. A signal shorter than `segment` is one segment of its own length."""
    from scipy.fft import rfft, rfftfreq

    x = np.asarray(x, dtype=np.float64)
    segment = int(min(max(segment, 1), x.size)) if x.size else 1
    step = segment - segment // 2
    window = window_array("hann", segment)
    count = 1 + (x.size - segment) // step if x.size >= segment else 0
    freqs = rfftfreq(segment, 1.0 / sample_rate)
    if count == 0:
        return freqs, np.zeros(freqs.size)
    frames = np.lib.stride_tricks.sliding_window_view(x, segment)[::step][:count]
    power = np.zeros(freqs.size)
    for start in range(0, count, 256):   # bounded memory on long envelopes
        spectrum = rfft(frames[start:start + 256] * window, axis=-1)
        power += (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=0)
    power /= count * sample_rate * float(np.dot(window, window))
    # one-sided: every bin but DC (and Nyquist for an even segment) carries its negative twin
    power[1:-1 if segment % 2 == 0 else None] *= 2.0
    return freqs, power


def fir_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """`np.convolve(x, taps, mode="valid")` through one FFT (float64), for long `x` and short `taps`."""
    from scipy.fft import irfft, next_fast_len, rfft

    x, taps = np.asarray(x, dtype=np.float64), np.asarray(taps, dtype=np.float64)
    if x.size < taps.size:
        return np.zeros(0)
    size = next_fast_len(x.size + taps.size - 1, real=True)
    full = irfft(rfft(x, size) * rfft(taps, size), size)
    return full[taps.size - 1:x.size]
