"""Pass two, sequential over the pair once the lag is known: in this thread the aligned sums (what-if
SNRs, per-segment levels, small-signal level), on the pass's thread the unaligned STFT sums (mel
distance and correlations, long-term spectra) and the segmental SNR's frames. One read of each side
serves both the unaligned and the aligned pair."""
from __future__ import annotations

import functools
import math

import numpy as np

from codecdoctor.measure.pair.blocks import Overlap, block_spans
from codecdoctor.measure.pair.pass_one import PassOneResult
from codecdoctor.measure.pair.sources import FlatView, read_padded
from codecdoctor.measure.pair.stft_sums import LONG_PAIR_SECONDS, MEL_FRAMES_LONG, MelSums, Stft, stft_block_sums
from codecdoctor.measure.pair.sums import FrameSums, add_pair_sums, pair_sums

# Each 0.25 s segment's sums (SEGMENT_SECONDS): <r,r>, <r,e>, sum r, sum e, <e,e>, min e, max e; the
# degree of each in the sums' units (2^(degree * exponent))
SEGMENT_OPS = ("sumsq", "dot", "sum", "sum", "sumsq", "min", "max")
SEGMENT_DEGREES = (2, 2, 1, 1, 2, 1, 1)


class AlignedSums:
    """The aligned pair's accumulator: its pair sums, those over the small-signal samples (|ref| at
    most `small_limit`), each whole segment's sums, and the range of the estimate after the last
    whole segment. Blocks are summed divided by 2^exponent when the files' peaks need it."""

    def __init__(self, aligned: int, segment: int, small_limit: float, all_small: bool, exponent: int,
                 block_peak: float | None):
        self.segment, self.small_limit, self.all_small = segment, small_limit, all_small
        self.exponent, self.block_peak = exponent, block_peak
        self.sums, self.small = pair_sums(), pair_sums()
        self.small_count = 0
        self.segment_usable = aligned // segment * segment
        self.segments = FrameSums(segment, self.segment_usable, SEGMENT_OPS)
        self.segment_parts: list[list[np.ndarray]] = []
        self.tail_min, self.tail_max = math.inf, -math.inf

    def update(self, start: int, ra: np.ndarray, ea: np.ndarray) -> None:
        if self.all_small:
            inside, count = None, ra.size
        else:
            inside = np.abs(ra) <= self.small_limit
            count = int(np.count_nonzero(inside))
        self.small_count += count
        # a block entirely at small-signal level adds the same sums to both (the common case)
        add_pair_sums(self.sums, ra, ea, peak=self.block_peak, also=self.small if count == ra.size else None)
        if 0 < count < ra.size:
            add_pair_sums(self.small, ra[inside], ea[inside], peak=self.block_peak)
        if self.exponent:   # summed divided by 2^exponent, as the segmental-SNR frames
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
            per_segment = [np.ldexp(v, d * units) for v, d in zip(per_segment, SEGMENT_DEGREES)]
            tail = {key: math.ldexp(value, units) for key, value in tail.items()}
        return per_segment, tail


