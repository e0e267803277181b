"""Audio-analyzer measurements of a codec: no dataset needed.

Like a bench analyzer on a black box: feed known signals, measure what comes out.
- level sweep: speech-like audio at peak levels -40 ... +0.1 dBFS; output RMS vs input RMS. A
  codec that preserves scale has slope 1 dB/dB; per-sample normalisation or an AGC gives slope ~0;
  a bounded output (tanh) compresses the top levels (saturation point = first level whose peak
  gain is 1 dB below the low-level peak gain).
- chirp and impulse: latency in samples (cross-correlation peak; impulse response peak).
- stepped sine sweep: magnitude response and -3 dB bandwidth.
- silence: idle output level (hiss, DC, tones a decoder emits from nothing).
- asymmetric pulse train: polarity (sign of the correlation at the measured latency).
- chunked decoding (codecs with encode/decode): the codes of 2 s of speech decoded in 0.5 s chunks
  and concatenated, against decoding them whole; where the difference lies (at the seams or
  everywhere).

Every stimulus is one batch through the codec, so a probe costs a few forward passes; a model
driven through its own forward gets the level sweep one level per forward, so a normalisation over
the whole batch (not per example) is measured as it treats one recording.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codecdoctor.measure.metrics import dot

SWEEP_LEVELS_DBFS = (-40.0, -36.0, -32.0, -28.0, -24.0, -20.0, -16.0, -12.0, -9.0, -6.0, -4.0, -2.0, -1.0, 0.0, 0.1)
# The slope is fitted over levels where a healthy bounded codec is still linear (tanh(x) is within
# 0.1 dB of x up to |x| ≈ 0.2, about -14 dBFS peak for speech).
LINEAR_FIT_MAX_DBFS = -12.0
# Levels whose output is within this margin of the idle (silence-in) output are left out of the
# slope fit: there the idle noise, not the codec's scaling, sets the output level.
IDLE_MARGIN_DB = 6.0
SATURATION_DROP_DB = 1.0


def _db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@dataclass
class ProbeMeasurements:
    sample_rate: int
    levels_in_dbfs: list[float] = field(default_factory=list)    # stimulus peak level
    rms_in_db: list[float] = field(default_factory=list)
    rms_out_db: list[float] = field(default_factory=list)
    peak_out: list[float] = field(default_factory=list)
    peak_gain_db: list[float] = field(default_factory=list)   # output peak / input peak per level
    level_slope_db_per_db: float | None = None
    low_level_gain_db: float | None = None
    saturation_dbfs: float | None = None          # first level whose peak gain is 1 dB below the low-level one
    max_output_peak: float | None = None
    latency_samples: int | None = None            # from the chirp (cross-correlation)
    chirp_correlation: float | None = None
    impulse_latency_samples: int | None = None    # from the impulse response peak
    impulse_response: list[float] = field(default_factory=list)  # around the impulse, for the plot
    impulse_window_start: int = 0                  # offset (samples) of impulse_response[0] vs the impulse
    sweep_freqs_hz: list[float] = field(default_factory=list)
    sweep_gain_db: list[float] = field(default_factory=list)
    passband_gain_db: float | None = None
    bandwidth_3db_hz: float | None = None
    # The same response measured on the user's audio (check-ckpt --data, `response_on_data`): the
    # output's power over the input's in a band around each sweep frequency, relative to its
    # 200-2000 Hz median (None where the data has no content), and its -3 dB bandwidth by the same rule
    data_gain_db: list[float | None] | None = None
    data_bandwidth_3db_hz: float | None = None
    data_content_top_hz: float | None = None       # the highest sweep band the data has content in
    nyquist_hz: float = 0.0
    idle_rms_dbfs: float | None = None
    level_fit_points: int = 0  # sweep levels above the idle output used for the slope
    idle_peak: float | None = None
    idle_dc: float | None = None
    polarity: int | None = None                   # +1 normal, -1 inverted, 0 undecided
    pulse_correlation: float | None = None
    nonfinite_outputs: int = 0
    # chunked vs whole decoding (C218); None when the codec has no encode/decode
    chunk_frames: int | None = None
    chunk_count: int | None = None
    chunk_seconds: float | None = None
    chunk_vs_whole_snr_db: float | None = None     # whole decode as reference, chunked as estimate
    chunk_seam_energy_fraction: float | None = None  # share of the difference within ±50 ms of a seam
    chunk_seam_time_fraction: float | None = None    # share of the time those zones cover
    notes: list[str] = field(default_factory=list)


def _run(adapter: Any, batch: np.ndarray) -> np.ndarray:
    import torch

    from codecdoctor.measure.adapters import reconstruct

    channels = int(getattr(adapter, "channels", 1) or 1)
    x = torch.as_tensor(batch, dtype=torch.float32)[:, None, :].repeat(1, channels, 1)
    out = reconstruct(adapter, x).detach().cpu().numpy()
    return out[:, 0, :].astype(np.float64)


def _speech(sample_rate: int, seconds: float) -> np.ndarray:
    from codecdoctor.measure.stimuli import speech_like

    x = np.asarray(speech_like(seconds, sample_rate, seed=7, pause_fraction=0.0), dtype=np.float64).reshape(-1)
    return x / max(np.abs(x).max(), 1e-12)


def level_sweep(adapter: Any, m: ProbeMeasurements, seconds: float = 1.0) -> None:
    base = _speech(m.sample_rate, seconds)
    gains = np.array([10 ** (level / 20.0) for level in SWEEP_LEVELS_DBFS])
    # A model's own forward (no adapter) may normalise over the whole batch, not per example: one
    # level per forward then, so the other levels cannot hide it. Adapters take the sweep as one batch.
    if getattr(adapter, "one_example_per_forward", False):
        out = np.concatenate([_run(adapter, (base * g)[None, :]) for g in gains])
    else:
        out = _run(adapter, base[None, :] * gains[:, None])
    m.nonfinite_outputs += int((~np.isfinite(out)).sum())
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    m.levels_in_dbfs = list(SWEEP_LEVELS_DBFS)
    m.rms_in_db = [_db(_rms(base * g)) for g in gains]
    m.rms_out_db = [max(_db(_rms(row)), -200.0) for row in out]
    m.peak_out = [float(np.abs(row).max()) for row in out]
    m.max_output_peak = max(m.peak_out)
    low = [i for i, level in enumerate(SWEEP_LEVELS_DBFS) if level <= LINEAR_FIT_MAX_DBFS]
    # The codec's idle output (measured first, by `silence`) adds to every output as uncorrelated
    # power; near it the output level stops following the input whatever the codec does with scale.
    # Subtract it, and fit only levels whose output stands IDLE_MARGIN_DB above it.
    idle_power = 10.0 ** (m.idle_rms_dbfs / 10.0) if m.idle_rms_dbfs is not None else 0.0
    fit = [i for i in low if m.rms_out_db[i] >= (m.idle_rms_dbfs or -200.0) + IDLE_MARGIN_DB]
    m.level_fit_points = len(fit)
    if len(fit) >= 3:
        x_in = np.array([m.rms_in_db[i] for i in fit])
        y_out = np.array([10.0 * np.log10(max(10.0 ** (m.rms_out_db[i] / 10.0) - idle_power, 1e-30)) for i in fit])
        m.level_slope_db_per_db = float(np.polyfit(x_in, y_out, 1)[0])
    gains_db = np.array(m.rms_out_db) - np.array(m.rms_in_db)
    m.low_level_gain_db = float(np.median(gains_db[low]))
    # Saturation is judged on peaks: speech's crest factor (~15 dB) hides a tanh ceiling in the RMS
    # gain (0.3 dB at +0.1 dBFS), while the peak gain drops 2.4 dB there (tanh(1.01) = 0.766).
    peak_gain_db = np.array([_db(max(p, 1e-20)) - level for p, level in zip(m.peak_out, SWEEP_LEVELS_DBFS)])
    m.peak_gain_db = [float(v) for v in peak_gain_db]
    low_peak_gain_db = float(np.median(peak_gain_db[low]))
    for level, gain_db in zip(SWEEP_LEVELS_DBFS, peak_gain_db):
        if level > LINEAR_FIT_MAX_DBFS and gain_db < low_peak_gain_db - SATURATION_DROP_DB:
            m.saturation_dbfs = float(level)
            break


def _log_chirp(sample_rate: int, seconds: float, f0: float, f1: float) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    k = math.log(f1 / f0)
    phase = 2 * math.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1.0)
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    return np.sin(phase) * fade


def latency_and_polarity(adapter: Any, m: ProbeMeasurements) -> None:
    from codecdoctor.measure.metrics import lag_and_peak

    sr = m.sample_rate
    n = sr  # 1 s stimuli
    max_lag = sr // 10  # codec latencies are a few frames; 100 ms bounds the search
    chirp = np.zeros(n)
    body = 0.5 * _log_chirp(sr, 0.6, 60.0, 0.45 * sr)
    chirp[n // 5: n // 5 + body.size] = body
    impulse = np.zeros(n)
    impulse[n // 2] = 0.5
    # Asymmetric pulse train: a tall positive half-sine (2 ms) followed by a shallow negative lobe
    # (6 ms, same area) every 50 ms: its sign is unambiguous and it has no DC.
    pulses = np.zeros(n)
    tall = np.sin(np.pi * np.arange(int(0.002 * sr)) / int(0.002 * sr)) * 0.5
    shallow = -np.sin(np.pi * np.arange(int(0.006 * sr)) / int(0.006 * sr)) * 0.5 / 3.0
    shape = np.concatenate([tall, shallow])
    for start in range(int(0.05 * sr), n - shape.size, int(0.05 * sr)):
        pulses[start:start + shape.size] += shape
    out = _run(adapter, np.stack([chirp, impulse, pulses]))
    m.nonfinite_outputs += int((~np.isfinite(out)).sum())
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    lag, corr = lag_and_peak(chirp, out[0], max_lag)
    m.latency_samples, m.chirp_correlation = int(lag), float(corr)
    response = out[1]
    window = slice(max(n // 2 - max_lag, 0), min(n // 2 + max_lag, n))
    segment = response[window]
    if np.abs(segment).max() > 0:
        m.impulse_latency_samples = int(np.argmax(np.abs(segment))) + window.start - n // 2
    plot_from = max(n // 2 - sr // 200, 0)
    m.impulse_window_start = plot_from - n // 2
    m.impulse_response = [float(v) for v in response[plot_from: plot_from + sr // 50]]
    # Polarity from the pulse train at the chirp's latency: the sign of the normalised correlation.
    from codecdoctor.measure.metrics import shift_pair

    ref_aligned, est_aligned = shift_pair(pulses, out[2], m.latency_samples)
    denominator = math.sqrt(float(dot(ref_aligned, ref_aligned)) * float(dot(est_aligned, est_aligned)))
    m.pulse_correlation = float(dot(ref_aligned, est_aligned) / denominator) if denominator > 0 else 0.0
    m.polarity = 0 if abs(m.pulse_correlation) < 0.1 else (1 if m.pulse_correlation > 0 else -1)


def sine_sweep(adapter: Any, m: ProbeMeasurements, n_freqs: int = 20, seconds: float = 0.25) -> None:
    sr = m.sample_rate
    m.nyquist_hz = sr / 2.0
    freqs = sweep_frequencies(sr, n_freqs)
    t = np.arange(int(seconds * sr)) / sr
    level = 10 ** (-12 / 20.0)  # -12 dBFS: well inside the linear range of a bounded output
    batch = np.stack([level * np.sin(2 * np.pi * f * t) for f in freqs])
    out = _run(adapter, batch)
    m.nonfinite_outputs += int((~np.isfinite(out)).sum())
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    # Steady state only: skip the first and last quarter (codec warm-up and padding edges), and
    # measure the component at the stimulus frequency (not distortion or noise) by projection.
    core = slice(t.size // 4, 3 * t.size // 4)
    gains = []
    for f, row in zip(freqs, out):
        tc = t[core]
        basis = np.exp(-2j * np.pi * f * tc)
        amplitude = 2.0 * abs(dot(row[core], basis)) / tc.size
        gains.append(max(_db(amplitude / level), -120.0))
    m.sweep_freqs_hz = [float(f) for f in freqs]
    m.sweep_gain_db = [float(g) for g in gains]
    m.passband_gain_db, m.bandwidth_3db_hz = passband_and_bandwidth(freqs, gains, sr)


def sweep_frequencies(sample_rate: int, n_freqs: int = 20) -> np.ndarray:
    """The stepped sine sweep's frequencies: log-spaced from 60 Hz to 0.45 fs."""
    return np.geomspace(60.0, 0.45 * sample_rate, n_freqs)


