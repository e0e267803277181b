"""One file's measurement: `measure_file(path)` (on disk) or `measure_fileobj(stream)` (object store,
tar member, parquet cell) opens it, streams it through a `SignalAccumulator` and returns a
`FileMeasurement` (the row of audit-data's JSON); it never raises on a bad file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codecdoctor.measure.audio.accumulator import SignalAccumulator, SignalStats, db
from codecdoctor.measure.audio.discover import display_path
from codecdoctor.measure.audio.formats import CONTAINER_BITS, frame_length
from codecdoctor.measure.audio.reader import (
    UnreadableAudio,
    block_frames_for,
    declared_wav_data_bytes,
    declared_wav_frames,
    header_error_text,
    open_sound_file,
    part_ranges,
    read_blocks,
    truncation_error,
    wav_frame_bytes,
)


@dataclass(slots=True)
class FileMeasurement:
    """One row of measurements.files[] (see docs/JSON.md), plus what the plots and corpus checks need.
    `histogram`, `spectrum` and `envelope` are carried to the parent and then dropped or folded
    into corpus totals; they are not written per file to JSON."""

    path: str
    kind: str = "audio"
    format: str | None = None
    subtype: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int | None = None
    duration_s: float | None = None
    min: float | None = None
    max: float | None = None
    peak: float | None = None
    peak_db: float | None = None
    rms: float | None = None
    rms_db: float | None = None
    active_rms_db: float | None = None
    dc_offset: float | None = None
    crest_factor: float | None = None
    crest_factor_db: float | None = None
    silence_fraction: float | None = None
    silent_frames: int | None = None
    level_frames: int | None = None
    overs: int | None = None
    overs_fraction: float | None = None
    clip_ceiling_snr_db: float | None = None
    clipped_samples: int | None = None
    clip_runs: int | None = None
    longest_clip_run_samples: int | None = None
    rail_low: float | None = None
    rail_high: float | None = None
    nonfinite: int | None = None
    nan: int | None = None
    inf: int | None = None
    bandwidth_hz: float | None = None
    content_bits: int | None = None
    container_bits: int | None = None
    declared_frames: int | None = None
    size_bytes: int | None = None
    fingerprint: str | None = None
    error: str | None = None
    histogram: list[int] | None = field(default=None, repr=False)
    envelope: dict[str, list[float]] | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON row: every field except the bulky per-file histogram and envelope."""
        from dataclasses import fields

        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("histogram", "envelope")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FileMeasurement":
        names = {f for f in cls.__dataclass_fields__}
        clean = {}
        for key, value in data.items():
            if key in names:
                if value in ("nan", "inf", "-inf"):
                    value = float(value)
                clean[key] = value
        return cls(**clean)


