"""`audit_data(DIR)`: stream every audio file under DIR once and judge the corpus (checks D100-D115).

Measure once, judge many: files are measured in parallel processes (codecdoctor.audio), the
parent folds per-file results into corpus totals as they arrive (bounded memory: one row per file,
one pooled histogram, a capped set of level envelopes), then `judge()` runs the D1xx checks. A
shard (`shard=(i, n)`) measures every n-th entry and writes the same JSON; `merge_partials`
concatenates shards' rows, re-runs `judge()` and so gives exactly the numbers of a single run.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from codecdoctor.checks.data import CorpusView, DataThresholds
from codecdoctor.core.errors import InputError
from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.core.registry import finding, run_checks
from codecdoctor.measure.audio.accumulator import HIST_BINS, HIST_BINS_PER_UNIT, HIST_FRAME_STRIDE, HIST_LIMIT
from codecdoctor.measure.audio.discover import Entry, discover, display_path
from codecdoctor.measure.audio.file import FileMeasurement, measure_file

MAX_FINDINGS_PER_CHECK = 200  # beyond this one summary finding per check (100,000-file corpora)
MAX_ENVELOPES = 24  # level-over-time strips kept for the worst-flagged files
BATCH_BYTES = 64 << 20  # small files travel to workers in batches of about this many bytes ...
BATCH_FILES = 64  # ... or this many files, so per-task overhead stays small for 100,000 clips


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """'2/8' -> (2, 8): shard 2 of 8 (1-based)."""
    if text is None or text == "":
        return None
    if isinstance(text, tuple):
        index, count = text
    else:
        try:
            left, right = str(text).split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise InputError(f"--shard must look like i/n (e.g. 2/8), got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {index}/{count}: need 1 <= i <= n")
    return index, count


def _sampled(relpath: str, fraction: float) -> bool:
    """Deterministic file sampling: the same files on every machine and every run."""
    digest = hashlib.blake2b(relpath.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64 < fraction


def _measure_batch(batch: list[tuple[str, str]], silence_threshold_db: float) -> list[FileMeasurement]:
    """Worker entry point: measure a batch of (absolute path, relative path)."""
    return [measure_file(path, rel, silence_threshold_db=silence_threshold_db) for path, rel in batch]


def _batches(entries: list[Entry]) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    size = 0
    for e in entries:
        batch.append((os.fspath(e.path), e.relpath))
        size += e.size_bytes
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _measure_all(entries: list[Entry], jobs: int, silence_threshold_db: float,
                 on_started: Any = None) -> Iterator[FileMeasurement]:
    """Measurements in completion order. jobs == 1 runs in this process (no pool, no pickling).
    `on_started()` is called once the workers exist: the progress bar's thread must start after
    the fork, never before (a forked child inherits locks a thread may hold)."""
    if jobs <= 1 or len(entries) <= 1:
        if on_started is not None:
            on_started()
        for e in entries:
            yield measure_file(e.path, e.relpath, silence_threshold_db=silence_threshold_db)
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    # Large files first, so the last worker is not left alone with a 2-hour file at the end.
    ordered = sorted(entries, key=lambda e: -e.size_bytes)
    batches = list(_batches(ordered))
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(batches)), mp_context=mp.get_context(method)) as pool:
        pending = {pool.submit(_measure_batch, b, silence_threshold_db) for b in batches}
        if on_started is not None:
            on_started()
        for future in cf.as_completed(pending):
            yield from future.result()


class _Progress:
    """Counts files, audio hours and bytes and hands them to the caller's callback as
    `progress(done_bytes, total_bytes, detail)`; drawing a bar is the CLI's job."""

    def __init__(self, callback: Callable[[float, float, str], None] | None, total_files: int, total_bytes: int) -> None:
        self.callback = callback
        self.t0 = time.perf_counter()
        self.files = 0
        self.hours = 0.0
        self.done_bytes = 0
        self.total_files = total_files
        self.total_bytes = max(total_bytes, 1)  # progress is in bytes: what the work is proportional to

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def advance(self, m: FileMeasurement) -> None:
        self.files += 1
        self.hours += (m.duration_s or 0.0) / 3600.0
        self.done_bytes += max(m.size_bytes or 0, 1)
        if self.callback is None:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.callback(self.done_bytes, self.total_bytes,
                      f"{self.files}/{self.total_files} files  {self.files / elapsed:.1f} files/s  "
                      f"{self.hours / elapsed:.2f} audio-h/s")

    def close(self) -> None:
        pass


