"""Reconstruction metrics: pure numpy functions of a reference `ref` and an estimate `est`.

Conventions shared by every function here:
- Inputs are array-likes (numpy arrays, lists, torch tensors on any device). They are converted to
  float64. Time is the last axis; leading axes (batch, channels) are joined end to end, so a batch
  `[B, C, T]` is measured as one signal of B*C*T samples.
- Mismatched lengths: both are cropped to the common length along the time axis, from the start.
- Nothing raises on bad values and nothing returns NaN. The sentinels are:
    * SNR-family (`snr_db`, `si_snr_db`, `si_sdr_db`, `seg_snr_db`): `+inf` when the estimate is
      exact (zero error, including both silent); `-inf` when it cannot be scored in the estimate's
      favour: a non-finite sample in either input, an empty input, a silent reference with a nonzero
      error, or (scale-invariant forms) an estimate with no component along the reference.
    * `mel_distance`: 0.0 for identical inputs, `+inf` for a non-finite sample or an empty input.
    * `correlation`, `mel_correlation`: 0.0 when either input is constant, empty or non-finite.
    * `optimal_gain`: 0.0 when the estimate is silent, empty or non-finite.
    * `estimate_lag`: 0 when there is nothing to correlate.
    * `polarity`: +1, -1, or 0 (undetermined: weak correlation or nothing to measure).
- Huge (1e300) and tiny (1e-300) values are safe: energies are computed after dividing both signals
  by their common peak, so squares neither overflow nor underflow; every ratio is scale-free.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from codecdoctor.measure.spectral import mel_fft_size, mel_filterbank, window_array

# The reference used by a typical training loop's SNR (torchmetrics): eps = float32 machine epsilon
# added to both energies. Only `chunk_snr_db_eps` uses it, to reproduce what such loops report.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def dot(a: np.ndarray, b: np.ndarray) -> float | complex:
    """Inner product of two 1-D arrays without BLAS. OpenBLAS runs a level-1 dot on both cores of
    this 2-core machine and its thread hand-off costs more than the arithmetic: 5.6 ms for 2^18
    float64 values with 2 threads against 0.08 ms with 1, and einsum's own loop takes 0.2-0.5 ms
    whatever the thread setting. Every sum of squares in the measure stage goes through here."""
    return np.einsum("i,i->", a, b)


def as_signal(x: Any) -> np.ndarray:
    """Any array-like (torch tensors included) as a float64 numpy array, time on the last axis."""
    if hasattr(x, "detach"):  # torch tensor: no torch import needed here
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub" and arr.dtype.kind != "c":
        arr = arr.astype(np.float64)
    if arr.dtype.kind == "c":
        arr = arr.real
    return np.asarray(arr, dtype=np.float64)


def crop_pair(ref: Any, est: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as flat float64 arrays cropped to their common length along the last axis."""
    r, e = as_signal(ref), as_signal(est)
    if r.ndim == 0:
        r = r.reshape(1)
    if e.ndim == 0:
        e = e.reshape(1)
    n = min(r.shape[-1], e.shape[-1])
    r, e = r[..., :n], e[..., :n]
    if r.shape[:-1] != e.shape[:-1]:
        # Different leading shapes (e.g. stereo vs mono): pool each into one signal and crop again.
        r, e = r.reshape(-1), e.reshape(-1)
        n = min(r.size, e.size)
        return r[:n], e[:n]
    return r.reshape(-1), e.reshape(-1)


def _finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


def _common_scale(*arrays: np.ndarray) -> float:
    """The largest |sample| over all arrays: dividing by it keeps squares in range."""
    peak = 0.0
    for a in arrays:
        if a.size:
            peak = max(peak, float(np.max(np.abs(a))))
    return peak


