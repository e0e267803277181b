"""The pair engine: `PairMeasurements` in two passes over blocks, memory bounded whatever the length.

* pass 1 (`pass_one`, unaligned): per-side statistics, the pair sums, the chunk energies, the
  segmental SNR's frames and the STFT (log-mels, long-term spectra);
* the lag (`lag`): metrics.lag_and_peak's normalised cross-correlation, its chance level;
* pass 2 (`pass_two`, aligned): the aligned and per-segment sums;
* then the lag drift windows (R304), the frame-locking excerpt (R317) and the fractional
  alignment, each reading only what it needs.

Every what-if SNR is a quadratic form in those sums (`sums.Quadratic`): the error of `a*r - b*e -
c` is expanded, so no pass is needed per correction. tests/pair_reference.py computes each number
on whole arrays, the textbook way; tests/test_compare_stream.py holds the engine to it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.bound import infer_output_bound
from codecdoctor.measure.pair.blocks import Overlap, block_spans
from codecdoctor.measure.pair.chunks import ChunkEnergies
from codecdoctor.measure.pair.corrections import (
    fractional_alignment_snr,
    set_segment_levels_from_sums,
    set_what_if,
    si_sdr_from_sums,
    small_signal_level_db,
)
from codecdoctor.measure.pair.drift import measure_lag_drift
from codecdoctor.measure.pair.frames import frame_locking_excerpt
from codecdoctor.measure.pair.lag import Correlator, LagPeak, correlation_chance, estimate_lag
from codecdoctor.measure.pair.measurements import (
    MAX_LAG_SECONDS,
    MEL_DISTANCE_CONFIG,
    SEGMENT_SECONDS,
    SILENT_REF_RMS_DB,
    WHAT_IF_KEYS,
    PairMeasurements,
)
from codecdoctor.measure.pair.sources import ArraySource, FlatView, SignalSource, WindowView
from codecdoctor.measure.pair.stft_sums import LONG_PAIR_SECONDS, MEL_FRAMES_LONG, MelSpectra, Stft
from codecdoctor.measure.pair.sums import (
    FrameSums,
    Quadratic,
    SideStats,
    add_pair_sums,
    finite_or_zero,
    nonfinite_mask,
    pair_sums,
    scale_exponent,
)

# Samples per block: a multiple of every STFT hop, big enough to amortise numpy's per-call cost,
# small enough that a block's STFT stays in tens of MB.
BLOCK_SAMPLES = 1 << 18


class SegmentalSnr:
    """metrics.seg_snr_db over blocks: its 20 ms frames are gated at 40 dB below the loudest, known
    only at the end, so each frame's level and clipped SNR are kept (12 bytes a frame, 2 MB an
    hour). Blocks come divided by a power of two where their squares would overflow."""

    def __init__(self, sample_rate: int, compared: int):
        frame = max(1, round(0.02 * sample_rate))   # over whole frames, as metrics.seg_snr_db
        self.frames = FrameSums(frame, min(compared, max(1, compared // frame) * frame), ("sumsq", "sumsq"))
        self.level_db: list[np.ndarray] = []
        self.snr_db: list[np.ndarray] = []

    def update(self, start: int, r: np.ndarray, d: np.ndarray, exponent: int) -> None:
        """The block's reference `r` and error `d`, both divided by 2^exponent."""
        energy, error = self.frames.update(start, [r, d], exponent)
        if energy.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                self.level_db.append(10.0 * np.log10(energy) + 20.0 * exponent * math.log10(2.0))
                per_frame = 10.0 * np.log10(energy / error)
            self.snr_db.append(np.clip(np.nan_to_num(per_frame, nan=35.0, posinf=35.0, neginf=-10.0), -10.0,
                                       35.0).astype(np.float32))

    def result(self, raw_error: float) -> float:
        """The mean clipped SNR of the frames within 40 dB of the loudest."""
        level = np.concatenate(self.level_db) if self.level_db else np.zeros(0)
        loudest = float(level.max()) if level.size else -math.inf
        if loudest == -math.inf:  # every frame silent: exact only if nothing differs
            return math.inf if raw_error <= 0.0 else -math.inf
        active = level >= loudest - 40.0
        return float(np.concatenate(self.snr_db)[active].astype(np.float64).sum()) / int(active.sum())


