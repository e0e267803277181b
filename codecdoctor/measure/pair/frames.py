"""R317 frame-rate artifacts: residual energy locked to a codec's frame grid."""
from __future__ import annotations

import math

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot
from codecdoctor.measure.pair.measurements import PairMeasurements
from codecdoctor.measure.pair.sources import WindowView
from codecdoctor.measure.pair.sums import Quadratic

# R317's frame-locking measurements fold the residual at candidate frame periods, so they need the
# residual itself: a pair longer than this is measured on the aligned window of this length in its
# middle (a codec's frame grid is the same all through a file; a minute holds 3000 frames at 50 Hz).
FRAME_LOCKING_SECONDS = 60.0

# R317: plausible codec frame rates when the hop is not given (EnCodec 75 Hz, DAC 86 Hz, SoundStream
# 50-75 Hz, Mimi 12.5 Hz, SNAC 12-47 Hz, WavTokenizer 40-75 Hz): every integer hop with a frame
# rate in this range is tried.
FRAME_RATE_RANGE_HZ = (10.0, 200.0)
# The residual's energy envelope is pooled to about this rate before its modulation spectrum is
# taken: it keeps hop-rate harmonics up to 1 kHz (the fifth of a 200 Hz frame rate).
ENVELOPE_RATE_HZ = 4000.0
# R317 needs the hop-rate harmonics 10 dB (10x) above the modulation continuum on average: on
# healthy, noisy, band-limited and gain-ridden speech pairs the best of the ~1500 candidate rates
# reached 6.3 dB (a Welch estimate's scatter maximised over candidates).
FRAME_LINE_MIN_DB = 10.0
# Beyond this SNR (after every correction) the residual is float rounding of an exact copy.
SNR_EXACT_DB = 150.0