def measure_file(path: Path | str, relpath: str | None = None, *, silence_threshold_db: float = -60.0,
                 keep_envelope: bool = True, parts: list[FilePart] | None = None) -> FileMeasurement:
    """Stream one file on disk once and measure it. Never raises for a bad file: `error` says why.
    A long file is read in fixed parts joined in order; `parts` (from `measure_file_part`, e.g.
    measured by several workers) skips the reading and only joins them."""
    path = Path(path)
    rel = relpath if relpath is not None else display_path(path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return FileMeasurement(path=rel, kind="unreadable", error=f"cannot stat: {exc.strerror or exc}")
    if size == 0:
        return _empty(rel)
    if not os.access(path, os.R_OK):
        return FileMeasurement(path=rel, kind="unreadable", size_bytes=size, error="no read permission")
    try:
        handle = open_sound_file(path)
    except UnreadableAudio as exc:
        return FileMeasurement(path=rel, kind="unreadable", size_bytes=size, error=str(exc))

    def declared(frame_bytes: int) -> int | None:
        return declared_wav_frames(path, frame_bytes)

    return _measure_open(handle, rel, size, declared, silence_threshold_db, keep_envelope, parts)


def measure_fileobj(stream: Any, subject: str, size_bytes: int | None = None, *, silence_threshold_db: float = -60.0,
                    keep_envelope: bool = True) -> FileMeasurement:
    """Measure audio from a seekable binary file object (an object-store file, a tar member, the
    bytes of a parquet cell). Never raises for bad content: `error` says why."""
    import soundfile as sf

    try:
        if size_bytes is None:
            size_bytes = stream.seek(0, os.SEEK_END)
        if not size_bytes:
            return _empty(subject)
        stream.seek(0)
        head = stream.read(12)
        stream.seek(0)
        # the WAV header is read before libsndfile takes the stream, which keeps its own position
        data_bytes = declared_wav_data_bytes(stream)
        stream.seek(0)
    except Exception as exc:  # a remote read that fails: a finding for this object, not a crash
        return FileMeasurement(path=subject, kind="unreadable", size_bytes=size_bytes,
                               error=f"cannot read: {str(exc).strip() or type(exc).__name__}")
    try:
        handle = sf.SoundFile(stream)
    except Exception as exc:
        return FileMeasurement(path=subject, kind="unreadable", size_bytes=size_bytes, error=header_error_text(head, exc))

    def declared(frame_bytes: int) -> int | None:
        return data_bytes // frame_bytes if data_bytes is not None else None

    return _measure_open(handle, subject, size_bytes, declared, silence_threshold_db, keep_envelope)


def _empty(rel: str) -> FileMeasurement:
    return FileMeasurement(path=rel, kind="audio", frames=0, duration_s=0.0, size_bytes=0, error="empty file (0 bytes)")


@dataclass
class FilePart:
    """One part of a long file (see reader.part_ranges), still open so that parts join with
    `SignalAccumulator.then`; `error` says where reading stopped inside it, if it did."""

    index: int
    accumulator: SignalAccumulator
    error: str | None = None


def _read_part(handle: Any, start: int, stop: int | None, index: int, subtype: str | None,
               silence_threshold_db: float, keep_envelope: bool) -> FilePart:
    sr, ch = int(handle.samplerate), int(handle.channels)
    acc = SignalAccumulator(sr, ch, subtype=subtype, silence_threshold_db=silence_threshold_db,
                            keep_envelope=keep_envelope, start_frame=start // frame_length(sr), continues=index > 0)
    try:
        if start:
            handle.seek(start)
        for block in read_blocks(handle, block_frames_for(sr, ch), None if stop is None else stop - start):
            acc.update(block)
    except Exception as exc:  # a decode error mid-file: keep what was read, say where it stopped
        return FilePart(index, acc, f"read error after {start + acc.frames + acc._carry.shape[0]} frames: "
                                    f"{str(exc).strip() or type(exc).__name__}")
    return FilePart(index, acc)


def file_part_count(path: Path | str) -> int:
    """How many parts `measure_file` measures this file in (1 if it cannot even be opened)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as handle:
            return len(part_ranges(handle))
    except Exception:  # the measurement itself reports why the file is unreadable
        return 1


def measure_file_part(path: Path | str, index: int, *, silence_threshold_db: float = -60.0,
                      keep_envelope: bool = True) -> FilePart:
    """Part `index` of a long file (worker entry point); `measure_file(path, parts=...)` joins them."""
    import soundfile as sf

    with sf.SoundFile(str(path)) as handle:
        start, stop = part_ranges(handle)[index]
        return _read_part(handle, start, stop, index, handle.subtype, silence_threshold_db, keep_envelope)


def _measure_open(handle: Any, rel: str, size: int, declared_frames: Any, silence_threshold_db: float,
                  keep_envelope: bool, parts: list[FilePart] | None = None) -> FileMeasurement:
    """Stream an open soundfile part by part (or join parts measured elsewhere) into the file's row."""
    with handle:
        sr, ch = int(handle.samplerate), int(handle.channels)
        fmt, subtype = handle.format, handle.subtype
        m = FileMeasurement(path=rel, format=fmt, subtype=subtype, sample_rate=sr, channels=ch,
                            container_bits=CONTAINER_BITS.get(subtype), size_bytes=size)
        if sr <= 0 or ch <= 0:
            m.kind, m.error = "unreadable", f"invalid header: sample rate {sr}, channels {ch}"
            return m
        frame_bytes = wav_frame_bytes(handle)
        m.declared_frames = declared_frames(frame_bytes) if frame_bytes else None
        acc = None
        for index, (start, stop) in enumerate(part_ranges(handle)):
            part = parts[index] if parts is not None else _read_part(handle, start, stop, index, subtype,
                                                                   silence_threshold_db, keep_envelope)
            acc = part.accumulator if acc is None else acc.then(part.accumulator)
            if part.error is not None:
                m.error = part.error
                break
    stats = acc.result()
    fill_from_stats(m, stats)
    if m.error is None and m.declared_frames is not None and m.declared_frames > stats.frames:
        m.error = truncation_error(m.declared_frames, stats.frames, sr)
    return m


def fill_from_stats(m: FileMeasurement, s: SignalStats) -> None:
    m.frames = s.frames
    m.duration_s = s.frames / s.sample_rate if s.sample_rate else None
    m.min, m.max, m.peak = s.min, s.max, s.peak
    m.peak_db = db(s.peak)
    m.rms = s.rms
    m.rms_db = db(s.rms)
    m.active_rms_db = db(s.active_rms)
    m.dc_offset = s.dc_offset
    m.crest_factor = (s.peak / s.rms) if s.rms else None
    m.crest_factor_db = db(m.crest_factor)
    m.silence_fraction = s.silence_fraction
    m.silent_frames, m.level_frames = s.silent_frames, s.level_frames
    m.overs = s.overs
    m.overs_fraction = s.overs / s.finite_samples if s.finite_samples else 0.0
    m.clip_ceiling_snr_db = s.clip_ceiling_snr_db
    m.clipped_samples, m.clip_runs = s.clipped_samples, s.clip_runs
    m.longest_clip_run_samples = s.longest_clip_run_samples
    m.rail_low, m.rail_high = s.rail_low, s.rail_high
    m.nonfinite, m.nan, m.inf = s.nonfinite, s.nan, s.inf
    m.bandwidth_hz = s.bandwidth_hz()
    m.content_bits = s.content_bits
    m.fingerprint = s.fingerprint
    m.histogram = s.histogram
    m.envelope = s.envelope or None