class UnalignedSums:
    """Pass one's accumulator: each side's statistics over all its samples (`side_r`, `side_e`,
    samples beyond `bound_for_ceiling` counted) and, over blocks of the compared samples, the pair
    sums (`q` at the end) and each side's peak (`crop_peak`) on this thread; the chunk energies,
    the segmental SNR and the STFT on the pass's helper thread (`Overlap.later`)."""

    def __init__(self, stft: Stft, compared: int, overlap: Overlap, chunks: ChunkEnergies | None,
                 bound_for_ceiling: float, sample_rate: int):
        self.compared, self.chunks, self.overlap = compared, chunks, overlap
        self.side_r, self.side_e, self.bound_for_ceiling = SideStats(), SideStats(), bound_for_ceiling
        self.pair = pair_sums()
        self.crop_peak = [0.0, 0.0]
        self.chunk_sums = FrameSums(chunks.samples, compared, ("sumsq", "sumsq", "max")) if chunks is not None else None
        self.seg_snr = SegmentalSnr(sample_rate, compared)
        # a pair longer than LONG_PAIR_SECONDS: at most MEL_FRAMES_LONG STFT frames (the STFT is most of the work)
        long_pair = compared > LONG_PAIR_SECONDS * sample_rate
        self.stride = max(1, math.ceil(compared / stft.hop / MEL_FRAMES_LONG)) if long_pair else 1
        self.mel = MelSpectra(stft, compared, self.stride)

    def update(self, start: int, r_raw: np.ndarray, e_raw: np.ndarray, size: int) -> None:
        """`size` compared samples from `start`, each side read on to the block's last STFT frame's
        end (non-finite samples still in)."""
        r_cut, e_cut = r_raw[: self.compared - start], e_raw[: self.compared - start]
        r_ext, e_ext = finite_or_zero(r_cut), finite_or_zero(e_cut)
        size = min(size, r_ext.size, e_ext.size)  # a file that ended early: measured again
        r, e = r_ext[:size], e_ext[:size]
        bad = None if r_ext is r_cut and e_ext is e_cut else nonfinite_mask(r_raw[:size], e_raw[:size])
        peaks = [max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0 for x in (r, e)]
        d = add_pair_sums(self.pair, r, e, peak=max(peaks))
        self.crop_peak = [max(self.crop_peak[0], peaks[0]), max(self.crop_peak[1], peaks[1])]
        self.overlap.later(self._helper_sums, start, r_ext, e_ext, size, d, bad, scale_exponent(peak=max(peaks)))

    def _helper_sums(self, start: int, r_ext: np.ndarray, e_ext: np.ndarray, size: int, d: np.ndarray | None,
                     bad: np.ndarray | None, exponent: int) -> None:
        """The chunk energies, the segmental SNR's frames and the STFT, block after block (one thread)."""
        r = r_ext[:size]
        if d is None:
            d = r - e_ext[:size]
        if self.chunk_sums is not None:
            flags = bad[:size].astype(np.float64) if bad is not None else None
            with np.errstate(over="ignore", invalid="ignore"):
                signal, error, nonfinite = self.chunk_sums.update(start, [r, d, flags])
            self.chunks.signal.extend(float(v) for v in signal)
            self.chunks.error.extend(float(v) if not f else math.inf for v, f in zip(error, nonfinite))
        if exponent:
            r, d = np.ldexp(r, -exponent), np.ldexp(d, -exponent)
        self.seg_snr.update(start, r, d, exponent)
        self.mel.update(start, size, r_ext, e_ext)


def pass_one(ref: SignalSource, est: SignalSource, sample_rate: int, subject: str | None,
             output_bound: float | None, stft: Stft, block: int,
             chunks: ChunkEnergies | None) -> tuple[PairMeasurements, UnalignedSums | None]:
    """The measurements pass one completes, and what pass two needs (None: nothing to compare)."""
    n = min(ref.frames, est.frames)
    compared = ref.channels * n
    m = PairMeasurements(sample_rate=sample_rate, ref_samples=ref.frames, est_samples=est.frames,
                         compared_samples=compared, subject=subject, mel_distance_config=dict(MEL_DISTANCE_CONFIG))
    overlap = Overlap(max(ref.channels * ref.frames, est.channels * est.frames), block)
    sums = UnalignedSums(stft, compared, overlap, chunks, output_bound if output_bound is not None else 1.0,
                         sample_rate)
    extension = stft.n_fft - stft.hop
    _read_sides(ref, est, sums, block, extension)
    if ref.channels > 1:   # the compared samples: each channel cut to n frames, joined
        crop_r, crop_e = FlatView(ref, n), FlatView(est, n)
        crop_r.zero_nonfinite = crop_e.zero_nonfinite = False
        for a, b in block_spans(compared, block):
            sums.update(a, crop_r.read(a, b + extension), crop_e.read(a, b + extension), b - a)
    overlap.finish()
    _set_levels(m, sums.side_r, sums.side_e)
    if compared == 0:
        m.notes.append("nothing to compare: an input is empty")
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        return m, None
    q = sums.q = Quadratic(sums.pair, compared)
    m.snr_db = M.energy_ratio_db(q.rr, q.raw_error) if max(sums.crop_peak) > 0.0 else math.inf
    if sums.stride > 1:
        m.notes.append(f"mel distance, mel correlations and bandwidth from every {sums.stride}th STFT frame "
                       f"(pair longer than {LONG_PAIR_SECONDS / 60:g} min)")
    return m, sums