def _row_for_entry(e: Entry) -> FileMeasurement:
    return FileMeasurement(path=e.relpath, kind=e.kind, size_bytes=e.size_bytes or None, error=e.reason)


# --------------------------------------------------------------------------------------------------
# Judge: rows + pooled extras -> Report (shared by audit_data and merge_partials)
# --------------------------------------------------------------------------------------------------

@dataclass
class _Extras:
    histogram: np.ndarray
    envelopes: dict[str, dict[str, list[float]]]


def _file_findings(row: FileMeasurement, thresholds: DataThresholds) -> tuple[list[str], list[Finding]]:
    run = run_checks("data", row, thresholds, level="file")
    return run.checks_run, run.findings


def _cap(findings: list[Finding]) -> list[Finding]:
    """At most MAX_FINDINGS_PER_CHECK per check ID; the rest become one summary finding each."""
    by_id: Counter[str] = Counter()
    kept: list[Finding] = []
    dropped: dict[str, list[Finding]] = {}
    for f in findings:
        by_id[f.id] += 1
        if by_id[f.id] <= MAX_FINDINGS_PER_CHECK:
            kept.append(f)
        else:
            dropped.setdefault(f.id, []).append(f)
    for check_id, rest in dropped.items():
        worst = max(f.severity for f in rest)
        kept.append(finding(check_id, f"{len(rest)} more files have this finding (not listed one by one; "
                            f"measurements.files[] has every row)", subject=None, severity=worst,
                            evidence={"more_files": len(rest)}))
    return kept


def corpus_summary(rows: list[FileMeasurement], histogram: np.ndarray) -> dict[str, Any]:
    audio = [r for r in rows if r.kind == "audio" and r.frames]
    level_frames = sum(r.level_frames or 0 for r in audio)
    def hist(key: str) -> dict[str, int]:
        return {str(k): v for k, v in sorted(Counter(getattr(r, key) for r in audio).items(), key=lambda kv: str(kv[0]))}
    return {
        "files": len(rows),
        "audio_files": len(audio),
        "unreadable_files": sum(1 for r in rows if r.kind in ("unreadable", "symlink_loop")
                                or (r.kind == "audio" and r.error and not r.frames)),
        "skipped_entries": sum(1 for r in rows if r.kind in ("non_audio", "directory", "directory_loop")),
        "hours": sum(r.duration_s or 0.0 for r in audio) / 3600.0,
        "bytes": sum(r.size_bytes or 0 for r in rows),
        "sample_rates": hist("sample_rate"),
        "channels": {str(k): v for k, v in sorted(Counter(r.channels for r in audio).items())},
        "formats": {k: v for k, v in sorted(Counter(f"{r.format}/{r.subtype}" for r in audio).items())},
        "samples": sum((r.frames or 0) * (r.channels or 1) for r in audio),
        "overs": sum(r.overs or 0 for r in audio),
        "clipped_samples": sum(r.clipped_samples or 0 for r in audio),
        "nonfinite": sum(r.nonfinite or 0 for r in audio),
        "max_abs": max((r.peak for r in audio if r.peak is not None), default=None),
        "silence_fraction": (sum(r.silent_frames or 0 for r in audio) / level_frames) if level_frames else None,
        "amplitude_histogram": {
            "range": [-HIST_LIMIT, HIST_LIMIT], "bins_per_unit": HIST_BINS_PER_UNIT,
            "first_and_last_are_overflow": True, "sampled_every_nth_20ms_frame": HIST_FRAME_STRIDE,
            "counts": [int(v) for v in histogram],
        },
    }