def _scaled_pair(ref: Any, est: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """The pair cropped to a common length and divided by its common peak (so energies of 1e300-
    or 1e-300-sized samples neither overflow nor underflow), with a state: "ok", "invalid" (empty
    or non-finite) or "silent" (both all zeros)."""
    r, e = crop_pair(ref, est)
    if r.size == 0 or not _finite(r, e):
        return r, e, "invalid"
    scale = _common_scale(r, e)
    if scale == 0.0:
        return r, e, "silent"
    return r / scale, e / scale, "ok"


def energy_ratio_db(signal_energy: float, error_energy: float) -> float:
    """10*log10(signal/error) with the module's sentinels (+inf exact, -inf silent reference).

    An error below 1e-25 of the signal (250 dB) is float64 rounding of an exact copy (the residual of
    a perfect match lands anywhere from 0 to ~1e-30 of the signal depending on the scale), so it
    counts as exact: otherwise the same pair scores inf at one scale and 297 dB at another."""
    if error_energy <= 1e-25 * signal_energy or error_energy <= 0.0:
        return math.inf
    if signal_energy <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / error_energy)


def snr_db(ref: Any, est: Any) -> float:
    """Signal-to-noise ratio in dB over total power: 10*log10(sum(ref^2) / sum((ref - est)^2)).

    Not scale-invariant: an estimate at 0.1x gives 0.92 dB, a polarity-inverted copy -6.02 dB.
    """
    r, e, state = _scaled_pair(ref, est)
    if state != "ok":
        return -math.inf if state == "invalid" else math.inf
    return energy_ratio_db(float(dot(r, r)), float(dot(r - e, r - e)))


def si_sdr_db(ref: Any, est: Any, *, zero_mean: bool = False) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019) in dB: the reference scaled by the optimal
    alpha = <est, ref> / <ref, ref> against the residual est - alpha*ref.

    Blind to polarity: alpha may be negative, so an inverted copy scores +inf like the original.
    `zero_mean=True` removes each signal's mean first (that is SI-SNR).
    """
    r, e, state = _scaled_pair(ref, est)
    if state != "ok":
        return -math.inf if state == "invalid" else math.inf
    raw_ref_energy = float(dot(r, r))
    if zero_mean:  # after scaling: the mean of 1e308-sized samples would overflow
        r, e = r - r.mean(), e - e.mean()
        if not (r.any() or e.any()):
            return math.inf
    ref_energy = float(dot(r, r))
    # a constant reference leaves only rounding noise after mean removal (~1e-32 of its energy in
    # float64): that is no signal, and scoring against it would give a meaningless -300 dB
    if ref_energy <= 1e-26 * raw_ref_energy or ref_energy == 0.0:
        return -math.inf
    alpha = float(dot(e, r)) / ref_energy
    target = alpha * r
    residual = e - target
    target_energy = float(dot(target, target))
    residual_energy = float(dot(residual, residual))
    if residual_energy <= 0.0:
        return math.inf if target_energy > 0.0 else -math.inf
    return energy_ratio_db(target_energy, residual_energy)


def si_snr_db(ref: Any, est: Any) -> float:
    """Scale-invariant SNR: SI-SDR after removing each signal's mean (DC is not counted)."""
    return si_sdr_db(ref, est, zero_mean=True)


