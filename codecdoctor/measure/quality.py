"""The field's quality metrics for a (reference, estimate) pair: STOI, ESTOI, PESQ (wide and narrow
band) and a multi-scale mel distance whose configuration travels with the number.

Optional packages (extra `[quality]`): `pystoi` (STOI, ESTOI) and `pesq` (ITU-T P.862 / P.862.2).
When one is missing its metrics are None with a note saying how to install it; nothing here
raises on a missing package, a silent input or a rate PESQ cannot take.

Two entry points, one computation:

- `quality_metrics(ref, est, sample_rate, lag_samples=0)` scores a whole pair (any array-likes,
  time on the last axis; leading axes such as channels are averaged: one listener's downmix) and
  returns a `QualityResult`; `lag_samples` is undone first (est[n + lag] pairs with ref[n], the
  lag `measure_pair` reports), as codec papers score a reconstruction with its delay removed.
- `quality_from_sources(ref_src, est_src, sample_rate, lag_samples=0)` is the same on two
  sources read block by block (`frames`, `read(start, stop) -> (channels, n)`: the sources of
  `measure.pair`), in bounded memory.
- `QualityAccumulator(sample_rate, total_samples=n)` is the same thing block by block, for a
  streaming compare: `update(ref_block, est_block)` with blocks of any size (both sides already
  aligned and of equal length; the caller undoes the lag; `n` is the aligned length, so the scored
  segments can be spread over it), then `result()`. `quality_metrics` is exactly an
  accumulator fed the whole (aligned) pair, so the two agree for the same audio (to float
  rounding, ~1e-15: the same segments, buffered in differently aligned arrays).
  `combine(other)` merges two accumulators of consecutive stretches (returns a new one).

Segments. PESQ and STOI are defined on utterances of seconds, not hours, so the signal is cut
into fixed segments of `segment_seconds` (default 10 s, within the 8-30 s these metrics were
validated on) from its start; the last segment holds between 0.5 and 1.5 segment lengths (no
too-short tail; `segment_bounds`). A pair shorter than one segment is one segment. At most
`max_seconds` of audio (default 60 s: six segments) is scored: a longer pair is scored on that
many segments evenly spread over it (`chosen_segments`; first and last included), with a note
saying so, which bounds the cost of an hour-long pair to that of a minute. Each scored segment is
weighted by its reference energy (sum ref^2): loud speech counts, near-silence barely does. A
segment PESQ cannot score (no utterance detected, too short) or STOI cannot (fewer than 30 frames
of speech once silent frames are dropped) is left out of that metric's mean and named in a note.
The accumulator buffers at most 1.5 segments; it needs `total_samples` to spread the scored
segments (without it every segment is scored).

Preconditions. PESQ runs at 8 or 16 kHz only: wide band (P.862.2) needs 16 kHz, narrow band
(P.862) 8 or 16 kHz. Other rates are resampled with the diagnostics' one resampler
(`measure.audio.reader.resample`) to 16 kHz when the rate is above 16 kHz, to 8 kHz (narrow band
only) when it is between 8 and 16 kHz, and PESQ is skipped below 8 kHz; a note says which. STOI
resamples to 10 kHz internally (pystoi), any rate works.

Multi-scale mel distance: for each (window, n_mels) scale of `MULTISCALE_MEL` (descript-audio-
codec's mel loss configuration: windows 32-2048 samples, hop = window/4, 5-320 mels), the mean
over frames and bands of |log10 max(mel(ref), 1e-5) - log10 max(mel(est), 1e-5)| on mel-filtered
STFT magnitudes (power 1), summed over scales (DAC's loss sums them). The filterbank is this
project's (`measure.spectral`: HTK mel scale, Slaney area norm), so values are close to, not
identical with, DAC's (librosa's Slaney mel scale); `MULTISCALE_MEL_CONFIG` states all of it and
is recorded next to each number. Per segment it is accumulated as sums of |diff| and counts of
bins, so segments combine exactly.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codecdoctor.measure.metrics import as_signal, dot
from codecdoctor.measure.spectral import mel_filterbank, window_array

DEFAULT_SEGMENT_SECONDS = 10.0
# At most this much audio of a pair is scored (segments evenly spread over a longer pair): PESQ and
# STOI run at about 10-40x real time on one core, so an hour of audio would take minutes.
DEFAULT_MAX_SECONDS = 60.0
# (window samples, n_mels) per scale, DAC's MelSpectrogramLoss defaults.
MULTISCALE_MEL = ((32, 5), (64, 10), (128, 20), (256, 40), (512, 80), (1024, 160), (2048, 320))
MEL_CLAMP = 1e-5
MULTISCALE_MEL_CONFIG: dict[str, Any] = {
    "scales": [{"window": w, "hop": w // 4, "n_mels": n} for w, n in MULTISCALE_MEL],
    "window": "hann", "fmin_hz": 0.0, "fmax_hz": "nyquist", "mel_scale": "htk", "mel_norm": "slaney",
    "magnitude_power": 1.0, "log": "log10", "clamp": MEL_CLAMP, "distance": "mean |diff| per scale, summed over scales",
    "reference": "descript-audio-codec MelSpectrogramLoss defaults (its filterbank uses librosa's Slaney mel scale)",
}
# pystoi needs 30 frames (384 ms of intermediate-intelligibility context) of speech.
STOI_MIN_SECONDS = 0.5
# PESQ's own minimum is 1/4 s of audio; an utterance needs more.
PESQ_MIN_SECONDS = 0.5

PYSTOI_MISSING = "STOI/ESTOI not computed: the optional package pystoi is not installed (pip install 'codecdoctor[quality]')"
PESQ_MISSING = "PESQ not computed: the optional package pesq is not installed (pip install 'codecdoctor[quality]')"


@dataclass
class QualityResult:
    """Energy-weighted means over the scored segments; None where not computed (see notes)."""

    stoi: float | None = None
    estoi: float | None = None
    pesq_wb: float | None = None
    pesq_nb: float | None = None
    multiscale_mel_distance: float | None = None
    multiscale_mel_config: dict[str, Any] = field(default_factory=dict)
    segments: int = 0
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    pesq_rate_hz: int | None = None
    notes: list[str] = field(default_factory=list)

    def apply_to(self, m: Any) -> None:
        """Copy into a PairMeasurements (its stoi ... quality_notes fields)."""
        m.stoi, m.estoi, m.pesq_wb, m.pesq_nb = self.stoi, self.estoi, self.pesq_wb, self.pesq_nb
        m.multiscale_mel_distance = self.multiscale_mel_distance
        m.multiscale_mel_config = dict(self.multiscale_mel_config)
        m.quality_notes = list(self.notes)


def _import_pystoi():
    try:
        from pystoi import stoi
    except ImportError:
        return None
    return stoi


def installed(package: str) -> bool:
    """Whether an optional package can be imported, without importing it (pystoi's import loads
    scipy.signal, longer than scoring a short pair)."""
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _import_pesq():
    try:
        import pesq
    except ImportError:
        return None
    return pesq


def pesq_rates(sample_rate: int) -> tuple[int | None, bool, str | None]:
    """(rate PESQ runs at, whether wide band is possible, note) for audio at `sample_rate`."""
    if sample_rate == 16000:
        return 16000, True, None
    if sample_rate == 8000:
        return 8000, False, "PESQ wide band needs 16 kHz: the audio is 8 kHz, narrow band only"
    if sample_rate > 16000:
        return 16000, True, f"PESQ runs at 8/16 kHz only: resampled from {sample_rate} Hz to 16000 Hz"
    if sample_rate > 8000:
        return 8000, False, (f"PESQ runs at 8/16 kHz only: resampled from {sample_rate} Hz to 8000 Hz "
                             "(narrow band; wide band needs 16 kHz content)")
    return None, False, f"PESQ not computed: it needs at least 8 kHz audio, this is {sample_rate} Hz"


def segment_bounds(total_samples: int, segment_samples: int) -> list[tuple[int, int]]:
    """(start, stop) of each segment: whole segments from the start, the last one holding between
    0.5 and 1.5 segment lengths (all of a pair shorter than 1.5 segments)."""
    if total_samples <= 0:
        return []
    count = max(1, int(math.floor(total_samples / segment_samples + 0.5)))
    bounds = [(k * segment_samples, (k + 1) * segment_samples) for k in range(count - 1)]
    return bounds + [((count - 1) * segment_samples, total_samples)]


def max_segments(segment_seconds: float, max_seconds: float | None) -> int | None:
    if max_seconds is None:
        return None
    return max(1, int(max_seconds // segment_seconds))


def chosen_segments(count: int, limit: int | None) -> set[int]:
    """The segment indices scored: all of them, or `limit` spread evenly (first and last included)."""
    if limit is None or count <= limit:
        return set(range(count))
    return {int(round(i)) for i in np.linspace(0, count - 1, limit)}


@dataclass
class _Sums:
    """Energy-weighted sums of one metric over segments."""

    weighted: float = 0.0
    weight: float = 0.0
    segments: int = 0

    def add(self, value: float, weight: float) -> None:
        self.weighted += value * weight
        self.weight += weight
        self.segments += 1

    def combine(self, other: "_Sums") -> "_Sums":
        return _Sums(self.weighted + other.weighted, self.weight + other.weight, self.segments + other.segments)

    def mean(self) -> float | None:
        if self.segments == 0:
            return None
        if self.weight <= 0.0:
            return None
        return self.weighted / self.weight


class QualityAccumulator:
    """STOI / ESTOI / PESQ / multi-scale mel distance, block by block (see the module doc)."""

    def __init__(self, sample_rate: int, *, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                 total_samples: int | None = None, max_seconds: float | None = DEFAULT_MAX_SECONDS,
                 stoi: bool = True, pesq: bool = True, mel: bool = True) -> None:
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.segment_samples = max(1, int(round(self.segment_seconds * self.sample_rate)))
        self.max_seconds = max_seconds
        self.total_samples = total_samples
        self.planned = len(segment_bounds(int(total_samples), self.segment_samples)) if total_samples else None
        self.chosen = (chosen_segments(self.planned, max_segments(self.segment_seconds, max_seconds))
                       if self.planned else None)
        self.want_stoi, self.want_pesq, self.want_mel = stoi, pesq, mel
        self._ref: list[np.ndarray] = []
        self._est: list[np.ndarray] = []
        self._buffered = 0
        self.sums = {name: _Sums() for name in ("stoi", "estoi", "pesq_wb", "pesq_nb")}
        self.mel_abs_sum = np.zeros(len(MULTISCALE_MEL))
        self.mel_bins = np.zeros(len(MULTISCALE_MEL))
        self.segments = 0   # segments seen
        self.scored = 0     # segments scored (all, or the chosen ones)
        self.notes: list[str] = []
        self._stoi = _import_pystoi() if stoi else None
        self._pesq = _import_pesq() if pesq else None
        self.pesq_rate, self.pesq_wide, rate_note = pesq_rates(self.sample_rate)
        if stoi and self._stoi is None:
            self.notes.append(PYSTOI_MISSING)
        if pesq and self._pesq is None:
            self.notes.append(PESQ_MISSING)
        elif pesq and rate_note:
            self.notes.append(rate_note)

    # -- streaming -----------------------------------------------------------------------------
    def update(self, ref_block: Any, est_block: Any) -> None:
        """Add aligned, equally long blocks (float; non-finite samples count as 0)."""
        r = np.nan_to_num(as_signal(ref_block).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        e = np.nan_to_num(as_signal(est_block).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        n = min(r.size, e.size)
        if n == 0:
            return
        self._ref.append(r[:n])
        self._est.append(e[:n])
        self._buffered += n
        limit = self.segment_samples + self.segment_samples // 2
        while self._buffered >= limit:
            ref_all, est_all = np.concatenate(self._ref), np.concatenate(self._est)
            self._score(ref_all[: self.segment_samples], est_all[: self.segment_samples])
            self._ref, self._est = [ref_all[self.segment_samples:]], [est_all[self.segment_samples:]]
            self._buffered = int(self._ref[0].size)

    def combine(self, other: "QualityAccumulator") -> "QualityAccumulator":
        """A new accumulator holding both (other's audio follows self's; buffered tails are scored
        as their own segments, so combine after `flush`-like ends of stretches)."""
        out = QualityAccumulator(self.sample_rate, segment_seconds=self.segment_seconds, max_seconds=None,
                                 stoi=self.want_stoi, pesq=self.want_pesq, mel=self.want_mel)
        for part in (self, other):
            part._flush()
        out.sums = {k: self.sums[k].combine(other.sums[k]) for k in self.sums}
        out.mel_abs_sum = self.mel_abs_sum + other.mel_abs_sum
        out.mel_bins = self.mel_bins + other.mel_bins
        out.segments = self.segments + other.segments
        out.scored = self.scored + other.scored
        out.notes = list(dict.fromkeys(self.notes + other.notes))
        return out

    def result(self) -> QualityResult:
        self._flush()
        res = QualityResult(segments=self.scored, segment_seconds=self.segment_seconds,
                            pesq_rate_hz=self.pesq_rate if self._pesq is not None else None,
                            notes=list(dict.fromkeys(self.notes)))
        res.stoi, res.estoi = self.sums["stoi"].mean(), self.sums["estoi"].mean()
        res.pesq_wb, res.pesq_nb = self.sums["pesq_wb"].mean(), self.sums["pesq_nb"].mean()
        if self.want_mel and self.mel_bins.sum() > 0:
            per_scale = np.where(self.mel_bins > 0, self.mel_abs_sum / np.maximum(self.mel_bins, 1), 0.0)
            res.multiscale_mel_distance = float(per_scale.sum())
            res.multiscale_mel_config = dict(MULTISCALE_MEL_CONFIG)
        if self.scored == 0:
            res.notes.append("quality metrics not computed: nothing to compare")
        elif self.scored < self.segments:
            res.notes.append(f"quality metrics on {self.scored} of {self.segments} segments of {self.segment_seconds:g} s "
                             f"spread evenly over the pair ({self.scored * self.segment_seconds:g} s of "
                             f"{self.segments * self.segment_seconds:g} s; energy-weighted mean)")
        elif self.scored > 1:
            res.notes.append(f"quality metrics: energy-weighted mean over {self.scored} segments of "
                             f"{self.segment_seconds:g} s")
        return res

    # -- one segment ----------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._buffered:
            ref_all, est_all = np.concatenate(self._ref), np.concatenate(self._est)
            self._score(ref_all, est_all)
        self._ref, self._est, self._buffered = [], [], 0

    def _score(self, ref: np.ndarray, est: np.ndarray) -> None:
        index = self.segments
        self.segments += 1
        if self.chosen is not None and index not in self.chosen:
            return
        self.scored += 1
        several = index > 0 or ref.size > self.segment_samples
        where = f"segment {index + 1} (from {index * self.segment_seconds:g} s)" if several else "the pair"
        scale = float(max(np.max(np.abs(ref)), 1e-300))
        weight = float(dot(ref / scale, ref / scale)) * scale * scale
        if self.want_mel:
            self._score_mel(ref, est)
        seconds = ref.size / self.sample_rate
        if weight <= 0.0:
            self.notes.append(f"STOI/PESQ skip {where}: the reference is silent")
            return
        if self._stoi is not None:
            if seconds < STOI_MIN_SECONDS:
                self.notes.append(f"STOI not computed on {where}: {seconds:.2f} s is shorter than {STOI_MIN_SECONDS:g} s")
            else:
                for name, extended in (("stoi", False), ("estoi", True)):
                    value = self._run_stoi(ref, est, extended, where)
                    if value is not None:
                        self.sums[name].add(value, weight)
        if self._pesq is not None and self.pesq_rate is not None:
            if seconds < PESQ_MIN_SECONDS:
                self.notes.append(f"PESQ not computed on {where}: {seconds:.2f} s is shorter than {PESQ_MIN_SECONDS:g} s")
            else:
                self._run_pesq(ref, est, weight, where)

    def _run_stoi(self, ref: np.ndarray, est: np.ndarray, extended: bool, where: str) -> float | None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = float(self._stoi(ref, est, self.sample_rate, extended=extended))
        # pystoi returns 1e-5 with a warning ("Not enough STFT frames ...") when fewer than 30 frames
        # of speech remain
        if any(_too_few_frames(str(w.message)) for w in caught) or not math.isfinite(value):
            self.notes.append(f"{'ESTOI' if extended else 'STOI'} not computed on {where}: fewer than 30 frames "
                              "of speech (pystoi drops frames 40 dB below the loudest)")
            return None
        return value

    def _run_pesq(self, ref: np.ndarray, est: np.ndarray, weight: float, where: str) -> None:
        from codecdoctor.measure.audio.reader import resample

        rate = self.pesq_rate
        r = resample(ref, self.sample_rate, rate)
        e = resample(est, self.sample_rate, rate)
        modes = (("pesq_wb", "wb"), ("pesq_nb", "nb")) if self.pesq_wide else (("pesq_nb", "nb"),)
        for name, mode in modes:
            try:
                value = float(self._pesq.pesq(rate, r.astype(np.float32), e.astype(np.float32), mode))
            except Exception as exc:  # noqa: BLE001 - pesq raises NoUtterancesError, BufferTooShortError, ...
                kind = type(exc).__name__
                reason = "no utterance detected" if "Utterance" in kind else f"{kind}: {exc}".strip()
                self.notes.append(f"PESQ {mode.upper()} not computed on {where}: {reason}")
                continue
            self.sums[name].add(value, weight)

    def _score_mel(self, ref: np.ndarray, est: np.ndarray) -> None:
        for i, (win, n_mels) in enumerate(MULTISCALE_MEL):
            a = _log_mel(ref, self.sample_rate, win, n_mels)
            b = _log_mel(est, self.sample_rate, win, n_mels)
            self.mel_abs_sum[i] += float(np.abs(a - b).sum())
            self.mel_bins[i] += a.size


def _too_few_frames(message: str) -> bool:
    """pystoi's warning for a signal with too little speech left (its wording has changed across
    versions: "Not enough STFT frames ...")."""
    return message.startswith("Not enough") and "frames" in message


def _log_mel(x: np.ndarray, sample_rate: int, window: int, n_mels: int) -> np.ndarray:
    """log10 of clamped mel-filtered STFT magnitudes, (frames, n_mels); hann, hop window/4,
    zero-padded to whole frames (the first frame starts at sample 0)."""
    hop = max(1, window // 4)
    n_frames = max(1, 1 + math.ceil(max(x.size - window, 0) / hop))
    padded = np.zeros((n_frames - 1) * hop + window)
    padded[: x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop]
    bank = mel_filterbank(sample_rate, window, n_mels)
    out = np.empty((n_frames, n_mels))
    taper = window_array("hann", window)
    for start in range(0, n_frames, 8192):   # bounded memory on long segments
        magnitude = np.abs(np.fft.rfft(frames[start:start + 8192] * taper, axis=-1))
        out[start:start + 8192] = np.log10(np.maximum(magnitude @ bank, MEL_CLAMP))
    return out


def _mono(x: Any) -> np.ndarray:
    """Time on the last axis; leading axes (channels, batch) averaged: PESQ and STOI score one
    listener's signal, so a multichannel pair is scored on its downmix."""
    arr = as_signal(x)
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.ndim == 1:
        return arr
    return arr.reshape(-1, arr.shape[-1]).mean(axis=0)