def judge(rows: list[FileMeasurement], extras: _Extras, thresholds: DataThresholds, *, args: dict[str, Any],
          notes: Iterable[str] = (), shard: tuple[int, int] | None = None) -> Report:
    rows = sorted(rows, key=lambda r: r.path)
    report = Report(command="audit-data", args=dict(args))
    findings: list[Finding] = []
    checks_run: list[str] = []
    for row in rows:
        ran, produced = _file_findings(row, thresholds)
        checks_run.extend(c for c in ran if c not in checks_run)
        findings.extend(produced)
    summary = corpus_summary(rows, extras.histogram)
    corpus_run = run_checks("data", CorpusView(rows, summary), thresholds, level="corpus")
    checks_run.extend(c for c in corpus_run.checks_run if c not in checks_run)
    findings.extend(corpus_run.findings)
    report.add(_cap(findings), sorted(checks_run))
    report.measurements = {
        "files": [r.to_json() for r in rows],
        "corpus": summary,
        "thresholds": thresholds.to_dict(),
        "envelopes": extras.envelopes,
    }
    if shard is not None:
        report.measurements["shard"] = {"index": shard[0], "count": shard[1]}
    report.notes.extend(notes)
    return report


class _EnvelopeKeeper:
    """Keeps the level envelopes of the MAX_ENVELOPES worst-flagged files (severity, then path),
    so memory stays bounded and shards merge to the same selection as one run."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, str, str, dict]] = []  # (severity, inverted path key, path, env)

    def offer(self, path: str, severity: int, envelope: dict | None) -> None:
        if not envelope:
            return
        # heap root = the entry to drop first: lowest severity, then the largest path.
        key = (severity, _invert(path), path, envelope)
        if len(self.heap) < MAX_ENVELOPES:
            heapq.heappush(self.heap, key)
        elif key[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, key)

    def result(self) -> dict[str, dict]:
        return {path: env for _, _, path, env in sorted(self.heap, key=lambda k: (-k[0], k[2]))}


def _invert(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text) + (1,)


# --------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------

def audit_data(directory: str | os.PathLike, *, jobs: int | None = None, sample_rate: int | None = None,
               shard: str | tuple[int, int] | None = None, sample: float | None = None,
               silence_threshold_db: float = -60.0, max_silence_fraction: float = 0.30,
               long_file_s: float = 600.0, progress: Callable[[float, float, str], None] | None = None,
               thresholds: DataThresholds | None = None) -> Report:
    """Audit every audio file under `directory`; returns a Report (JSON contract: DESIGN 4b).

    jobs: worker processes (default: the machine's cores). shard: 'i/n' measures every n-th entry
    (combine the partial JSONs with `merge_partials`). sample: audit only this fraction of the
    files (deterministic by path); statistics within a file are always exact. progress: called as
    `progress(done_bytes, total_bytes, detail)` after each file (the CLI draws a bar from it).
    Figures are drawn only when the HTML view is rendered.
    """
    root = Path(directory)
    if not root.exists():
        raise InputError(f"{display_path(root)}: no such folder")
    if not root.is_dir():
        raise InputError(f"{display_path(root)}: not a folder (audit-data takes a folder of audio files)")
    if thresholds is None:
        thresholds = DataThresholds(silence_threshold_db=silence_threshold_db, max_silence_fraction=max_silence_fraction,
                                    sample_rate=sample_rate, long_file_s=long_file_s)
    if sample is not None and not 0.0 < float(sample) <= 1.0:
        raise InputError(f"--sample must be a fraction in (0, 1], got {sample}")
    shard_t = parse_shard(shard)
    jobs = int(jobs) if jobs else (os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")

    entries = discover(root)
    if not any(e.kind == "audio" for e in entries):
        others = len(entries)
        raise InputError(f"{display_path(root)}: no audio files found ({others} other entries)")
    notes = []
    if sample is not None and sample < 1.0:
        before = sum(1 for e in entries if e.kind == "audio")
        entries = [e for e in entries if e.kind != "audio" or _sampled(e.relpath, float(sample))]
        after = sum(1 for e in entries if e.kind == "audio")
        notes.append(f"--sample {sample}: audited {after} of {before} audio files (chosen by path hash); "
                     "corpus totals cover those files only")
    if shard_t is not None:
        index, count = shard_t
        entries = [e for i, e in enumerate(entries) if i % count == index - 1]
        notes.append(f"shard {index}/{count}: {len(entries)} entries; combine the shards with `codecdoctor merge`")

    audio = [e for e in entries if e.kind == "audio"]
    rows = [_row_for_entry(e) for e in entries if e.kind != "audio"]
    histogram = np.zeros(HIST_BINS, np.int64)
    keeper = _EnvelopeKeeper()
    bar = _Progress(progress, len(audio), sum(e.size_bytes for e in audio))
    started = time.perf_counter()
    try:
        for m in _measure_all(audio, jobs, thresholds.silence_threshold_db, on_started=bar.start):
            if m.histogram is not None:
                histogram += np.asarray(m.histogram, np.int64)
            _, produced = _file_findings(m, thresholds)
            worst = max((f.severity for f in produced), default=None)
            if worst is not None and worst >= Severity.WARNING:
                keeper.offer(m.path, int(worst), m.envelope)
            m.histogram = m.envelope = None  # folded into the corpus; rows stay small
            rows.append(m)
            bar.advance(m)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started

    args = {"directory": display_path(root), "jobs": jobs, "sample_rate": sample_rate,
            "shard": f"{shard_t[0]}/{shard_t[1]}" if shard_t else None, "sample": sample,
            "silence_threshold_db": thresholds.silence_threshold_db,
            "max_silence_fraction": thresholds.max_silence_fraction, "long_file_s": thresholds.long_file_s}
    report = judge(rows, _Extras(histogram, keeper.result()), thresholds, args=args, notes=notes, shard=shard_t)
    hours = report.measurements["corpus"]["hours"]
    report.measurements["timing"] = {"seconds": elapsed, "audio_hours_per_second": hours / elapsed if elapsed > 0 else None}
    return report


def merge_partials(paths: Iterable[str | os.PathLike]) -> Report:
    """Combine partial audit-data JSON reports (from `--shard i/n`) into the report one run gives."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("merge: no partial reports given")
    rows: list[FileMeasurement] = []
    histogram = np.zeros(HIST_BINS, np.int64)
    keeper = _EnvelopeKeeper()
    thresholds: DataThresholds | None = None
    shards: dict[int, int] = {}
    envelopes: dict[str, dict] = {}
    base_args: dict[str, Any] = {}
    for p in paths:
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            partial = Report.from_dict(data)
        except FileNotFoundError:
            raise InputError(f"{display_path(p)}: no such file") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{display_path(p)}: not a codecdoctor JSON report ({exc})") from None
        if partial.command != "audit-data":
            raise InputError(f"{display_path(p)}: a '{partial.command}' report, not audit-data")
        m = partial.measurements
        t = DataThresholds.from_dict(m.get("thresholds") or {})
        if thresholds is not None and t != thresholds:
            raise InputError(f"{display_path(p)}: audited with different thresholds than {display_path(paths[0])}")
        thresholds = t
        shard = m.get("shard") or {}
        if shard:
            index, count = int(shard["index"]), int(shard["count"])
            if shards and next(iter(shards.values())) != count:
                raise InputError(f"{display_path(p)}: shard of {count}, others are of {next(iter(shards.values()))}")
            if index in shards:
                raise InputError(f"{display_path(p)}: shard {index}/{count} given twice")
            shards[index] = count
        rows.extend(FileMeasurement.from_json(r) for r in m.get("files") or [])
        counts = ((m.get("corpus") or {}).get("amplitude_histogram") or {}).get("counts")
        if counts and len(counts) == HIST_BINS:
            histogram += np.asarray(counts, np.int64)
        envelopes.update(m.get("envelopes") or {})
        base_args = base_args or dict(partial.args)
    # Same selection rule as a single run: worst file-level severity, then path.
    by_path = {r.path: r for r in rows}
    for path, env in envelopes.items():
        row = by_path.get(path)
        if row is not None:
            worst = max((f.severity for f in _file_findings(row, thresholds or DataThresholds())[1]), default=None)
            keeper.offer(path, int(worst if worst is not None else Severity.WARNING), env)
    notes = []
    if shards:
        count = next(iter(shards.values()))
        missing = sorted(set(range(1, count + 1)) - set(shards))
        if missing:
            notes.append(f"incomplete merge: shards {', '.join(f'{i}/{count}' for i in missing)} are missing")
    args = {**base_args, "shard": None, "merged_from": [display_path(p) for p in paths]}
    report = judge(rows, _Extras(histogram, keeper.result()), thresholds or DataThresholds(), args=args, notes=notes)
    return report