def _read_sides(ref: SignalSource, est: SignalSource, sums: UnalignedSums, block: int, extension: int) -> None:
    """Every sample of both sides through their statistics; for one channel, the compared blocks
    also through the pair's sums (the same reads)."""
    full_r, full_e = FlatView(ref, ref.frames), FlatView(est, est.frames)
    full_r.zero_nonfinite = full_e.zero_nonfinite = False  # counted here first
    for a, b in block_spans(max(full_r.length, full_e.length), block):
        r_raw, e_raw = full_r.read(a, b + extension), full_e.read(a, b + extension)
        sums.side_r.update(r_raw[: b - a], sums.bound_for_ceiling)
        sums.side_e.update(e_raw[: b - a], None)
        if ref.channels == 1 and a < sums.compared:
            sums.update(a, r_raw, e_raw, min(b, sums.compared) - a)


def _set_levels(m: PairMeasurements, side_r: SideStats, side_e: SideStats) -> None:
    """Each side's statistics into m, and whether it is silent."""
    m.nonfinite_ref, m.nonfinite_est = side_r.nonfinite, side_e.nonfinite
    for name, side in (("ref", side_r), ("est", side_e)):
        values = {"peak": side.peak, "min": side.minimum, "max": side.maximum} if side.samples else {}
        for key, value in {**values, "rms_db": side.rms_db(), "dc": side.mean()}.items():
            setattr(m, f"{name}_{key}", value)
    m.ref_silent = m.ref_rms_db < SILENT_REF_RMS_DB
    m.est_silent = m.est_rms_db < SILENT_REF_RMS_DB or (m.est_max - m.est_min) == 0.0


# Each 0.25 s segment's sums (SEGMENT_SECONDS): <r,r>, <r,e>, sum r, sum e, <e,e>, min e, max e
SEGMENT_OPS = ("sumsq", "dot", "sum", "sum", "sumsq", "min", "max")


class AlignedSums:
    """The aligned pair's accumulator: its pair sums, those over the small-signal samples (|ref| at
    most `small_limit`), each whole segment's sums, and the range of the estimate after the last
    whole segment. Blocks are summed divided by 2^exponent when the files' peaks need it."""

    def __init__(self, aligned: int, segment: int, small_limit: float, exponent: int, block_peak: float | None):
        self.segment, self.small_limit = segment, small_limit
        self.exponent, self.block_peak = exponent, block_peak
        self.sums, self.small = pair_sums(), pair_sums()
        self.small_count = 0
        self.segment_usable = aligned // segment * segment
        self.segments = FrameSums(segment, self.segment_usable, SEGMENT_OPS)
        self.segment_parts: list[list[np.ndarray]] = []
        self.tail_min, self.tail_max = math.inf, -math.inf

    def update(self, start: int, ra: np.ndarray, ea: np.ndarray) -> None:
        inside = np.abs(ra) <= self.small_limit
        count = int(np.count_nonzero(inside))
        self.small_count += count
        # a block entirely at small-signal level adds the same sums to both (the common case)
        add_pair_sums(self.sums, ra, ea, peak=self.block_peak, also=self.small if count == ra.size else None)
        if 0 < count < ra.size:
            add_pair_sums(self.small, ra[inside], ea[inside], peak=self.block_peak)
        if self.exponent:   # summed divided by 2^exponent: the files' peaks need it
            ra, ea = np.ldexp(ra, -self.exponent), np.ldexp(ea, -self.exponent)
        parts = self.segments.update(start, [ra, (ra, ea), ra, ea, ea, ea, ea])
        if parts[0].size:
            self.segment_parts.append(parts)
        if start + ra.size > self.segment_usable:
            rest = ea[max(0, self.segment_usable - start):]
            self.tail_min, self.tail_max = min(self.tail_min, float(rest.min())), max(self.tail_max, float(rest.max()))

    def per_segment(self) -> tuple[list[np.ndarray], dict[str, float]]:
        """Each segment's sums (SEGMENT_OPS) and the tail's range, in the aligned sums' units."""
        per_segment = ([np.concatenate([p[i] for p in self.segment_parts]) for i in range(len(SEGMENT_OPS))]
                       if self.segment_parts else [np.zeros(0)] * len(SEGMENT_OPS))
        tail = {"min": self.tail_min, "max": self.tail_max}
        units = self.exponent - (self.sums.exponent or 0)
        if units:
            per_segment = [np.ldexp(v, FrameSums.DEGREES[op] * units) for v, op in zip(per_segment, SEGMENT_OPS)]
            tail = {key: math.ldexp(value, units) for key, value in tail.items()}
        return per_segment, tail