def passband_and_bandwidth(freqs: Any, gains: list[float | None], sample_rate: int) -> tuple[float, float | None]:
    """(passband gain, -3 dB bandwidth) of a response at `freqs`: the median gain over 200-2000 Hz,
    and the highest frequency from 200 Hz up before the gain first falls 3 dB below it (None where
    a gain is unknown ends the search: nothing is claimed beyond what was measured)."""
    known = [(float(f), g) for f, g in zip(freqs, gains) if g is not None]
    band = [g for f, g in known if 200.0 <= f <= min(2000.0, 0.4 * sample_rate)]
    passband = float(np.median(band)) if band else float(np.median([g for _, g in known]))
    bandwidth = None
    for f, g in zip(freqs, gains):
        if f < 200.0:
            continue
        if g is None or g < passband - 3.0:
            break
        bandwidth = float(f)
    return passband, bandwidth


# A band of the data's long-term spectrum more than this far below its strongest band is not judged:
# the codec's own noise, not its response, sets the output's power there (a 10 dB SNR codec's error
# is 10 dB below the signal on average, and speech's top octave sits 40-60 dB below its formants).
DATA_BAND_RANGE_DB = 50.0


def response_on_data(m: ProbeMeasurements, refs: list[np.ndarray], ests: list[np.ndarray]) -> None:
    """The codec's magnitude response on real audio, at the sweep's frequencies: in the band between
    the geometric midpoints around each frequency, 10 log10 of the output's power over the input's,
    summed over every crop (long-term spectra, metrics.spectral_summary), relative to the passband
    median; the -3 dB bandwidth by the sine sweep's rule (`passband_and_bandwidth`)."""
    from codecdoctor.measure.metrics import spectral_summary

    sr = m.sample_rate
    freqs = np.asarray(m.sweep_freqs_hz) if m.sweep_freqs_hz else sweep_frequencies(sr)
    power_r = power_e = None
    for ref, est in zip(refs, ests):
        (_, psd_r, scale_r), (_, psd_e, scale_e) = (spectral_summary(x, sr) for x in (ref, est))
        samples = max(1, ref.size)   # psd is a mean over frames: weight each crop by its length
        power_r = (0.0 if power_r is None else power_r) + psd_r * scale_r ** 2 * samples
        power_e = (0.0 if power_e is None else power_e) + psd_e * scale_e ** 2 * samples
    if power_r is None:
        return
    bins = np.linspace(0.0, sr / 2.0, power_r.size)
    edges = np.sqrt(freqs[1:] * freqs[:-1])
    edges = np.concatenate([[freqs[0] ** 2 / edges[0]], edges, [min(sr / 2.0, freqs[-1] ** 2 / edges[-1])]])
    band = [(bins >= lo) & (bins < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    ref_power = np.array([power_r[b].sum() for b in band])
    strongest = float(ref_power.max())
    if not strongest > 0.0:
        return
    raw: list[float | None] = []
    for b, pr in zip(band, ref_power):
        content = pr > 0.0 and pr >= strongest * 10.0 ** (-DATA_BAND_RANGE_DB / 10.0)
        raw.append(10.0 * math.log10(max(float(power_e[b].sum()), 1e-300) / pr) if content else None)
    passband, m.data_bandwidth_3db_hz = passband_and_bandwidth(freqs, raw, sr)
    m.data_gain_db = [None if g is None else g - passband for g in raw]
    m.data_content_top_hz = max((float(f) for f, g in zip(freqs, raw) if g is not None), default=None)


def silence(adapter: Any, m: ProbeMeasurements, seconds: float = 1.0) -> None:
    out = _run(adapter, np.zeros((1, int(seconds * m.sample_rate))))[0]
    m.nonfinite_outputs += int((~np.isfinite(out)).sum())
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    m.idle_rms_dbfs = max(_db(_rms(out)), -200.0)
    m.idle_peak = float(np.abs(out).max())
    m.idle_dc = float(out.mean())


CHUNK_SECONDS = 0.5
SEAM_HALF_WIDTH_SECONDS = 0.05  # a conv decoder's context is a few to tens of ms


def _decoded(adapter: Any, codes) -> np.ndarray:
    import torch

    out = torch.as_tensor(adapter.decode(codes)).detach().float().cpu()
    out = out[0, 0] if out.dim() == 3 else out[0]
    return np.nan_to_num(out.numpy().astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def chunked_decoding(adapter: Any, m: ProbeMeasurements, seconds: float = 2.0) -> None:
    """Decode the codes of `seconds` of speech in CHUNK_SECONDS chunks and whole; compare."""
    import torch

    if not (hasattr(adapter, "encode") and hasattr(adapter, "decode")):
        return
    sr = m.sample_rate
    channels = int(getattr(adapter, "channels", 1) or 1)
    x = 0.5 * _speech(sr, seconds)
    audio = torch.as_tensor(x, dtype=torch.float32)[None, None, :].repeat(1, channels, 1)
    codes = torch.as_tensor(adapter.encode(audio))
    if codes.dim() != 3 or codes.shape[-1] < 4:
        return
    frames = codes.shape[-1]
    whole = _decoded(adapter, codes)
    hop = max(1, round(whole.size / frames))
    chunk_frames = max(1, min(round(CHUNK_SECONDS * sr / hop), frames // 2))
    pieces = [_decoded(adapter, codes[..., start:start + chunk_frames]) for start in range(0, frames, chunk_frames)]
    chunked = np.concatenate(pieces)
    n = min(whole.size, chunked.size)
    difference = chunked[:n] - whole[:n]
    m.chunk_frames, m.chunk_count = int(chunk_frames), len(pieces)
    m.chunk_seconds = chunk_frames * hop / sr
    signal_energy = float(np.sum(whole[:n] ** 2))
    error_energy = float(np.sum(difference ** 2))
    if error_energy <= 1e-25 * max(signal_energy, 1e-30):
        m.chunk_vs_whole_snr_db = math.inf
    elif signal_energy > 0:
        m.chunk_vs_whole_snr_db = 10.0 * math.log10(signal_energy / error_energy)
    # where the difference lies: within ±50 ms of each seam (the decoder's context cut off there)
    seams = np.cumsum([piece.size for piece in pieces[:-1]])
    zone = np.zeros(n, dtype=bool)
    half = max(1, int(SEAM_HALF_WIDTH_SECONDS * sr))
    for seam in seams:
        zone[max(0, seam - half): min(n, seam + half)] = True
    m.chunk_seam_time_fraction = float(zone.mean()) if n else None
    m.chunk_seam_energy_fraction = float(np.sum(difference[zone] ** 2) / error_energy) if error_energy > 0 else None


def measure_probes(adapter: Any) -> ProbeMeasurements:
    import torch

    m = ProbeMeasurements(sample_rate=int(adapter.sample_rate))
    with torch.inference_mode():
        silence(adapter, m)  # first: the level sweep's slope fit discounts the idle output
        level_sweep(adapter, m)
        latency_and_polarity(adapter, m)
        sine_sweep(adapter, m)
        try:
            chunked_decoding(adapter, m)
        except Exception as exc:  # noqa: BLE001 - a decoder that needs a fixed length: say so, keep the rest
            m.notes.append(f"chunked decoding not measured ({type(exc).__name__}: {str(exc)[:120]})")
    return m