def _line_table_db(freqs: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Per bin: the line power (largest bin within one bin) over the continuum (median of the bins
    4 to 20 bins away on both sides), in dB; 0 where undefined or above the highest harmonic
    `_line_excess_db` reads. One table serves every candidate frame rate."""
    table = np.zeros(power.size)
    if power.size < 48:
        return table
    from numpy.lib.stride_tricks import sliding_window_view

    df = float(freqs[1] - freqs[0])
    reach = min(power.size, int(math.ceil(_harmonic_top_hz(freqs) / df)) + 2) if df > 0 else power.size
    padded = np.pad(power, 21, mode="edge")[: reach + 42]
    windows = sliding_window_view(padded, 43)          # bins b-21 .. b+21 around each bin b < reach
    line = windows[:, 20:23].max(axis=1)
    # each row's median of 34 bins; sorting short rows is 4x faster than np.median's partition
    ordered = np.sort(np.concatenate([windows[:, 1:18], windows[:, 25:42]], axis=1), axis=1)
    continuum = (ordered[:, 16] + ordered[:, 17]) / 2.0
    valid = (continuum > 0.0) & (line > 0.0)
    table[:reach][valid] = 10.0 * np.log10(line[valid] / continuum[valid])
    return table


def _harmonic_top_hz(freqs: np.ndarray) -> float:
    """The highest frequency a hop-rate harmonic is read at: 1 kHz, or 0.8 of the top bin."""
    return min(1000.0, 0.8 * float(freqs[-1]))


def _line_excess_db(freqs: np.ndarray, table: np.ndarray, frame_rates: np.ndarray, *,
                    harmonics: int = 8) -> np.ndarray:
    """Mean over the hop-rate harmonics (up to 1 kHz, at most `harmonics`) of the line-over-continuum
    table, for each frame rate."""
    rates = np.atleast_1d(np.asarray(frame_rates, dtype=np.float64))
    if freqs.size < 48:
        return np.zeros(rates.size)
    df = float(freqs[1] - freqs[0])
    top = _harmonic_top_hz(freqs)
    k = np.arange(1, harmonics + 1)[None, :]
    harmonic_hz = rates[:, None] * k
    inside = harmonic_hz <= top
    bins = np.clip(np.round(harmonic_hz / df).astype(int), 0, table.size - 1)
    values = np.where(inside, table[bins], 0.0)
    counts = inside.sum(axis=1)
    return np.where(counts > 0, values.sum(axis=1) / np.maximum(counts, 1), 0.0)


def _search_hop(freqs: np.ndarray, table: np.ndarray, sample_rate: int, samples: int) -> int:
    """The integer hop whose frame rate's harmonics stand highest above the modulation continuum,
    among every hop with a frame rate in FRAME_RATE_RANGE_HZ (0 when none fits the signal). A
    pattern repeating every h samples also has lines at every harmonic of sr/(h/2), so the best
    score alone cannot tell h from h/2: the hop is multiplied by 2, 3, 5 or 7 while the lower
    rate's own harmonics (those not shared with the higher rate) stand at least half as high as the
    best score, 3 dB or more."""
    lo = max(2, int(math.ceil(sample_rate / FRAME_RATE_RANGE_HZ[1])))
    hi = min(int(sample_rate / FRAME_RATE_RANGE_HZ[0]), samples // 8)
    hops = np.arange(lo, hi + 1)
    if hops.size == 0:
        return 0
    scores = _line_excess_db(freqs, table, sample_rate / hops)
    best = int(hops[int(np.argmax(scores))])
    target = max(3.0, 0.5 * float(scores.max()))
    for factor in (2, 3, 5, 7):
        keep = [k for k in range(1, 10) if k % factor]
        while factor * best <= hi:
            rate = sample_rate / (factor * best)
            harmonic_hz = np.array([rate * k for k in keep if rate * k <= _harmonic_top_hz(freqs)])
            lines = _line_excess_db(freqs, table, harmonic_hz, harmonics=1) if harmonic_hz.size else harmonic_hz
            if not lines.size or float(np.mean(lines)) < target:
                break
            best *= factor
    return best


def _normalised_energy(energy: np.ndarray, window: int) -> np.ndarray:
    """Energy over its moving average across `window` samples: speech's syllable-rate level swings
    (tens of dB) are divided out, a pattern that repeats within a frame is kept."""
    n = energy.size
    window = max(1, min(int(window), n))
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    # sample i averages [i - half, i - half + window) cut to the signal
    lo = np.clip(np.arange(n) - window // 2, 0, n)
    hi = np.clip(np.arange(n) - window // 2 + window, 0, n)
    local = (cumulative[hi] - cumulative[lo]) / (hi - lo)
    floor = 1e-6 * float(energy.mean()) if n else 0.0
    return energy / np.maximum(local, max(floor, 1e-300))


def _locked_share(energy: np.ndarray, period: int) -> float:
    """Lower bound on the share of `energy` that repeats with every `period` samples.

    The energy, normalised by its moving average over four periods, is folded at `period` (the
    mean over frames at each phase: synchronous averaging, a comb filter at the frame rate and its
    harmonics). The same folding after rotating each frame by a random offset (seeded) keeps every
    value but destroys any alignment with the grid: its largest phase bin is the chance level. The
    share counts, over the phases that stand above that level, their excess over the median phase."""
    frames = energy.size // period
    if frames < 8 or period < 2:
        return 0.0
    units = _normalised_energy(energy, 4 * period)[: frames * period].reshape(frames, period)
    profile = units.mean(axis=0)
    rng = np.random.default_rng(period)
    columns = (np.arange(period)[None, :] + rng.integers(0, period, frames)[:, None]) % period
    chance = np.take_along_axis(units, columns, axis=1).mean(axis=0)
    total = float(profile.sum())
    if total <= 0.0:
        return 0.0
    above = profile > float(chance.max())
    return float(np.sum(profile[above] - np.median(profile)) / total)


# A line is at the pitch when it is within 3% (half a semitone) of the voiced frames' F0 range, or
# one modulation-spectrum bin, whichever is wider.
PITCH_TOLERANCE = 0.03


def _pitch_multiple(freqs: np.ndarray, table: np.ndarray, rate: float, low_hz: float, high_hz: float) -> int:
    """The smallest m (1-8) with m × `rate` inside [low_hz, high_hz] (widened by PITCH_TOLERANCE or
    a bin) whose other harmonics of `rate` (k not a multiple of m, up to 1 kHz) carry no line
    (mean excess below FRAME_LINE_MIN_DB): then every line is a harmonic of the voice's pitch. 0
    when there is none."""
    slack = max(PITCH_TOLERANCE * high_hz, float(freqs[1] - freqs[0]))
    top = _harmonic_top_hz(freqs)
    for multiple in range(1, 9):
        if not low_hz - slack <= multiple * rate <= high_hz + slack:
            continue
        others = np.array([k * rate for k in range(1, 9) if k % multiple and k * rate <= top])
        if not others.size or float(np.mean(_line_excess_db(freqs, table, others, harmonics=1))) < FRAME_LINE_MIN_DB:
            return multiple
    return 0


def frame_locking(m: PairMeasurements, residual: np.ndarray, ref_energy: float, hop: int | None,
                  reference: np.ndarray | None = None) -> None:
    """R317's measurements from the residual after every correction; see the R317 check's doc.
    `reference`: the aligned reference over the same samples, for its pitch range when the hop is
    unknown."""
    from codecdoctor.measure.spectral import welch_density

    sr = m.sample_rate
    if residual.size < 8 * max(hop or 0, int(sr / FRAME_RATE_RANGE_HZ[1])):
        return
    scale = max(float(residual.max()), -float(residual.min())) if residual.size else 0.0
    if not scale > 0.0:
        return
    energy = np.divide(residual, scale)
    np.square(energy, out=energy)
    pool = max(1, int(round(sr / ENVELOPE_RATE_HZ)))
    usable = energy.size // pool * pool
    envelope = energy[:usable].reshape(-1, pool) @ np.ones(pool)   # numpy's sum over a short axis is slow
    # Normalised over 50 ms: the syllable-rate swings (< 20 Hz) go, frame-rate lines (>= 10 Hz
    # fundamentals, harmonics to 1 kHz) stay, against a flat continuum.
    envelope = _normalised_energy(envelope, int(0.05 * sr / pool))
    # its Welch power spectrum in 1 s segments (1 Hz bins)
    freqs, power = welch_density(envelope - envelope.mean(), sr / pool,
                                 int(min(envelope.size, 2 ** round(math.log2(max(sr / pool, 16.0))))))
    table = _line_table_db(freqs, power)
    if hop:
        chosen = int(hop)
    else:
        chosen = _search_hop(freqs, table, sr, residual.size)
        if chosen == 0:
            return
        if float(_line_excess_db(freqs, table, np.array([sr / chosen]))[0]) >= FRAME_LINE_MIN_DB:
            # The grid must be exact to fold on. A 1 Hz bin at the 4th harmonic leaves
            # h^2 / (4 sr) samples of doubt (12 at a hop of 441 at 16 kHz): try them all.
            doubt = int(math.ceil(chosen * chosen * float(freqs[1] - freqs[0]) / (4.0 * sr))) + 1
            shares = {h: _locked_share(energy, h) for h in range(max(2, chosen - doubt), chosen + doubt + 1)}
            chosen = max(shares, key=lambda h: shares[h])
    m.frame_hop_samples = int(chosen)
    m.frame_hop_known = bool(hop)
    m.frame_rate_hz = sr / chosen
    m.frame_line_excess_db = float(_line_excess_db(freqs, table, np.array([sr / chosen]))[0])
    if m.frame_line_excess_db < FRAME_LINE_MIN_DB:   # no lines to confirm by folding (R317 reads none)
        return
    if not hop and reference is not None:   # the hop unknown: the reference's pitch range; are the lines its harmonics?
        from codecdoctor.measure.pitch import pitch_range

        voice = pitch_range(reference, sr)
        if voice is not None:
            m.ref_pitch_low_hz, m.ref_pitch_high_hz = voice.low_hz, voice.high_hz
            m.frame_pitch_multiple = _pitch_multiple(freqs, table, m.frame_rate_hz, voice.low_hz, voice.high_hz)
    m.frame_locked_fraction = _locked_share(energy, chosen)
    residual_energy = float(energy.sum()) * scale * scale
    if m.frame_locked_fraction > 0.0 and ref_energy > 0.0:
        m.frame_locked_ceiling_db = M.energy_ratio_db(ref_energy, m.frame_locked_fraction * residual_energy)


def frame_locking_excerpt(m: PairMeasurements, ref: WindowView, est: WindowView, qa: Quadratic, gain: float,
                           hop_samples: int | None, sample_rate: int) -> None:
    """R317's measurements (frame_locking) on the residual after every correction, over the
    whole aligned pair when it is at most FRAME_LOCKING_SECONDS long, else over that much of its middle."""
    if not m.what_if.get("all", -math.inf) < SNR_EXACT_DB:  # an exact copy's residual is float rounding
        return
    window = int(FRAME_LOCKING_SECONDS * sample_rate)
    start = 0 if ref.length <= window else (ref.length - window) // 2
    ra = ref.read(start, start + window)
    ea = est.read(start, start + window)
    if ra.size == 0:
        return
    # ra - (mean_r + gain (ea - mean_e)), the same operations in one buffer
    residual = np.subtract(ea, qa.mean_e)
    residual *= gain
    residual += qa.mean_r
    np.subtract(ra, residual, out=residual)
    unit = m.ref_peak or 1.0   # energies of 1e300-sized samples are summed at unit scale
    ref_energy = float(dot(ra, ra)) if unit == 1.0 else float(dot(ra / unit, ra / unit)) * unit * unit
    frame_locking(m, residual, ref_energy, hop_samples, ra)
