"""R304 lag drift: the lag measured again in windows spread over the pair."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.pair.measurements import MAX_LAG_SECONDS, PairMeasurements

# Lag drift (R304): at most DRIFT_WINDOWS evenly spaced windows of DRIFT_WINDOW_SECONDS each (a
# correlation peak over 0.5 s of speech is sharp to a fraction of a sample), each searched around
# the global lag. The global lag sits near the middle window's, so an end window's own lag is
# off by up to the drift rate x half the pair: the search reaches DRIFT_SEARCH_SECONDS, or on a
# long pair far enough for DRIFT_MAX_PPM (two device clocks each +-100 ppm off, the crystal
# tolerance of consumer audio hardware), at most MAX_LAG_SECONDS (the lag search's own window).
# A window counts when its peak |correlation| reaches DRIFT_MIN_CORRELATION (the output explains
# a quarter of the window's energy: below, noise moves the peak) and lies inside the search range.
DRIFT_WINDOWS = 8
DRIFT_MIN_WINDOWS = 4
DRIFT_WINDOW_SECONDS = 0.5
DRIFT_SEARCH_SECONDS = 0.05
DRIFT_MAX_PPM = 200.0
DRIFT_MIN_CORRELATION = 0.5


def drift_search_seconds(pair_seconds: float) -> float:
    """How far from the global lag each drift window is searched, for a pair this long."""
    reach = DRIFT_MAX_PPM * 1e-6 * max(pair_seconds, 0.0) / 2.0
    return min(max(DRIFT_SEARCH_SECONDS, reach), MAX_LAG_SECONDS)


def measure_lag_drift(m: PairMeasurements, read_ref: Any, read_est: Any, ref_samples: int, est_samples: int) -> None:
    """The lag again in up to DRIFT_WINDOWS windows spread over the pair, around m.lag_samples, into
    m.lag_by_window and (from at least DRIFT_MIN_WINDOWS confident windows) the drift fields.
    `read_ref(start, stop)` / `read_est(start, stop)` read the flattened signals."""
    sr, lag = m.sample_rate, int(m.lag_samples)
    width = max(16, int(round(DRIFT_WINDOW_SECONDS * sr)))
    radius = max(1, int(round(drift_search_seconds(min(ref_samples, est_samples) / sr) * sr)))
    # reference windows [t, t + width) whose estimate stretch [t + lag - radius, t + lag + width + radius) exists
    first = max(0, radius - lag)
    last = min(ref_samples, est_samples - lag - radius) - width
    if last < first or m.ref_silent or m.est_silent:
        return
    count = min(DRIFT_WINDOWS, (last - first) // width + 1)
    if count < DRIFT_MIN_WINDOWS:
        return
    # every window is read first, and all are correlated in one batch of transforms
    starts, refs, ests = [], [], []
    for start in np.linspace(first, last, count).round().astype(int):
        r = np.asarray(read_ref(int(start), int(start) + width), dtype=np.float64)
        e = np.asarray(read_est(int(start) + lag - radius, int(start) + lag + width + radius), dtype=np.float64)
        if r.size == width and e.size == width + 2 * radius:
            starts.append(int(start))
            refs.append(r)
            ests.append(e)
    if not starts:
        return
    windows = _window_correlations(np.stack(refs), np.stack(ests), starts, width, radius)
    if windows is not None:
        _fit_drift(m, *windows, width, radius)


def _window_correlations(r: np.ndarray, e: np.ndarray, starts: list[int], width: int,
                         radius: int) -> tuple[list[int], np.ndarray, np.ndarray] | None:
    """Each window's normalised correlation at shifts -radius .. radius (rows), for the windows
    whose reference has energy: (their starts, the correlations, the reference energies); None
    when no window has any."""
    from scipy.fft import irfft, next_fast_len, rfft

    r -= r.mean(axis=1, keepdims=True)
    e -= e.mean(axis=1, keepdims=True)
    ref_energy = np.einsum("ij,ij->i", r, r)
    usable = (ref_energy > 0.0) & np.isfinite(ref_energy)
    if not usable.any():
        return None
    if not usable.all():
        starts = [s for s, ok in zip(starts, usable) if ok]
        r, e, ref_energy = r[usable], e[usable], ref_energy[usable]
    # energy of e[j : j + width], j = 0 .. 2R: the first window's, then what each step adds and drops
    squares = e * e
    steps = squares[:, width:] - squares[:, :-width]
    est_energy = np.empty((e.shape[0], 2 * radius + 1))
    est_energy[:, 0] = squares[:, :width].sum(axis=1)
    np.cumsum(steps, axis=1, out=steps)
    est_energy[:, 1:] = est_energy[:, :1] + steps
    size = next_fast_len(width + 2 * radius, real=True)
    raw = irfft(rfft(e, size, axis=1) * np.conj(rfft(r, size, axis=1)), size, axis=1)[:, : 2 * radius + 1]
    denominator = np.sqrt(ref_energy[:, None] * np.maximum(est_energy, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(denominator > 0.0, raw / denominator, 0.0)
    return starts, np.clip(np.nan_to_num(rho, nan=0.0), -1.0, 1.0), ref_energy


def _fit_drift(m: PairMeasurements, starts: list[int], rho: np.ndarray, ref_energy: np.ndarray, width: int,
               radius: int) -> None:
    """Each window's peak into m.lag_by_window; from the counted ones, the drift line, whether it is
    monotone, and the SNR gained by local lags."""
    sr, lag = m.sample_rate, int(m.lag_samples)
    shifts = np.arange(-radius, radius + 1)
    peaks = np.argmax(np.abs(rho), axis=1)
    times, lags, correlations, errors_global, errors_local = [], [], [], [], []
    for start, row, index, energy in zip(starts, rho, peaks, ref_energy):
        index = int(index)
        local = float(row[index])
        fraction = M.fractional_lag(shifts, row, index) if 0 < index < 2 * radius else 0.0
        centre_s = (start + width / 2.0) / sr
        counted = abs(local) >= DRIFT_MIN_CORRELATION and 0 < index < 2 * radius
        m.lag_by_window.append([centre_s, float(lag + shifts[index] + fraction), local, float(counted)])
        if counted:
            times.append(centre_s)
            lags.append(lag + shifts[index] + fraction)
            correlations.append(local)
            # the error left with the optimal gain is E_ref (1 - rho^2): at the global lag, at the window's own
            errors_global.append(float(energy) * (1.0 - float(row[radius]) ** 2))
            errors_local.append(float(energy) * (1.0 - local ** 2))
    if len(times) < DRIFT_MIN_WINDOWS:
        return
    t, y = np.asarray(times), np.asarray(lags)
    centred_t = t - t.mean()
    spread = float(centred_t @ centred_t)
    # the least-squares slope, samples per second
    slope = float(centred_t @ (y - y.mean())) / spread if spread > 0.0 else 0.0
    m.lag_drift_samples = slope * float(t[-1] - t[0])
    m.lag_drift_ppm = 1e6 * slope / sr
    # a clock error or dropped samples move the lag one way; a dispersive (all-pass-like) output
    # moves each window's peak by its own content, back and forth. One window may stand out of line:
    # the one that straddles the point where samples were dropped peaks between the two lags.
    # The correlation's sign (polarity) stays too: an all-pass response near resonance flips it.
    direction = np.sign(m.lag_drift_samples)
    signs = np.sign(np.asarray(correlations))
    m.lag_drift_monotone = any(bool(np.all(direction * np.diff(np.delete(y, skip)) >= -1.0))
                               and np.unique(np.delete(signs, skip)).size == 1 for skip in range(y.size))
    global_error, local_error = sum(errors_global), sum(errors_local)
    if local_error > 0.0 and global_error > 0.0:
        m.snr_gain_local_lags_db = 10.0 * math.log10(global_error / local_error)
    elif global_error > 0.0:
        m.snr_gain_local_lags_db = math.inf
