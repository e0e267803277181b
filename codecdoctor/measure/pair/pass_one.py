"""Pass one, sequential over the unaligned pair: each side's statistics (non-finite count, range,
DC, RMS, samples beyond the output bound), the unaligned pair sums, and on the pass's thread the
per-chunk energies (R313) and the loudest reference mel bin (the mel correlations' floor)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.pair.blocks import Overlap, block_spans
from codecdoctor.measure.pair.chunks import ChunkEnergies
from codecdoctor.measure.pair.measurements import (
    MEL_DISTANCE_CONFIG,
    SILENT_REF_RMS_DB,
    WHAT_IF_KEYS,
    PairMeasurements,
)
from codecdoctor.measure.pair.sources import FlatView, SignalSource
from codecdoctor.measure.pair.stft_sums import RefMelPeak, Stft
from codecdoctor.measure.pair.sums import (
    FrameSums,
    Quadratic,
    SideStats,
    add_pair_sums,
    finite_or_zero,
    nonfinite_mask,
    pair_sums,
)


@dataclass
class PassOneResult:
    """What pass two needs from pass one."""

    q: Quadratic                        # the unaligned pair sums over the compared samples
    crop_peak: tuple[float, float]      # each side's peak over the compared samples
    side_r: SideStats
    side_e: SideStats
    frame: int                          # the segmental SNR's frame (20 ms)
    seg_usable: int                     # the samples its whole frames cover
    mel_frames: int                     # STFT frames of the compared samples
    mel_floor: float | None             # None: pass two finds the floor in its one block
    bound_for_ceiling: float            # the bound SideStats counted samples beyond


class UnalignedSums:
    """Pass one's accumulator over blocks of the compared samples: the pair sums on this thread,
    the chunk energies and the mel-peak search on the pass's thread (`Overlap.later`)."""

    def __init__(self, stft: Stft, block: int, compared: int, overlap: Overlap, chunks: ChunkEnergies | None):
        self.stft, self.compared, self.chunks = stft, compared, chunks
        self.pair = pair_sums()
        self.crop_peak = [0.0, 0.0]
        self.mel_frames = stft.frames_for(compared)
        # a pair of one block has its loudest reference mel bin read in pass 2, from its log-mels
        self.mel_peak = RefMelPeak(stft, self.mel_frames) if compared > block else None
        self.chunk_sums = FrameSums(chunks.samples, compared, ("sumsq", "sumsq", "max")) if chunks is not None else None
        self.overlap = overlap

    def update(self, r: np.ndarray, e: np.ndarray, start: int, r_ext: np.ndarray, bad: np.ndarray | None,
               peaks: tuple[float, float] | None = None, known: tuple[Any, Any] | None = None) -> None:
        """A block of the compared samples (`r_ext`: the reference on to the block's last STFT
        frame's end; `bad`: where either side was non-finite). `peaks` and `known`: the blocks'
        peak magnitudes and sums when pass 1's side statistics measured exactly these samples."""
        if peaks is None:
            peaks = tuple(max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0 for x in (r, e))
        d = add_pair_sums(self.pair, r, e, peak=max(peaks), known=known)
        self.crop_peak = [max(self.crop_peak[0], peaks[0]), max(self.crop_peak[1], peaks[1])]
        self.overlap.later(self._chunks_and_mel_peak, r, e, d, start, r_ext, bad)

    def _chunks_and_mel_peak(self, r: np.ndarray, e: np.ndarray, d: np.ndarray | None, start: int,
                             r_ext: np.ndarray, bad: np.ndarray | None) -> None:
        """The per-chunk energies and the mel-peak search, in order, block after block (one thread)."""
        if self.chunk_sums is not None:
            if d is None:
                d = r - e
            flags = bad[: r.size].astype(np.float64) if bad is not None else None
            with np.errstate(over="ignore", invalid="ignore"):
                signal, error, nonfinite = self.chunk_sums.update(start, [r, d, flags])
            self.chunks.signal.extend(float(v) for v in signal)
            self.chunks.error.extend(float(v) if not f else math.inf for v, f in zip(error, nonfinite))
        if self.mel_peak is not None:
            self.mel_peak.update(*self.stft.block_frames(r_ext, start, r.size, self.mel_frames))