def seg_snr_db(ref: Any, est: Any, frame_samples: int = 320, *, floor_db: float = -10.0,
               ceiling_db: float = 35.0, silence_db: float = -40.0) -> float:
    """Segmental SNR in dB: the mean of per-frame SNRs, each clamped to [floor_db, ceiling_db].

    Frames whose reference energy is more than `silence_db` below the loudest frame are skipped:
    the classic definition (Hansen & Pellom 1998) excludes silence, whose SNR says nothing about the
    codec and would otherwise dominate the mean (see R313). The clamp stops one perfect or one
    hopeless frame from dominating. A signal shorter than one frame is one frame.
    """
    r, e, state = _scaled_pair(ref, est)
    if state != "ok":
        return -math.inf if state == "invalid" else math.inf
    frame = max(1, int(frame_samples))
    n_frames = max(1, r.size // frame)
    usable = min(r.size, n_frames * frame) if r.size >= frame else r.size
    rf = r[:usable].reshape(n_frames, -1)
    ef = e[:usable].reshape(n_frames, -1)
    signal = np.einsum("ij,ij->i", rf, rf)
    error = np.einsum("ij,ij->i", rf - ef, rf - ef)
    loudest = float(signal.max())
    if loudest <= 0.0:
        return math.inf if float(error.max()) <= 0.0 else -math.inf
    active = signal >= loudest * 10.0 ** (silence_db / 10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_frame = 10.0 * np.log10(signal[active] / error[active])
    per_frame = np.clip(np.nan_to_num(per_frame, nan=ceiling_db, posinf=ceiling_db, neginf=floor_db),
                        floor_db, ceiling_db)
    return float(per_frame.mean())


def chunk_snr_db_eps(ref: Any, est: Any, eps: float = FLOAT32_EPS) -> float:
    """SNR the way many training loops compute it: 10*log10((sum(ref^2)+eps) / (sum(err^2)+eps)).

    Finite for a silent chunk (about -60 to -120 dB for a codec's idle noise), which is exactly what
    lets silent chunks drag a mean of per-chunk dB down (R313). No common-peak rescaling here: the
    eps is in absolute units, as in the loops being reproduced. Non-finite input gives -inf.
    """
    r, e = crop_pair(ref, est)
    if not _finite(r, e):
        return -math.inf
    with np.errstate(over="ignore"):
        signal = float(dot(r, r)) + eps
        error = float(dot(r - e, r - e)) + eps
    if not (math.isfinite(signal) and math.isfinite(error)):
        return snr_db(r, e)
    return 10.0 * math.log10(signal / error)


def _regression_slope(x: Any, y: Any) -> float:
    """<x, y> / <x, x> on the common length, computed at a shared scale so 1e-300 or 1e300 inputs
    neither underflow nor overflow; 0.0 when x is silent, empty or anything is non-finite."""
    x, y, state = _scaled_pair(x, y)
    if state != "ok":
        return 0.0
    x_energy = float(dot(x, x))
    if x_energy == 0.0:
        return 0.0
    return float(dot(x, y)) / x_energy


def optimal_gain(ref: Any, est: Any) -> float:
    """The scalar g minimising sum((ref - g*est)^2): <ref, est> / <est, est>. Signed (negative for an
    inverted estimate). 0.0 for a silent, empty or non-finite estimate. For an estimate at 0.1x of
    the reference it is 10."""
    return _regression_slope(est, ref)


def output_level_ratio(ref: Any, est: Any) -> float:
    """The regression slope a of est on ref, <ref, est> / <ref, ref>: "the output is a times the
    input". Unlike `optimal_gain` it is not biased by noise added to the output (the noise is
    uncorrelated with ref and averages out). 0.0 for a silent, empty or non-finite reference."""
    return _regression_slope(ref, est)


def correlation(ref: Any, est: Any) -> float:
    """Pearson correlation of the two signals (means removed), in [-1, 1]; 0.0 when either is
    constant, empty or non-finite."""
    r, e, state = _scaled_pair(ref, est)
    if state != "ok" or r.size < 2 or r.max() == r.min() or e.max() == e.min():
        return 0.0
    r, e = r - r.mean(), e - e.mean()
    denominator = math.sqrt(float(dot(r, r)) * float(dot(e, e)))
    if denominator == 0.0:
        return 0.0
    return float(np.clip(float(dot(r, e)) / denominator, -1.0, 1.0))


def cross_correlation(ref: Any, est: Any, max_lag_samples: int, *, block_samples: int | None = None,
                      max_blocks: int = 32, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cross-correlation c[k] = sum_n ref[n] * est[n + k] / (|ref| |est|) for
    k in [-max_lag_samples, max_lag_samples] (means removed), by FFT, block by block.

    Work and memory are bounded: the reference is cut into blocks of `block_samples`, each block is
    correlated with the matching stretch of the estimate widened by the lag window, and at most
    `max_blocks` evenly spaced blocks are used (one hour of audio costs the same as a minute: the
    lag of a codec is global, so a sample of blocks finds it). Returns (lags, c); c is zeros when
    there is nothing to correlate. Inputs here are 1-D (use `crop_pair`'s flattening first).

    The estimate's energy is taken over the unshifted blocks, so at a large lag of a padded or
    trimmed output c can come out slightly above 1: `clip=False` keeps those values (to find a peak
    among neighbours that would all clip to 1.0), the default clips them into [-1, 1]."""
    from scipy.fft import irfft, next_fast_len, rfft

    r = as_signal(ref).reshape(-1)
    e = as_signal(est).reshape(-1)
    max_lag = max(0, int(max_lag_samples))
    lags = np.arange(-max_lag, max_lag + 1)
    out = np.zeros(lags.size)
    if r.size == 0 or e.size == 0 or not _finite(r, e):
        return lags, out
    scale = _common_scale(r, e)
    if scale == 0.0:
        return lags, out
    r, e = r / scale, e / scale
    r = r - r.mean()
    e = e - e.mean()
    block = int(block_samples) if block_samples else max(4 * max_lag, 1 << 14)
    starts = np.arange(0, r.size, block)
    if starts.size > max_blocks:
        # Evenly spaced sample of blocks; the energies below are taken over the same blocks.
        starts = starts[np.linspace(0, starts.size - 1, max_blocks).round().astype(int)]
    ref_energy = 0.0
    est_energy = 0.0
    for start in starts:
        seg_r = r[start:start + block]
        lo = start - max_lag
        hi = start + seg_r.size + max_lag
        seg_e = np.zeros(hi - lo)
        src_lo, src_hi = max(lo, 0), min(hi, e.size)
        if src_hi > src_lo:
            seg_e[src_lo - lo:src_hi - lo] = e[src_lo:src_hi]
        ref_energy += float(dot(seg_r, seg_r))
        est_part = e[max(start, 0):min(start + seg_r.size, e.size)]
        est_energy += float(dot(est_part, est_part))
        size = next_fast_len(seg_e.size + seg_r.size)
        # corr[j] = sum_n seg_e[n + j] * seg_r[n]; lag k = j - max_lag.
        spectrum = rfft(seg_e, size) * np.conj(rfft(seg_r, size))
        full = irfft(spectrum, size)
        out += full[: 2 * max_lag + 1]
    denominator = math.sqrt(ref_energy * est_energy)
    if denominator == 0.0:
        return lags, np.zeros(lags.size)
    return lags, (np.clip(out / denominator, -1.0, 1.0) if clip else out / denominator)


def estimate_lag(ref: Any, est: Any, max_lag_samples: int = 8000) -> int:
    """The lag (samples) that best aligns est with ref: est[n] ~ ref[n - lag]. Positive means the
    estimate is late (delayed). Found as the peak of |cross-correlation| within +-max_lag_samples,
    so a polarity-inverted copy is aligned too. 0 when there is nothing to correlate."""
    lag, _ = lag_and_peak(ref, est, max_lag_samples)
    return lag


def lag_and_peak(ref: Any, est: Any, max_lag_samples: int = 8000) -> tuple[int, float]:
    """(lag, signed normalised correlation at that lag); see `estimate_lag`. Ties go to the
    smallest |lag| so silence or an exact copy reports 0."""
    r = as_signal(ref).reshape(-1)
    e = as_signal(est).reshape(-1)
    max_lag = min(int(max_lag_samples), max(r.size, e.size) - 1) if max(r.size, e.size) else 0
    lags, c = cross_correlation(r, e, max(max_lag, 0), clip=False)
    c = np.nan_to_num(c, nan=0.0)
    magnitude = np.abs(c)
    best = float(magnitude.max()) if magnitude.size else 0.0
    if best == 0.0:
        return 0, 0.0
    # Within float rounding of the best, prefer the smallest |lag|.
    candidates = np.flatnonzero(magnitude >= best * (1.0 - 1e-9))
    index = int(candidates[np.argmin(np.abs(lags[candidates]))])
    return int(lags[index]), float(np.clip(c[index], -1.0, 1.0))


def polarity(ref: Any, est: Any, max_lag_samples: int = 8000, *, min_correlation: float = 0.1) -> int:
    """+1 or -1: the sign of the correlation at the best lag; 0 when |correlation| is below
    `min_correlation` (nothing to decide from: an uncorrelated output has no polarity)."""
    _, peak = lag_and_peak(ref, est, max_lag_samples)
    if abs(peak) < min_correlation:
        return 0
    return 1 if peak > 0 else -1


def shift_pair(ref: np.ndarray, est: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping parts of ref and est after undoing `lag` (est[n + lag] pairs with ref[n])."""
    if lag > 0:
        est = est[lag:]
    elif lag < 0:
        ref = ref[-lag:]
    n = min(ref.size, est.size)
    return ref[:n], est[:n]


# ---- mel spectrogram: the filterbank is measure/spectral.py's (the codec's loss uses the same) ----

def spectral_summary(x: Any, sample_rate: int, *, n_fft: int | None = None, n_mels: int = 64,
                     floor: float = 1e-5, block_frames: int = 4096) -> tuple[np.ndarray, np.ndarray, float]:
    """One STFT pass giving (log-mel spectrogram, long-term power spectrum, scale).

    The log-mel is log10 of the mel-filtered STFT magnitude, clamped below at log10(floor) (as
    DAC's mel loss), shape (frames, n_mels). Hann window, hop n_fft/4, zero-padded to whole frames.
    The power spectrum is the mean |X|^2 over frames (a Welch estimate, Hann, 75% overlap) of the
    signal divided by `scale` (its peak), shape (n_fft//2 + 1,). Computed in blocks of frames
    (bounded memory); the scale goes back in the log domain, so huge values do not overflow.
    Non-finite input is treated as silence."""
    n_fft = int(n_fft or mel_fft_size(sample_rate))
    hop = max(1, n_fft // 4)
    n_mels = int(max(1, min(n_mels, n_fft // 4)))
    signal = as_signal(x).reshape(-1)
    log_floor = math.log10(floor)
    if signal.size == 0:
        return np.full((0, n_mels), log_floor), np.zeros(n_fft // 2 + 1), 0.0
    if not _finite(signal):
        signal = np.zeros_like(signal)
    scale = _common_scale(signal)
    if scale > 0.0:
        signal = signal / scale
    n_frames = max(1, 1 + math.ceil(max(signal.size - n_fft, 0) / hop))
    padded = np.zeros((n_frames - 1) * hop + n_fft)
    padded[: signal.size] = signal
    window = window_array("hann", n_fft)
    bank = mel_filterbank(sample_rate, n_fft, n_mels)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    out = np.empty((n_frames, n_mels))
    power = np.zeros(n_fft // 2 + 1)
    log_scale = math.log10(scale) if scale > 0.0 else 0.0
    for start in range(0, n_frames, block_frames):
        magnitude = np.abs(np.fft.rfft(frames[start:start + block_frames] * window, axis=-1))
        power += np.einsum("ij,ij->j", magnitude, magnitude)
        mel = magnitude @ bank
        with np.errstate(divide="ignore"):
            out[start:start + block_frames] = np.log10(np.maximum(mel, 1e-300)) + log_scale
    return np.maximum(out, log_floor), power / n_frames, scale


def log_mel_spectrogram(x: Any, sample_rate: int, *, n_fft: int | None = None, n_mels: int = 64,
                        floor: float = 1e-5, block_frames: int = 4096) -> np.ndarray:
    """log10 mel magnitude spectrogram, shape (frames, n_mels); see `spectral_summary`."""
    return spectral_summary(x, sample_rate, n_fft=n_fft, n_mels=n_mels, floor=floor, block_frames=block_frames)[0]


def mel_distance(ref: Any, est: Any, sample_rate: int, *, n_mels: int = 64) -> float:
    """Mean |log10 mel(ref) - log10 mel(est)| over time-frequency bins (the L1 log-mel distance
    used as a codec loss). 0 = identical; 1.0 = one decade (20 dB) apart everywhere, which is what a
    0.1x output scores. +inf for a non-finite sample or an empty input."""
    r, e = crop_pair(ref, est)
    if r.size == 0 or not _finite(r, e):
        return math.inf
    a = log_mel_spectrogram(r, sample_rate, n_mels=n_mels)
    b = log_mel_spectrogram(e, sample_rate, n_mels=n_mels)
    return float(np.mean(np.abs(a - b)))


def array_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (e.g. log-mel spectrograms); 0.0 when
    either is constant."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    n = min(a.size, b.size)
    if n < 2:
        return 0.0
    return correlation(a[:n], b[:n])


def mel_correlation(ref: Any, est: Any, sample_rate: int, *, n_mels: int = 64) -> float:
    """Pearson correlation of the two log-mel spectrograms: how well the estimate's time-frequency
    energy pattern follows the reference's, ignoring phase. Near 1 for a phase-scrambled copy,
    near 0 for unrelated noise."""
    r, e = crop_pair(ref, est)
    if r.size == 0 or not _finite(r, e):
        return 0.0
    return array_correlation(log_mel_spectrogram(r, sample_rate, n_mels=n_mels),
                             log_mel_spectrogram(e, sample_rate, n_mels=n_mels))


def band_transfer(ref: Any, est: Any, sample_rate: int, **kw: Any) -> dict[str, float]:
    """Compare the long-term spectra of ref and est; see `band_transfer_from_spectra`."""
    r, e = crop_pair(ref, est)
    if r.size < 16 or not _finite(r, e) or sample_rate <= 0:
        return {"ref_bandwidth_hz": 0.0, "est_bandwidth_hz": 0.0, "lost_energy_fraction": 0.0, "level_ratio_db": 0.0}
    _, psd_ref, scale_ref = spectral_summary(r, sample_rate)
    _, psd_est, scale_est = spectral_summary(e, sample_rate)
    return band_transfer_from_spectra(psd_ref, psd_est, sample_rate, scale_ref=scale_ref, scale_est=scale_est, **kw)


def band_transfer_from_spectra(psd_ref: np.ndarray, psd_est: np.ndarray, sample_rate: int, *,
                               scale_ref: float = 1.0, scale_est: float = 1.0, n_bands: int = 32,
                               attenuation_db: float = 20.0, ref_range_db: float = 80.0) -> dict[str, float]:
    """Compare two long-term power spectra (from `spectral_summary`) in `n_bands` equal bands.

    Returns `ref_bandwidth_hz` (upper edge of the highest band where ref is within `ref_range_db` of
    its strongest band), `est_bandwidth_hz` (upper edge of the highest such band where est's power
    relative to ref's, normalised by the overall level ratio, is above -`attenuation_db`),
    `lost_energy_fraction` (share of ref's energy above est_bandwidth_hz) and `level_ratio_db`.
    Ratio-based, so a global gain error does not look like a bandwidth loss. Zeros for silence."""
    result = {"ref_bandwidth_hz": 0.0, "est_bandwidth_hz": 0.0, "lost_energy_fraction": 0.0, "level_ratio_db": 0.0}
    psd_ref = np.asarray(psd_ref, dtype=np.float64)
    psd_est = np.asarray(psd_est, dtype=np.float64)
    if psd_ref.size < n_bands or psd_ref.size != psd_est.size or sample_rate <= 0:
        return result
    edges = np.linspace(0, psd_ref.size, n_bands + 1).round().astype(int)
    band_ref = np.add.reduceat(psd_ref, edges[:-1])
    band_est = np.add.reduceat(psd_est, edges[:-1])
    strongest = float(band_ref.max())
    if strongest <= 0.0:
        return result
    valid = band_ref >= strongest * 10.0 ** (-ref_range_db / 10.0)
    band_hz = (sample_rate / 2.0) / n_bands
    top_ref = int(np.flatnonzero(valid).max())
    result["ref_bandwidth_hz"] = (top_ref + 1) * band_hz
    level = float(band_est[valid].sum() / band_ref[valid].sum())
    if level <= 0.0:
        result["level_ratio_db"] = -math.inf
        result["lost_energy_fraction"] = 1.0
        return result
    if scale_ref > 0.0 and scale_est > 0.0:
        result["level_ratio_db"] = 10.0 * math.log10(level) + 20.0 * (math.log10(scale_est) - math.log10(scale_ref))
    relative = band_est / (band_ref * level + 1e-300)
    passing = valid & (relative >= 10.0 ** (-attenuation_db / 10.0))
    top_est = int(np.flatnonzero(passing).max()) if passing.any() else -1
    result["est_bandwidth_hz"] = (top_est + 1) * band_hz
    result["lost_energy_fraction"] = float(band_ref[top_est + 1:].sum() / band_ref.sum())
    return result


# ---- fractional delay: band-limited refinement of an integer lag -------------------------------

# Half-length of the windowed-sinc kernels below: 32 taps each side keep the interpolation error of
# a Blackman-windowed sinc under -70 dB up to 0.8 x Nyquist, where speech has little energy left.
SINC_HALF_TAPS = 32


def _windowed_sinc(offsets: np.ndarray, half: int) -> np.ndarray:
    window = np.where(np.abs(offsets) <= half, 0.42 + 0.5 * np.cos(np.pi * offsets / half)
                      + 0.08 * np.cos(2 * np.pi * offsets / half), 0.0)
    return np.sinc(offsets) * window


def fractional_lag(lags: np.ndarray, c: np.ndarray, index: int, *, half_taps: int = 16) -> float:
    """The fraction (in [-0.5, 0.5] samples) to add to `lags[index]` where |c| peaks between samples.

    A cross-correlation of band-limited signals is itself band-limited, so c between lags is the
    windowed-sinc interpolation of its samples; the peak is found on a 1/200-sample grid within
    half a sample of the integer peak. 0.0 when there are too few lags around the peak."""
    lo, hi = index - half_taps, index + half_taps + 1
    if lo < 0 or hi > c.size or c.size < 3:
        return 0.0
    local = np.asarray(c[lo:hi], dtype=np.float64)
    grid, kernel = _fraction_kernel(half_taps)
    values = np.abs(kernel @ local)
    return float(grid[int(np.argmax(values))])


@functools.lru_cache(maxsize=4)
def _fraction_kernel(half_taps: int) -> tuple[np.ndarray, np.ndarray]:
    """fractional_lag's 1/200-sample grid and its interpolation matrix (the same for every call)."""
    grid = np.linspace(-0.5, 0.5, 201)
    offsets = grid[:, None] + half_taps - np.arange(2 * half_taps + 1)[None, :]
    kernel = _windowed_sinc(offsets, half_taps + 1)
    grid.setflags(write=False)
    kernel.setflags(write=False)
    return grid, kernel


def fractional_shift(x: np.ndarray, delay_samples: float) -> np.ndarray:
    """`x` delayed by a fraction of a sample (|delay| <= 1; negative advances), same length:
    y[n] ~ x(n - delay). Windowed-sinc FIR (2 x SINC_HALF_TAPS + 1 taps), linear in blocks."""
    from codecdoctor.measure.spectral import fir_valid

    half = SINC_HALF_TAPS
    taps = _windowed_sinc(np.arange(-half, half + 1) - float(delay_samples), half + 1)
    taps /= taps.sum()
    x = np.asarray(x, dtype=np.float64)
    # the "same"-length part of the full convolution: the valid part of x zero-padded by half a filter
    return fir_valid(np.concatenate([np.zeros(half), x, np.zeros(half)]), taps)[: x.size]