class UnalignedSpectra:
    """The unaligned pair's accumulator, run on the pass's thread block after block: the segmental
    SNR's 20 ms frames and the STFT sums.

    Segmental SNR gates each frame at 40 dB below the loudest one, known only at the end: each
    frame's energy and clipped SNR are kept (12 bytes per 20 ms, 2 MB an hour) and gated then.
    Frames are measured on the pair scaled by one power of two when its squares would overflow or
    underflow (the ratios do not change)."""

    def __init__(self, stft: Stft, block: int, compared: int, first: PassOneResult, exponent: int, stride: int):
        self.stft, self.block, self.compared, self.exponent, self.stride = stft, block, compared, exponent, stride
        self.mel_frames, self.floor, self.scales = first.mel_frames, first.mel_floor, first.crop_peak
        self.seg_snr = FrameSums(first.frame, first.seg_usable, ("sumsq", "sumsq"))
        self.seg_energy: list[np.ndarray] = []
        self.seg_db: list[np.ndarray] = []
        self.mel = MelSums(stft.n_mels, stft.n_fft // 2 + 1)

    def update(self, start: int, r_ext: np.ndarray, e_ext: np.ndarray) -> None:
        size = max(0, min(start + self.block, self.compared) - start)
        r, e = r_ext[:size], e_ext[:size]
        if self.exponent:
            r, e = np.ldexp(r, -self.exponent), np.ldexp(e, -self.exponent)
        energy, error = self.seg_snr.update(start, [r, r - e])
        if energy.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                per_frame = 10.0 * np.log10(energy / error)
            self.seg_energy.append(energy)
            self.seg_db.append(np.clip(np.nan_to_num(per_frame, nan=35.0, posinf=35.0, neginf=-10.0), -10.0,
                                       35.0).astype(np.float32))
        r_ext, first, count = self.stft.block_frames(r_ext, start, size, self.mel_frames)
        e_ext = self.stft.block_frames(e_ext, start, size, self.mel_frames)[0]
        if count > 0:
            self.mel.combine(stft_block_sums(self.stft, r_ext, e_ext, first, count, self.stride, *self.scales,
                                             self.floor))

    def seg_snr_db(self, silent_pair: bool, raw_error: float) -> float:
        """The mean clipped SNR of the frames within 40 dB of the loudest (metrics.seg_snr_db)."""
        if silent_pair:
            return math.inf
        frame_energy = np.concatenate(self.seg_energy) if self.seg_energy else np.zeros(0)
        loudest_frame = float(frame_energy.max()) if frame_energy.size else 0.0
        if loudest_frame <= 0.0:  # every frame silent: exact only if nothing differs
            return math.inf if raw_error <= 0.0 else -math.inf
        active = frame_energy >= loudest_frame * 10.0 ** (-40.0 / 10.0)
        return float(np.concatenate(self.seg_db)[active].astype(np.float64).sum()) / int(active.sum())


def mel_frame_stride(compared: int, sample_rate: int, hop: int) -> int:
    """1, or on a pair longer than LONG_PAIR_SECONDS the stride that keeps at most MEL_FRAMES_LONG
    STFT frames (the STFT is most of the work)."""
    if compared > LONG_PAIR_SECONDS * sample_rate:
        return max(1, math.ceil(compared / hop / MEL_FRAMES_LONG))
    return 1


def read_pass_two(full_r: FlatView, full_e: FlatView, crop_r: FlatView, crop_e: FlatView, channels: int,
                  lag: int, aligned: int, block: int, extension: int, sums: AlignedSums,
                  spectra: UnalignedSpectra) -> None:
    """Every block through both accumulators: the unaligned one on the pass's thread (between its
    reads), the aligned one here."""
    overlap = Overlap(max(full_r.length, full_e.length), block)
    unaligned = functools.partial(overlap.later, spectra.update)
    compared = spectra.compared
    offset_r, offset_e = (0, lag) if lag > 0 else (-lag, 0)
    if channels == 1:
        # one read of each side serves both the unaligned and the aligned pairs (ref index i pairs
        # with est index i unaligned and i + lag aligned)
        low, high = min(lag, 0), max(lag, 0)

        def read_both(span_ab: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            a, b = span_ab
            return full_r.read(a, b + extension), read_padded(full_e, a + low, b + high + extension)

        for (a, b), (r_ext, e_ext) in overlap.blocks(block_spans(max(compared, offset_r + aligned), block), read_both):
            if a < compared:
                e_un = e_ext[a - (a + low):]
                unaligned(a, r_ext[: max(0, compared - a)], e_un[: max(0, compared - a)])
            lo, hi = max(a, offset_r), min(b, offset_r + aligned)
            if hi > lo:
                sums.update(lo - offset_r, r_ext[lo - a:hi - a], e_ext[lo + lag - (a + low):hi + lag - (a + low)])
    else:
        for a, b in block_spans(compared, block):
            unaligned(a, crop_r.read(a, b + extension), crop_e.read(a, b + extension))
        for a, b in block_spans(aligned, block):
            sums.update(a, full_r.read(offset_r + a, offset_r + b), full_e.read(offset_e + a, offset_e + b))
    overlap.finish()