def pass_one(ref: SignalSource, est: SignalSource, sample_rate: int, subject: str | None,
             output_bound: float | None, stft: Stft, block: int,
             chunks: ChunkEnergies | None) -> tuple[PairMeasurements, PassOneResult | None]:
    """The measurements pass one completes, and what pass two needs (None: nothing to compare)."""
    n = min(ref.frames, est.frames)
    compared = ref.channels * n
    m = PairMeasurements(sample_rate=sample_rate, ref_samples=ref.frames, est_samples=est.frames,
                         compared_samples=compared, subject=subject, mel_distance_config=dict(MEL_DISTANCE_CONFIG))
    bound_for_ceiling = output_bound if output_bound is not None else 1.0
    side_r, side_e = SideStats(), SideStats()
    overlap = Overlap(max(ref.channels * ref.frames, est.channels * est.frames), block)
    sums = UnalignedSums(stft, block, compared, overlap, chunks)
    _read_sides(ref, est, side_r, side_e, sums, bound_for_ceiling, block, stft.n_fft - stft.hop)
    if ref.channels > 1:
        _read_compared(ref, est, n, sums, block, stft.n_fft - stft.hop)
    overlap.finish()
    _set_levels(m, side_r, side_e)
    if compared == 0:
        m.notes.append("nothing to compare: an input is empty")
        m.what_if = {key: -math.inf for key in WHAT_IF_KEYS}
        return m, None
    q = Quadratic(sums.pair, compared)
    # the signal energy in SNR units (pair sums are in units of 2^(2*exponent); ratios cancel them)
    m.snr_db = M.energy_ratio_db(q.rr, q.raw_error) if max(sums.crop_peak) > 0.0 else math.inf
    frame = max(1, round(0.02 * sample_rate))
    seg_usable = min(compared, max(1, compared // frame) * frame) if compared >= frame else compared
    mel_floor = sums.mel_peak.log_peak() - 3.0 if sums.mel_peak is not None else None
    return m, PassOneResult(q, (sums.crop_peak[0], sums.crop_peak[1]), side_r, side_e, frame, seg_usable,
                            sums.mel_frames, mel_floor, bound_for_ceiling)


def _read_sides(ref: SignalSource, est: SignalSource, side_r: SideStats, side_e: SideStats, sums: UnalignedSums,
                bound_for_ceiling: float, block: int, extension: int) -> None:
    """Every sample of both sides through their statistics; for one channel, the compared blocks
    also through the pair sums (the same reads)."""
    full_r, full_e = FlatView(ref, ref.frames), FlatView(est, est.frames)
    full_r.zero_nonfinite = full_e.zero_nonfinite = False  # counted here first
    compared = sums.compared

    def read_both(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        a, b = span
        return full_r.read(a, b + extension), full_e.read(a, b)

    for (a, b), (r_raw, e_raw) in sums.overlap.blocks(block_spans(max(full_r.length, full_e.length), block), read_both):
        head = r_raw[: b - a]
        r_block, peak_r, sums_r = side_r.update(head, bound_for_ceiling)
        e_block, peak_e, sums_e = side_e.update(e_raw, None)
        if ref.channels > 1 or a >= compared:
            continue
        if r_block is head and np.isfinite(r_raw[b - a:]).all():
            r_ext = r_raw          # every sample finite: the raw block is the measured one
        else:
            r_ext = finite_or_zero(r_raw)
        stop = min(b, compared) - a
        stop = min(stop, r_ext.size, e_block.size)  # a file that ended early: measured again
        clean = r_ext is r_raw and e_block is e_raw
        whole = stop == b - a == e_raw.size       # the side statistics saw exactly these samples
        sums.update(r_ext[:stop], e_block[:stop], a, r_ext[: max(0, min(compared - a, r_ext.size))],
                    None if clean else nonfinite_mask(r_raw[:stop], e_raw[:stop]),
                    (peak_r, peak_e) if whole else None, (sums_r, sums_e) if whole else None)


def _read_compared(ref: SignalSource, est: SignalSource, n: int, sums: UnalignedSums, block: int,
                   extension: int) -> None:
    """Several channels: the compared samples (each channel cut to n frames) through the pair sums."""
    crop_r, crop_e = FlatView(ref, n), FlatView(est, n)
    crop_r.zero_nonfinite = crop_e.zero_nonfinite = False
    for a, b in block_spans(sums.compared, block):
        r_raw = crop_r.read(a, b + extension)
        e_raw = crop_e.read(a, b)
        stop = min(b - a, r_raw.size, e_raw.size)
        r_ext = finite_or_zero(r_raw)
        sums.update(r_ext[:stop], finite_or_zero(e_raw)[:stop], a, r_ext, nonfinite_mask(r_raw[:stop], e_raw[:stop]))


def _set_levels(m: PairMeasurements, side_r: SideStats, side_e: SideStats) -> None:
    """Each side's statistics into m, and whether it is silent."""
    m.nonfinite_ref, m.nonfinite_est = side_r.nonfinite, side_e.nonfinite
    for name, side in (("ref", side_r), ("est", side_e)):
        if side.samples:
            setattr(m, f"{name}_peak", side.peak)
            setattr(m, f"{name}_min", side.minimum)
            setattr(m, f"{name}_max", side.maximum)
        setattr(m, f"{name}_rms_db", side.rms_db())
        setattr(m, f"{name}_dc", side.mean())
    m.ref_silent = m.ref_rms_db < SILENT_REF_RMS_DB
    m.est_silent = m.est_rms_db < SILENT_REF_RMS_DB or (m.est_max - m.est_min) == 0.0