def quality_from_sources(ref: Any, est: Any, sample_rate: int, *, lag_samples: int = 0,
                         segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                         max_seconds: float | None = DEFAULT_MAX_SECONDS,
                         stoi: bool = True, pesq: bool = True, mel: bool = True) -> QualityResult:
    """`quality_metrics` on two sources (anything with `frames` and `read(start, stop) ->
    (channels, n)`, as `measure.pair`'s sources): only the scored segments are read, one at a
    time, so memory is 1.5 segments and the cost is that of `max_seconds`, whatever the length.
    Equal to `quality_metrics` on the same audio (to float rounding)."""
    lag = int(lag_samples)
    r_start, e_start = (0, lag) if lag >= 0 else (-lag, 0)
    n = max(0, min(int(ref.frames) - r_start, int(est.frames) - e_start))

    def read(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return _mono(ref.read(r_start + start, r_start + stop)), _mono(est.read(e_start + start, e_start + stop))

    return _score_segments(read, n, int(sample_rate), lag, segment_seconds, max_seconds, stoi, pesq, mel)


def _score_segments(read, n: int, sample_rate: int, lag: int, segment_seconds: float, max_seconds: float | None,
                    stoi: bool, pesq: bool, mel: bool) -> QualityResult:
    acc = QualityAccumulator(sample_rate, segment_seconds=segment_seconds, total_samples=n, max_seconds=max_seconds,
                             stoi=stoi, pesq=pesq, mel=mel)
    for index, (start, stop) in enumerate(segment_bounds(n, acc.segment_samples)):
        if acc.chosen is not None and index not in acc.chosen:
            acc.segments += 1
            continue
        r, e = read(start, stop)
        m = min(r.size, e.size)
        if m == 0:
            break   # a source that turned out truncated ends the pair here
        acc._score(np.nan_to_num(r[:m], nan=0.0, posinf=0.0, neginf=0.0),
                   np.nan_to_num(e[:m], nan=0.0, posinf=0.0, neginf=0.0))
    result = acc.result()
    if lag:
        result.notes.insert(0, f"quality metrics on the pair aligned by its lag ({lag:+d} samples)")
    return result


def quality_metrics(ref: Any, est: Any, sample_rate: int, *, lag_samples: int = 0,
                    segment_seconds: float = DEFAULT_SEGMENT_SECONDS, max_seconds: float | None = DEFAULT_MAX_SECONDS,
                    stoi: bool = True, pesq: bool = True, mel: bool = True) -> QualityResult:
    """Score a whole pair: crop to the common length after undoing `lag_samples` (est[n + lag]
    pairs with ref[n], as `measure_pair` reports it), then score the segments (module doc)."""
    from codecdoctor.measure.metrics import shift_pair

    r, e = shift_pair(_mono(ref), _mono(est), int(lag_samples))
    n = min(r.size, e.size)
    return _score_segments(lambda a, b: (r[a:b], e[a:b]), n, int(sample_rate), int(lag_samples), segment_seconds,
                           max_seconds, stoi, pesq, mel)