def measure_pair_stream(ref: SignalSource, est: SignalSource, sample_rate: int, *, subject: str | None = None,
                        output_bound: float | None = None, max_lag_samples: int | None = None,
                        hop_samples: int | None = None, block_samples: int = BLOCK_SAMPLES,
                        chunks: ChunkEnergies | None = None) -> PairMeasurements:
    """Measure a pair read from two sources of the same channel count (compare downmixes both).
    `chunks`, when given, receives each chunk's (reference, error) energy (R313)."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    stft = Stft(sample_rate)
    block = max(stft.hop, int(block_samples) // stft.hop * stft.hop)
    for _attempt in range(3):  # a file found truncated in pass 1 changes the lengths: measure again
        lengths = (ref.frames, est.frames)
        if chunks is not None:
            chunks.signal.clear()
            chunks.error.clear()
        m, first = pass_one(ref, est, sample_rate, subject, output_bound, stft, block, chunks)
        if (ref.frames, est.frames) == lengths:
            break
    if first is None:
        return m
    pass_two(ref, est, m, first, output_bound, max_lag_samples, block, hop_samples)
    return m


def measure_lag(m: PairMeasurements, full_r: FlatView, full_e: FlatView, first: UnalignedSums,
                max_lag_samples: int | None) -> LagPeak:
    """The lag on the full signals (metrics.lag_and_peak), its chance level and polarity, into m."""
    sr = m.sample_rate
    max_lag = int(max_lag_samples if max_lag_samples is not None else round(MAX_LAG_SECONDS * sr))
    side_r, side_e = first.side_r, first.side_e
    correlator = Correlator(full_r, side_r.mean(), side_e.mean(), (side_r.peak, side_e.peak))
    found = estimate_lag(correlator, full_e, max_lag)
    m.lag_samples, m.correlation, m.lag_fraction_samples = found.lag, found.correlation, found.fraction
    m.correlation_chance = correlation_chance(correlator, full_e, max_lag)
    m.lag_ms = 1000.0 * found.lag / sr
    m.polarity = 0 if abs(found.correlation) < 0.1 else (1 if found.correlation > 0 else -1)
    return found


def pair_output_bound(m: PairMeasurements, output_bound: float | None) -> float | None:
    """The output bound (measure.bound.infer_output_bound): the one given, else 1.0 when the output
    never exceeds 1.0 while the input does (R307; from pass 1's peaks)."""
    peak = m.est_peak if m.ref_peak > 1.0 and m.est_peak > 0.0 else None
    found = infer_output_bound(given=output_bound, peak=peak)
    bound = found.value if found is not None else None
    m.output_bound_inferred = output_bound is None and bound is not None
    if bound is not None and bound > 0:
        m.output_bound = float(bound)
    return bound


def pass_two(ref: SignalSource, est: SignalSource, m: PairMeasurements, first: UnalignedSums,
             output_bound: float | None, max_lag_samples: int | None, block: int, hop_samples: int | None) -> None:
    """The lag, pass 2's sums over the aligned pair, and every measurement read from them, into m."""
    full_r, full_e = FlatView(ref, ref.frames), FlatView(est, est.frames)
    if first.side_r.nonfinite == 0 and first.side_e.nonfinite == 0:  # pass 1 found none: no need to look again
        full_r.zero_nonfinite = full_e.zero_nonfinite = False
    found = measure_lag(m, full_r, full_e, first, max_lag_samples)
    offset_r, offset_e = (0, found.lag) if found.lag > 0 else (-found.lag, 0)
    aligned = max(0, min(full_r.length - offset_r, full_e.length - offset_e))
    # the output bound is inferred from the peaks (pass 1); the small-signal level needs it here
    bound = pair_output_bound(m, output_bound)
    small_limit = 0.5 * (m.output_bound or 1.0)
    # the files' peaks (pass 1) bound every block: one scale exponent for the whole pair
    files_peak = max(first.side_r.peak, first.side_e.peak)
    exponent = scale_exponent(peak=files_peak)
    segment = max(1, round(SEGMENT_SECONDS * m.sample_rate))
    sums = AlignedSums(aligned, segment, small_limit, exponent, None if exponent else files_peak)
    for a, b in block_spans(aligned, block):
        sums.update(a, full_r.read(offset_r + a, offset_r + b), full_e.read(offset_e + a, offset_e + b))
    q, qa = first.q, Quadratic(sums.sums, aligned)
    m.si_snr_db, m.si_sdr_db = si_sdr_from_sums(q, True), si_sdr_from_sums(q, False)
    m.seg_snr_db = first.seg_snr.result(q.raw_error)
    g_aligned, level = set_what_if(m, q, qa, aligned, max(first.crop_peak) == 0.0)
    sign = -1.0 if g_aligned < 0 else 1.0
    per_segment, tail = sums.per_segment()
    set_segment_levels_from_sums(m, qa, per_segment, tail, sign, level, segment, aligned, sums.sums.exponent or 0)
    if sums.small_count >= 16:
        m.output_level_small_signal_db = small_signal_level_db(Quadratic(sums.small, sums.small_count), qa, sign)
    aligned_ref, aligned_est = WindowView(full_r, offset_r, aligned), WindowView(full_e, offset_e, aligned)
    if found.fraction != 0.0 and aligned > 2 * M.SINC_HALF_TAPS:
        m.snr_after_fractional_alignment_db = fractional_alignment_snr(aligned_ref, aligned_est, qa, -found.fraction,
                                                                       block)
    else:
        m.snr_after_fractional_alignment_db = m.what_if["all"]
    measure_lag_drift(m, full_r.read, full_e.read, full_r.length, full_e.length)
    frame_locking_excerpt(m, aligned_ref, aligned_est, qa, g_aligned, hop_samples, m.sample_rate)
    _finish(m, first, bound)


def _finish(m: PairMeasurements, first: UnalignedSums, bound: float | None) -> None:
    """The bound's SNR ceiling (R307), the silent-reference sentinels, the STFT's measurements."""
    if bound is not None and bound > 0 and bound == first.bound_for_ceiling:
        m.ref_beyond_bound_samples = first.side_r.beyond_bound
        if m.ref_beyond_bound_samples:
            m.bound_ceiling_db = M.energy_ratio_db(first.side_r.sums["square"], first.side_r.sums["clip_error"])
    if m.ref_silent:
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        m.notes.append("reference is silent: SNR and the what-if table are undefined (-inf)")
    m.mel_distance, m.mel_correlation, m.mel_pattern_correlation, bands = first.mel.result(m.sample_rate)
    m.ref_bandwidth_hz, m.est_bandwidth_hz = bands["ref_bandwidth_hz"], bands["est_bandwidth_hz"]
    m.lost_band_energy_fraction = bands["lost_energy_fraction"]


def measure_pair(ref: Any, est: Any, sample_rate: int, *, subject: str | None = None,
                 output_bound: float | None = None, max_lag_samples: int | None = None,
                 hop_samples: int | None = None) -> PairMeasurements:
    """Measure one (ref, est) pair of arrays: the engine over two array sources. `output_bound`:
    the decoder's bound when known (else inferred from the peaks, R307); `hop_samples`: the codec's
    frame hop if known (R317 searches otherwise). Leading axes are joined end to end; signals whose
    leading shapes differ (stereo against mono) are each pooled into one signal first."""
    sample_rate = int(sample_rate) if sample_rate and sample_rate > 0 else 16000
    r, e = M.as_signal(ref), M.as_signal(est)
    r, e = (x.reshape(1) if x.ndim == 0 else x for x in (r, e))
    lengths = (int(r.shape[-1]), int(e.shape[-1]))
    if r.shape[:-1] != e.shape[:-1]:
        r, e = r.reshape(-1), e.reshape(-1)
    m = measure_pair_stream(ArraySource(r, sample_rate), ArraySource(e, sample_rate), sample_rate, subject=subject,
                            output_bound=output_bound, max_lag_samples=max_lag_samples, hop_samples=hop_samples)
    m.ref_samples, m.est_samples = lengths
    return m
