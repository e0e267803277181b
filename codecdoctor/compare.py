"""`compare(ref, est)`: differential diagnosis of a reconstruction, for two files, two folders of
files paired by relative path, or two arrays.

Each pair is streamed: the one pair engine (`measure.pair`) reads it in blocks (two passes and a
few seeks; memory does not grow with the length, an hour-long pair included) and gives the
`PairMeasurements` the R3xx checks judge (`diagnose.judge_pair`), the same engine `measure_pair`
runs over arrays. Every pair takes that one path, short or long: tests/test_compare_stream.py
holds it to a whole-file reference on the diagnosis gallery. Bad input never stops the run: an
unreadable file, a missing counterpart, a silent reference, a rate or channel mismatch each become
a finding and the other pairs are still compared; a file that cannot be read past some point is
scored up to there, and an R315 finding names the offset. Only a path that does not exist, or a
REF/EST combination that cannot be paired, is an `InputError`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from codecdoctor.core.errors import InputError
from codecdoctor.core.findings import Finding, Report
from codecdoctor.core.registry import finding, internal_errors, run_checks
from codecdoctor.diagnose import judge_pair
from codecdoctor.measure.audio.reader import FileSource, UnreadableAudio
from codecdoctor.measure.pair import (
    ArraySource,
    ChunkEnergies,
    PairMeasurements,
    chunk_set_from_energies,
    measure_pair_stream,
)

# A single pair is scored per second for R313: one second is the usual validation crop.
CHUNK_SECONDS = 1.0
# Quality metrics (PESQ, STOI) on a long pair: this many evenly spaced segments of
# quality.DEFAULT_SEGMENT_SECONDS (the note names how many of the pair's segments were scored).
QUALITY_SEGMENTS = 3


@dataclass
class _Pair:
    subject: str
    ref_rel: str
    est_rel: str | None
    ref_path: Path | None = None
    est_path: Path | None = None
    ref_array: Any = None
    est_array: Any = None


def _as_channels_first(x: Any) -> np.ndarray:
    from codecdoctor.measure.metrics import as_signal

    arr = as_signal(x)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    if arr.ndim == 1:
        arr = arr[None, :]
    return arr.reshape(-1, arr.shape[-1])


def _pairs_from_paths(ref: Path, est: Path) -> tuple[list[_Pair], list[str]]:
    from codecdoctor.measure.audio.discover import AUDIO_EXTENSIONS, discover

    for p, name in ((ref, "REF"), (est, "EST")):
        if not p.exists():
            raise InputError(f"{name} path does not exist: {p}")
    if ref.is_file() and est.is_file():
        return [_Pair(f"{ref.name} vs {est.name}", ref.name, est.name, ref, est)], []
    if not (ref.is_dir() and est.is_dir()):
        raise InputError("REF and EST must be two files or two folders")
    ref_audio = [e for e in discover(ref) if e.kind == "audio"]
    if not ref_audio:
        raise InputError(f"no audio files under REF folder {ref}")
    est_audio = {e.relpath: e for e in discover(est) if e.kind == "audio"}
    # The same relative path, or the same path with another audio extension (ref.wav vs est.flac).
    est_by_stem = {os.path.splitext(rel)[0]: e for rel, e in sorted(est_audio.items())}
    pairs: list[_Pair] = []
    used: set[str] = set()
    for entry in ref_audio:
        match = est_audio.get(entry.relpath) or est_by_stem.get(os.path.splitext(entry.relpath)[0])
        if match is not None and os.path.splitext(match.relpath)[1].lower() not in AUDIO_EXTENSIONS:
            match = None
        if match is None:
            pairs.append(_Pair(entry.relpath, entry.relpath, None, entry.path, None))
            continue
        used.add(match.relpath)
        pairs.append(_Pair(entry.relpath, entry.relpath, match.relpath, entry.path, match.path))
    notes = []
    extra = sorted(set(est_audio) - used)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        notes.append(f"{len(extra)} EST files have no REF counterpart and were not compared: {shown}")
    return pairs, notes


def _open_pair(pair: _Pair, sample_rate: int | None) -> tuple[Any, Any, int, dict[str, Any]]:
    """Both sides as sources at one rate and channel count; returns (ref, est, rate, header info).
    Files are resampled to `sample_rate` (default: the reference's rate); when the channel counts
    differ both sides are compared as mono downmixes."""
    if pair.ref_path is not None:
        ref = FileSource(pair.ref_path)
        try:
            target = int(sample_rate) if sample_rate else ref.native_rate
            est = FileSource(pair.est_path, target)
        except Exception:
            ref.close()
            raise
        if target != ref.native_rate:
            ref.close()
            ref = FileSource(pair.ref_path, target)
        if ref.native_channels != est.native_channels:
            for side in (ref, est):
                side.downmix, side.channels = side.native_channels > 1, 1
        info = {"subject": pair.subject, "ref_rate": ref.native_rate, "est_rate": est.native_rate,
                "ref_channels": ref.native_channels, "est_channels": est.native_channels}
        return ref, est, target, info
    ref_arr, est_arr = _as_channels_first(pair.ref_array), _as_channels_first(pair.est_array)
    info = {"subject": pair.subject, "ref_rate": int(sample_rate), "est_rate": int(sample_rate),
            "ref_channels": int(ref_arr.shape[0]), "est_channels": int(est_arr.shape[0])}
    if ref_arr.shape[0] != est_arr.shape[0]:
        ref_arr, est_arr = ref_arr.mean(axis=0, keepdims=True), est_arr.mean(axis=0, keepdims=True)
    return ArraySource(ref_arr, sample_rate), ArraySource(est_arr, sample_rate), int(sample_rate), info


class _Windows:
    """Evenly spaced windows of a source, joined: reads of [0, count * window) map into them."""

    def __init__(self, source: Any, starts: list[int], window: int):
        self.source, self.starts, self.window = source, starts, int(window)
        self.frames = len(starts) * self.window
        self.channels = source.channels

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = []
        position = max(start, 0)
        while position < min(stop, self.frames):
            index, offset = divmod(position, self.window)
            take = min(self.window - offset, stop - position)
            piece = self.source.read(self.starts[index] + offset, self.starts[index] + offset + take)
            parts.append(piece)
            if piece.shape[1] < take:
                break
            position += take
        return np.concatenate(parts, axis=1) if parts else np.zeros((self.channels, 0))


def _quality(ref: Any, est: Any, rate: int, lag: int) -> Any:
    """STOI/ESTOI/PESQ/multi-scale mel (measure/quality.py) on the pair aligned by its lag, as a
    QualityResult. PESQ and STOI cost about a second per 20 s segment, so a pair longer than
    QUALITY_SEGMENTS segments is scored on that many evenly spaced segments (each a whole segment,
    as the accumulator scores them), and a note says so."""
    from codecdoctor.measure.quality import DEFAULT_SEGMENT_SECONDS, quality_from_sources

    r_start, e_start = (0, lag) if lag >= 0 else (-lag, 0)
    aligned = max(0, min(ref.frames - r_start, est.frames - e_start))
    window = int(DEFAULT_SEGMENT_SECONDS * rate)
    total_segments = aligned // window if window else 0
    if total_segments <= QUALITY_SEGMENTS:
        return quality_from_sources(ref, est, rate, lag_samples=lag)
    picks = np.linspace(0, total_segments - 1, QUALITY_SEGMENTS).round().astype(int)
    starts = [int(k) * window for k in picks]
    result = quality_from_sources(_Windows(ref, [r_start + s for s in starts], window),
                                  _Windows(est, [e_start + s for s in starts], window), rate)
    result.notes.insert(0, f"quality metrics on {QUALITY_SEGMENTS} evenly spaced {DEFAULT_SEGMENT_SECONDS:g} s "
                           f"segments of the {total_segments} in the pair (aligned by its lag, {lag:+d} samples)")
    return result


def _close(*sources: Any) -> None:
    for source in sources:
        if hasattr(source, "close"):
            source.close()


def _unreadable_tail_findings(pair: _Pair, sources: tuple[Any, Any], rate: int) -> list[Finding]:
    """R315 for a side that could not be read to its end: where it stops and what was scored."""
    out = []
    for name, rel, source in (("REF", pair.ref_rel, sources[0]), ("EST", pair.est_rel, sources[1])):
        if getattr(source, "error", None) is None:
            continue
        native_rate = getattr(source, "native_rate", rate)
        frame = int(source.error_frame)
        seconds = frame / native_rate
        expected = source.declared_frames or getattr(source, "header_frames", None)
        promised = f"; the file declares {expected} samples, {expected / native_rate:.2f} s" if expected else ""
        out.append(finding(
            "R315", f"{name} {rel} cannot be read past {seconds:.3f} s (sample {frame}{promised}): {source.error}. "
                    f"The first {seconds:.3f} s were compared; the rest of the pair is not scored.",
            subject=pair.subject, severity="error",
            evidence={"readable_until_s": seconds, "readable_until_samples": frame,
                      "declared_samples": expected if expected else -1, "sample_rate": native_rate}))
    return out


def pair_record(m: PairMeasurements, ref_rel: str, est_rel: str | None, error: str | None = None) -> dict[str, Any]:
    """One entry of measurements.pairs[] (see docs/JSON.md): the contract fields first, then the rest."""
    record: dict[str, Any] = {"ref": ref_rel, "est": est_rel, "error": error}
    if m is None:
        return record
    data = _fields_of(m)
    for key in ("snr_db", "si_snr_db", "seg_snr_db", "mel_distance", "gain", "lag_samples", "correlation", "what_if"):
        record[key] = data.pop(key)
    record["subject"] = data.pop("subject", None)  # the findings' subject for this pair
    record.update(data)
    return record


def _fields_of(m: PairMeasurements) -> dict[str, Any]:
    """dataclasses.asdict for PairMeasurements, whose fields are numbers, strings and dicts or
    lists of them (one level of lists nested): asdict's recursive deep copy of every value cost a
    folder of short pairs as much as their lag searches."""
    data: dict[str, Any] = {}
    for f in dataclasses.fields(m):
        value = getattr(m, f.name)
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, list):
            value = [list(v) if isinstance(v, list) else v for v in value]
        data[f.name] = value
    return data


def _energies(m: PairMeasurements) -> tuple[float, float]:
    """(reference energy, error energy) of a scored pair, from its RMS level and SNR (sum of the
    squares would overflow for huge values; the log domain does not)."""
    signal = m.compared_samples * 10.0 ** (m.ref_rms_db / 10.0) if math.isfinite(m.ref_rms_db) else 0.0
    if m.snr_db == math.inf:
        return signal, 0.0
    if m.snr_db == -math.inf:
        return signal, math.inf
    return signal, signal / 10.0 ** (m.snr_db / 10.0)


def _aggregate(measured: list[PairMeasurements], pairs_total: int, failed: int) -> dict[str, Any]:
    scored = [m for m in measured if not m.ref_silent and m.compared_samples > 0]

    def mean(values: list[float]) -> float | None:
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else None

    signal = sum(_energies(m)[0] for m in scored)
    error = sum(_energies(m)[1] for m in scored)
    from codecdoctor.measure.metrics import energy_ratio_db

    top_ids: dict[str, int] = {}
    return {
        "pairs": pairs_total,
        "scored_pairs": len(scored),
        "unscorable_pairs": pairs_total - len(scored),
        "unreadable_or_missing": failed,
        "duration_s": float(sum(m.compared_samples / m.sample_rate for m in measured)),
        "total_snr_db": energy_ratio_db(signal, error) if scored else None,
        "mean_snr_db": mean([m.snr_db for m in scored]),
        "median_snr_db": float(np.median([m.snr_db for m in scored])) if scored else None,
        "mean_si_snr_db": mean([m.si_snr_db for m in scored]),
        "mean_seg_snr_db": mean([m.seg_snr_db for m in scored]),
        "mean_mel_distance": mean([m.mel_distance for m in scored]),
        "pairs_with_negative_snr": sum(1 for m in scored if m.snr_db < 0),
        "top_findings": top_ids,
    }


@dataclass
class _Settings:
    sample_rate: int | None
    output_bound: float | None
    max_lag_ms: float | None
    quality: bool
    keep_chunks: bool   # a single pair keeps its per-second chunks for R313


@dataclass
class _Outcome:
    """One pair's share of the report, built in a worker process or in this one."""
    pair: _Pair
    findings: list[Finding]
    checks_run: list[str]
    record: dict[str, Any]
    m: PairMeasurements | None = None          # None: the pair could not be read at all
    judged: list[Finding] = dataclasses.field(default_factory=list)
    signal: float = 0.0
    error: float = 0.0
    chunk_signal: list[float] = dataclasses.field(default_factory=list)
    chunk_error: list[float] = dataclasses.field(default_factory=list)


def _measure_one(pair: _Pair, settings: _Settings) -> _Outcome:
    """Read, measure and judge one pair; an unreadable or missing side is an R315 outcome."""
    if pair.ref_path is not None and pair.est_path is None:
        return _Outcome(pair, [finding("R315", f"No output file pairs with {pair.ref_rel} (same relative path, any "
                                       "audio extension) under EST.", subject=pair.subject, severity="error",
                                       evidence={})], ["R315"],
                        pair_record(None, pair.ref_rel, None, error="missing counterpart in EST"))
    try:
        ref_src, est_src, rate, info = _open_pair(pair, settings.sample_rate)
    except UnreadableAudio as exc:  # the reader's words (not audio, a damaged header, no permission)
        side = ("REF", pair.ref_rel) if exc.path == pair.ref_path else ("EST", pair.est_rel)
        return _unmeasured(pair, f"{side[0]} {side[1]}: {exc}")
    except Exception as exc:  # soundfile raises several types for corrupt or odd files
        return _unmeasured(pair, f"{type(exc).__name__}: {exc}".strip())
    file_run = run_checks("reconstruction", info, level="file")
    lag = None if settings.max_lag_ms is None else max(0, int(round(settings.max_lag_ms * rate / 1000.0)))
    chunks = ChunkEnergies(max(1, int(CHUNK_SECONDS * rate)))
    try:
        m = measure_pair_stream(ref_src, est_src, rate, subject=pair.subject, output_bound=settings.output_bound,
                                max_lag_samples=lag, chunks=chunks)
        if settings.quality and not m.ref_silent and m.compared_samples > 0:
            # after the measurement, on its sources: pass 1 has cut a side that ends early to what it could read
            _quality(ref_src, est_src, rate, m.lag_samples).apply_to(m)
    finally:
        _close(ref_src, est_src)
    findings, ran = judge_pair(m)
    tail = _unreadable_tail_findings(pair, (ref_src, est_src), rate)
    # judge_pair's order is kept within a severity (a stable sort); file-level findings join it
    ordered = sorted(tail + file_run.findings + findings, key=lambda f: -int(f.severity))
    error = "; ".join(f.message for f in tail) or None
    outcome = _Outcome(pair, ordered, file_run.checks_run + ran + (["R315"] if tail else []),
                       pair_record(m, pair.ref_rel, pair.est_rel, error=error), m, findings,
                       float(sum(chunks.signal)), float(sum(chunks.error)))
    if settings.keep_chunks:
        outcome.chunk_signal, outcome.chunk_error = list(chunks.signal), list(chunks.error)
    return outcome


def _jobs(jobs: int | None, pairs: list[_Pair], arrays: bool) -> int:
    """Worker processes: none for arrays or a single pair (nothing to spread; a long pair streams)."""
    if arrays or len(pairs) < 2:
        return 1
    return max(1, min(int(jobs) if jobs else (os.cpu_count() or 1), len(pairs)))


# A worker gets consecutive pairs in batches of up to this many bytes of audio files (about two
# minutes of 16-bit 16 kHz mono per side) and BATCH_PAIRS pairs: a hand-off per short pair costs
# the parent process pickling and a wake-up on cores the workers need, and a batch this small
# still spreads a folder's tail evenly.
BATCH_BYTES = 4 << 20
BATCH_PAIRS = 16


def _pair_bytes(pair: _Pair) -> int:
    size = 0
    for path in (pair.ref_path, pair.est_path):
        try:
            size += path.stat().st_size if path is not None else 0
        except OSError:  # unreadable: _measure_one says so
            pass
    return size


def _batches(pairs: list[_Pair], jobs: int) -> list[list[int]]:
    """Indices of consecutive pairs, grouped by BATCH_BYTES and BATCH_PAIRS (core.pool.batches), and
    into at least four batches per worker so that no worker waits on another's last batch for long."""
    from codecdoctor.core.pool import batches

    limit = max(1, min(BATCH_PAIRS, len(pairs) // (4 * jobs)))
    return batches([_pair_bytes(pair) for pair in pairs], max_bytes=BATCH_BYTES, max_items=limit)


def _unmeasured(pair: _Pair, reason: str) -> _Outcome:
    """An R315 outcome for a pair that could not be measured at all."""
    return _Outcome(pair, [finding("R315", f"Cannot read the pair: {reason}", subject=pair.subject,
                                   severity="error", evidence={})], ["R315"],
                    pair_record(None, pair.ref_rel, pair.est_rel, error=reason))


def _measure_all(pairs: list[_Pair], settings: _Settings, jobs: int,
                 progress: Callable[[int, int, str], None] | None):
    """Each pair's outcome, in the pairs' order. With several workers the pairs are measured in
    batches in the one process pool (core.pool); a pair whose worker died with it, even alone, is
    an R315 outcome naming it, and the other pairs' outcomes are kept."""
    def told(index: int, outcome: _Outcome) -> _Outcome:
        if progress is not None:
            progress(index + 1, len(pairs), outcome.pair.subject)
        return outcome

    if jobs <= 1:
        for index, pair in enumerate(pairs):
            yield told(index, _measure_one(pair, settings))
        return
    import functools

    # imported once here, before the fork, rather than once in every worker: every worker's first
    # pair would import them, and this process needs scipy.fft afterwards for the worst pair's excerpt
    import scipy.fft  # noqa: F401

    import codecdoctor.checks.reconstruction  # noqa: F401
    import codecdoctor.measure.audio.reader  # noqa: F401
    import codecdoctor.measure.excerpt  # noqa: F401
    from codecdoctor.core.pool import Lost, run_isolated
    from codecdoctor.core.tuning import tune_worker

    done: dict[int, _Outcome] = {}
    for index, outcome in run_isolated(functools.partial(_measure_one, settings=settings), pairs, jobs=jobs,
                                       groups=_batches(pairs, jobs), initializer=tune_worker):
        if isinstance(outcome, Lost):
            outcome = _unmeasured(pairs[index], outcome.reason)
        done[index] = told(len(done), outcome)
    for index in range(len(pairs)):
        yield done[index]


def compare(ref: Any, est: Any, *, sample_rate: int | None = None, output_bound: float | None = None,
            max_lag_ms: float | None = None, quality: bool = True, jobs: int | None = None,
            progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Compare a reference with an estimate (reconstruction) and diagnose the difference.

    `ref`/`est`: two audio files, two folders (paired by relative path; another audio extension with
    the same stem also pairs), or two arrays (time on the last axis; `sample_rate` required). For
    files, `sample_rate` resamples both sides to that rate. `output_bound`: the decoder's output
    bound if known (1.0 for tanh), for R307. `max_lag_ms`: lag search window (default 500 ms).
    `quality`: also STOI, ESTOI, PESQ and the multi-scale mel distance per pair (measure/quality.py;
    null with a note without the optional packages). `jobs`: worker processes for a folder of pairs
    (default: the machine's cores; 1 = this process); the report is the same whatever the count.
    `progress(done, total, subject)` is called after each pair. Returns a Report whose
    measurements hold `pairs[]` and `aggregate` (see docs/JSON.md)."""
    arrays = not isinstance(ref, (str, os.PathLike)) or not isinstance(est, (str, os.PathLike))
    notes: list[str] = []
    if arrays:
        if isinstance(ref, (str, os.PathLike)) or isinstance(est, (str, os.PathLike)):
            raise InputError("REF and EST must both be paths or both be arrays")
        if not sample_rate or sample_rate <= 0:
            raise InputError("sample_rate is required when comparing arrays")
        pairs = [_Pair("pair", "ref", "est", ref_array=ref, est_array=est)]
        root_args = {"ref": "<array>", "est": "<array>"}
    else:
        pairs, notes = _pairs_from_paths(Path(ref), Path(est))
        root_args = {"ref": os.fspath(ref), "est": os.fspath(est)}
    if sample_rate is not None and sample_rate <= 0:
        raise InputError(f"sample rate must be positive, got {sample_rate}")
    if output_bound is not None and not output_bound > 0:
        raise InputError(f"output bound must be positive, got {output_bound}")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")

    report = Report(command="compare", args={**root_args, "sample_rate": sample_rate, "output_bound": output_bound,
                                             "max_lag_ms": max_lag_ms, "quality": quality})
    report.notes.extend(notes)
    records: list[dict[str, Any]] = []
    measured: list[tuple[_Pair, PairMeasurements, list[Finding]]] = []
    set_signal: list[float] = []
    set_error: list[float] = []
    single_chunks: tuple[list[float], list[float]] = ([], [])
    failed = 0
    settings = _Settings(sample_rate, output_bound, max_lag_ms, quality, keep_chunks=len(pairs) == 1)
    for outcome in _measure_all(pairs, settings, _jobs(jobs, pairs, arrays), progress):
        pair = outcome.pair
        report.add(outcome.findings, outcome.checks_run, internal_errors(outcome.record.get("notes") or ()))
        records.append(outcome.record)
        if outcome.m is None:
            failed += 1
            continue
        measured.append((pair, outcome.m, outcome.judged))
        set_signal.append(outcome.signal)
        set_error.append(outcome.error)
        single_chunks[0].extend(outcome.chunk_signal)
        single_chunks[1].extend(outcome.chunk_error)

    # R313: the user's averaging over files (folders) or over one-second chunks (one pair).
    if len(pairs) > 1:
        chunk_set = chunk_set_from_energies(set_signal, set_error, subject="all pairs (per file)")
    else:
        chunk_set = chunk_set_from_energies(*single_chunks, subject=f"{pairs[0].subject} (per {CHUNK_SECONDS:g} s chunk)")
    set_run = run_checks("reconstruction", chunk_set, level="set")
    report.add(set_run.findings, set_run.checks_run, set_run.notes)

    aggregate = _aggregate([m for _, m, _ in measured], len(pairs), failed)
    for _, _, findings in measured:
        top = next((f for f in findings if f.id != "R300"), None)
        if top is not None:
            aggregate["top_findings"][top.id] = aggregate["top_findings"].get(top.id, 0) + 1
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb", "multiscale_mel_distance"):
        values = [getattr(m, key) for _, m, _ in measured if getattr(m, key) is not None]
        aggregate[f"mean_{key}"] = float(np.mean(values)) if values else None
    aggregate["mean_chunk_snr_db"] = chunk_set.mean_chunk_snr_db
    aggregate["silent_chunks"] = chunk_set.silent_chunks
    aggregate["chunks"] = chunk_set.chunks
    report.measurements = {"pairs": records, "aggregate": aggregate}
    excerpt = _worst_pair_excerpt(measured, sample_rate, report.notes)
    if excerpt is not None:
        report.measurements["excerpt"] = excerpt
    return report


def _worst_pair_excerpt(measured: list, sample_rate: int | None, notes: list[str]) -> dict[str, Any] | None:
    """The bounded excerpt of the lowest-SNR scored pair, which the report's figures draw: only its
    first EXCERPT_SECONDS are read again."""
    from codecdoctor.measure.excerpt import EXCERPT_SECONDS, pair_excerpt

    scored = [item for item in measured if not item[1].ref_silent and item[1].compared_samples > 0]
    if not scored:
        return None
    pair, m, _ = min(scored, key=lambda item: item[1].snr_db)
    try:
        ref, est, rate, _ = _open_pair(pair, sample_rate)
        try:
            frames = int(EXCERPT_SECONDS * rate)
            ref_audio, est_audio = ref.read(0, frames), est.read(0, frames)
        finally:
            _close(ref, est)
    except Exception as exc:  # the file changed since it was measured: say so, keep the report
        notes.append(f"figures skipped: cannot re-read {pair.subject}: {exc}")
        return None
    excerpt = pair_excerpt(ref_audio, est_audio, rate, pair.subject)
    excerpt["ref"] = pair.ref_rel
    return excerpt
