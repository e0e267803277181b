"""`audit_data(LOCATION)`: stream every audio file of a corpus once and judge it (checks D100-D116).

Measure once, judge many. A corpus (a folder, object storage through fsspec, WebDataset tar
shards, Hugging Face parquet, a lhotse manifest; see measure/audio/sources.py) is listed into
file-sized tasks. Each task is measured where it runs (this process, a worker process, or a Dask
worker), its files' checks run once right there, and the result is a `CorpusAccumulator`: rows,
file findings, the pooled amplitude histogram and the level envelopes of the worst-flagged files,
each field with its reduction declared once. Accumulators `combine()` into new ones, in any
grouping and order (worker batches, `--shard` partials read back by `merge_partials`, a Dask tree
reduction), and `judge()` runs the corpus-level checks once on the total. So one run, a shard +
merge run and a Dask run give the same JSON.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from codecdoctor.checks.data import CorpusView, DataThresholds
from codecdoctor.core.errors import InputError
from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.core.pool import Lost, batches, run_isolated
from codecdoctor.core.registry import finding, run_checks
from codecdoctor.measure.audio.accumulator import (
    HIST_BINS,
    HIST_BINS_PER_UNIT,
    HIST_FRAME_STRIDE,
    HIST_LIMIT,
    Fold,
    add,
    combine_all,
    combine_fields,
    reduced,
)
from codecdoctor.measure.audio.file import FileMeasurement, FilePart, file_part_count, measure_file, measure_file_part
from codecdoctor.measure.audio.sources import (
    Corpus,
    SourceError,
    Storage,
    Task,
    is_url,
    measure_task,
    open_corpus,
    public_url,
)

MAX_FINDINGS_PER_CHECK = 200  # beyond this one summary finding per check (100,000-file corpora)
MAX_ENVELOPES = 24  # level-over-time strips kept for the worst-flagged files
BATCH_BYTES = 64 << 20  # small files travel to workers in batches of about this many bytes ...
BATCH_FILES = 64  # ... or this many files, so per-task overhead stays small for 100,000 clips
DASK_BATCH_BYTES = 32 << 20  # a Dask task: up to 32 MB or 16 small files (long files go alone)
DASK_BATCH_FILES = 16
SPLIT_BYTES = 32 << 20  # with several workers, a file on disk this large is measured in parallel parts
THREADS_FOR_ONE_FILE = 2  # up to this many workers, one long file alone is measured on threads (see below)
CUT_CHECKS = ("D101", "D113")  # what a lhotse cut's duration alone can tell


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


# --------------------------------------------------------------------------------------------------
# The corpus accumulator: what a task returns, what shards and Dask combine
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileAudit:
    """One row of measurements.files[] with its file-level judgement (run once, where measured)."""

    row: FileMeasurement
    findings: tuple[Finding, ...]
    checks_run: tuple[str, ...]
    notes: tuple[str, ...] = ()  # a check's internal error (see core.registry.run_checks)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)


def audit_row(row: FileMeasurement, thresholds: DataThresholds, only: Iterable[str] | None = None) -> FileAudit:
    """The file-level D1xx checks on one row: the single place they run."""
    run = run_checks("data", row, thresholds, level="file", only=only)
    return FileAudit(row, tuple(run.findings), tuple(run.checks_run), tuple(run.notes))


def _keep_worst(mine: tuple, theirs: tuple) -> tuple:
    """(severity, path, envelope) entries: the MAX_ENVELOPES worst, ties by path, so any grouping
    of the same files keeps the same selection."""
    return tuple(sorted(mine + theirs, key=lambda e: (-e[0], e[1]))[:MAX_ENVELOPES])


def _no_histogram() -> np.ndarray:
    return np.zeros(HIST_BINS, np.int64)


@dataclass(frozen=True, eq=False)
class CorpusAccumulator:
    """Everything judge() needs, bounded per file: rows with their file findings, the pooled
    amplitude histogram and the envelopes of the worst-flagged files. Each field declares how it
    combines; `combine()` returns a new accumulator and changes neither input."""

    files: tuple[FileAudit, ...] = reduced(add, default=())
    cuts: tuple[FileAudit, ...] = reduced(add, default=())
    histogram: np.ndarray = reduced(add, default_factory=_no_histogram)
    envelopes: tuple[tuple[int, str, dict], ...] = reduced(_keep_worst, default=())

    def combine(self, other: "CorpusAccumulator") -> "CorpusAccumulator":
        return combine_fields(self, other)

    @classmethod
    def of_row(cls, row: FileMeasurement, thresholds: DataThresholds,
               envelope: dict | None = None) -> "CorpusAccumulator":
        """One measured row: its checks run here; its histogram and envelope fold into the corpus."""
        histogram = np.asarray(row.histogram, np.int64) if row.histogram is not None else _no_histogram()
        envelope = envelope if envelope is not None else row.envelope
        audit = audit_row(replace(row, histogram=None, envelope=None), thresholds)
        worst = audit.worst
        keep = ((int(worst), audit.row.path, envelope),) if envelope and worst is not None and worst >= Severity.WARNING else ()
        return cls(files=(audit,), histogram=histogram, envelopes=keep)

    @classmethod
    def of_cut(cls, row: FileMeasurement, thresholds: DataThresholds) -> "CorpusAccumulator":
        return cls(cuts=(audit_row(row, thresholds, only=CUT_CHECKS),))

    @classmethod
    def from_partial(cls, measurements: dict[str, Any], thresholds: DataThresholds) -> "CorpusAccumulator":
        """The accumulator a partial (`--shard`) JSON report was judged from."""
        envelopes = measurements.get("envelopes") or {}
        fold = Fold()
        for data in measurements.get("files") or []:
            row = FileMeasurement.from_json(data)
            fold.add(cls.of_row(row, thresholds, envelope=envelopes.get(row.path)))
        for data in measurements.get("cuts") or []:
            fold.add(cls.of_cut(FileMeasurement.from_json(data), thresholds))
        counts = ((measurements.get("corpus") or {}).get("amplitude_histogram") or {}).get("counts")
        if counts and len(counts) == HIST_BINS:
            fold.add(cls(histogram=np.asarray(counts, np.int64)))
        return fold.result(cls())


def audit_task(task: Task, thresholds: DataThresholds) -> CorpusAccumulator:
    """Measure one task and judge its files (worker entry point for processes and Dask)."""
    fold = Fold()
    for row in measure_task(task, silence_threshold_db=thresholds.silence_threshold_db):
        fold.add(CorpusAccumulator.of_row(row, thresholds))
    return fold.result(CorpusAccumulator())


def _audit_batch(batch: list[Task], thresholds: DataThresholds) -> CorpusAccumulator:
    """A Dask task: several tasks' accumulators combined."""
    return combine_all([audit_task(t, thresholds) for t in batch], CorpusAccumulator())


def _audit_item(item: tuple[str, Task, int], thresholds: DataThresholds) -> CorpusAccumulator | FilePart:
    """One pool item: a whole task ("task") or one part of a long file ("part", measured alone)."""
    kind, task, index = item
    if kind == "part":
        return measure_file_part(task.path, index, silence_threshold_db=thresholds.silence_threshold_db)
    return audit_task(task, thresholds)


def _task_batches(tasks: list[Task], max_bytes: int = BATCH_BYTES, max_files: int = BATCH_FILES) -> list[list[Task]]:
    """Consecutive tasks in batches (core.pool.batches); a task that is not a plain audio file goes alone."""
    sizes = [t.size_bytes if t.kind == "audio" else max_bytes for t in tasks]
    return [[tasks[i] for i in group] for group in batches(sizes, max_bytes=max_bytes, max_items=max_files)]


def _unmeasured(task: Task, lost: Lost, thresholds: DataThresholds) -> CorpusAccumulator:
    """A task whose worker died with it alone, or whose measurement raised: a D100 row saying so."""
    return CorpusAccumulator.of_row(FileMeasurement(path=task.subject, kind="unreadable",
                                                    size_bytes=task.size_bytes or None, error=lost.reason), thresholds)


def _audit_parts_on_threads(task: Task, parts: int, jobs: int, thresholds: DataThresholds) -> CorpusAccumulator:
    """A run of one long file on a few cores (up to THREADS_FOR_ONE_FILE workers): its parts
    measured on `jobs` threads of this process and joined as parts from worker processes are (the
    same numbers). numpy and libsndfile release the GIL in the per-block loops, so two threads
    measure in parallel, and they start no process, import no pool and warm no second heap: the
    one-file row of bench_speed took 0.38 s against 0.41 s with two worker processes on a quiet
    machine, 0.46 s against 0.53 s on a busy one (6-14% of the row; medians of 7 and 9
    interleaved runs). About 30% of a measuring thread's time holds the GIL (py-spy --gil), so on
    more cores processes scale further. A part that raises (the file changed since it was opened)
    has the file measured in one pass, whose row then says what failed."""
    from concurrent.futures import ThreadPoolExecutor

    options = {"silence_threshold_db": thresholds.silence_threshold_db}
    threads = ThreadPoolExecutor(max_workers=jobs)
    measured = None
    try:
        measured = list(threads.map(functools.partial(measure_file_part, task.path, **options), range(parts)))
    except Exception:  # noqa: BLE001 - measured again below, where a failure becomes the row's error
        pass
    finally:  # after a failure or Ctrl-C, the parts not started yet are dropped, not measured
        threads.shutdown(wait=True, cancel_futures=True)
    if measured is None:
        return audit_task(task, thresholds)
    return CorpusAccumulator.of_row(measure_file(task.path, task.subject, parts=measured, **options), thresholds)


def _audit_all(tasks: list[Task], jobs: int, thresholds: DataThresholds,
               on_started: Callable[[], None]) -> Iterator[tuple[int, CorpusAccumulator]]:
    """(tasks done, their accumulator) per task, in completion order. jobs == 1 runs in this
    process (no pool, no pickling). With several workers (core.pool), a long file on disk is
    measured as its parts in parallel (the same parts measure_file reads one after another, so the
    numbers are identical) and joined here; a long file audited alone on a few cores has its parts
    measured on threads instead (`_audit_parts_on_threads`). `on_started()` is called once the
    work is handed out."""
    # Large files first, so the last worker is not left alone with a 2-hour file at the end.
    ordered = sorted(tasks, key=lambda t: -t.size_bytes)
    split = {} if jobs <= 1 else {
        t.subject: n for t in ordered if t.kind == "audio" and t.storage.protocol is None
        and t.size_bytes >= SPLIT_BYTES and (n := file_part_count(t.path)) > 1}
    if jobs <= 1 or (len(tasks) <= 1 and not split):
        on_started()
        for task in tasks:
            yield 1, audit_task(task, thresholds)
        return
    if len(tasks) == 1 and jobs <= THREADS_FOR_ONE_FILE:
        on_started()
        yield 1, _audit_parts_on_threads(tasks[0], split[tasks[0].subject], jobs, thresholds)
        return
    items: list[tuple[str, Task, int]] = [("part", t, index) for t in ordered for index in range(split.get(t.subject, 0))]
    groups = [[i] for i in range(len(items))]   # a part is a batch of its own
    for batch in _task_batches([t for t in ordered if t.subject not in split]):
        groups.append(list(range(len(items), len(items) + len(batch))))
        items += [("task", t, 0) for t in batch]
    on_started()
    parts: dict[str, list[FilePart | None]] = {subject: [None] * n for subject, n in split.items()}
    for index, result in run_isolated(functools.partial(_audit_item, thresholds=thresholds), items,
                                      jobs=jobs, groups=groups):
        kind, task, part = items[index]
        if kind == "task":
            yield 1, _unmeasured(task, result, thresholds) if isinstance(result, Lost) else result
            continue
        got = parts.get(task.subject)
        if got is None:  # another part of this file was lost: the file's row is already given
            continue
        if isinstance(result, Lost):
            del parts[task.subject]
            yield 1, _unmeasured(task, result, thresholds)
            continue
        got[part] = result
        if all(p is not None for p in got):
            row = measure_file(task.path, task.subject, silence_threshold_db=thresholds.silence_threshold_db,
                               parts=got)
            del parts[task.subject]
            yield 1, CorpusAccumulator.of_row(row, thresholds)


class _Progress:
    """Counts files, audio hours and bytes and hands them to the caller's callback as
    `progress(done_bytes, total_bytes, detail)`; drawing a bar is the CLI's job."""

    def __init__(self, callback: Callable[[float, float, str], None] | None, total_files: int, total_bytes: int) -> None:
        self.callback = callback if callable(callback) else None
        self.t0 = time.perf_counter()
        self.files = 0
        self.hours = 0.0
        self.done_bytes = 0
        self.total_files = total_files
        self.total_bytes = max(total_bytes, 1)  # progress is in bytes: what the work is proportional to

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def advance(self, part: CorpusAccumulator, tasks: int = 1) -> None:
        self.files += tasks
        self.hours += sum(a.row.duration_s or 0.0 for a in part.files) / 3600.0
        self.done_bytes += sum(max(a.row.size_bytes or 0, 1) for a in part.files)
        self._report()

    def advance_tasks(self, tasks: list[Task]) -> None:
        """Tasks finished on a cluster (their rows stay there until the end: bytes, no hours)."""
        self.files += len(tasks)
        self.done_bytes += sum(max(t.size_bytes, 1) for t in tasks)
        self._report()

    def _report(self) -> None:
        if self.callback is None:
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        hours = f"  {self.hours / elapsed:.2f} audio-h/s" if self.hours else ""
        self.callback(min(self.done_bytes, self.total_bytes), self.total_bytes,
                      f"{self.files}/{self.total_files} files  {self.files / elapsed:.1f} files/s{hours}")


# --------------------------------------------------------------------------------------------------
# Judge: the combined accumulator -> Report (shared by audit_data, merge_partials and Dask)
# --------------------------------------------------------------------------------------------------

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


def judge(corpus: CorpusAccumulator, thresholds: DataThresholds, *, args: dict[str, Any],
          notes: Iterable[str] = (), shard: tuple[int, int] | None = None) -> Report:
    """Corpus-level checks once on the combined accumulator; file findings were judged per file."""
    audits = sorted(corpus.files, key=lambda a: a.row.path)
    cuts = sorted(corpus.cuts, key=lambda a: a.row.path)
    rows = [a.row for a in audits]
    findings = [f for a in audits + cuts for f in a.findings]
    checks_run = {c for a in audits + cuts for c in a.checks_run}
    summary = corpus_summary(rows, corpus.histogram)
    corpus_run = run_checks("data", CorpusView(rows, summary), thresholds, level="corpus")
    checks_run.update(corpus_run.checks_run)
    findings.extend(corpus_run.findings)
    report = Report(command="audit-data", args=dict(args))
    internal = [n for a in audits + cuts for n in a.notes] + corpus_run.notes
    report.add(_cap(findings), sorted(checks_run), internal)
    report.measurements = {
        "files": [r.to_json() for r in rows],
        "corpus": summary,
        "thresholds": thresholds.to_dict(),
        "envelopes": {path: env for _, path, env in corpus.envelopes},
    }
    if cuts:
        report.measurements["cuts"] = [a.row.to_json() for a in cuts]
    if shard is not None:
        report.measurements["shard"] = {"index": shard[0], "count": shard[1]}
    report.notes.extend(notes)
    return report


# --------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------

def _list(location: str | os.PathLike, storage_options: dict | None) -> Corpus:
    try:
        return open_corpus(location, storage_options)
    except SourceError as exc:
        raise InputError(str(exc)) from None


def audit_data(directory: str | os.PathLike, *, jobs: int | None = None, sample_rate: int | None = None,
               shard: str | tuple[int, int] | None = None, sample: float | None = None,
               silence_threshold_db: float = -60.0, max_silence_fraction: float = 0.30,
               long_file_s: float = 600.0, progress: Callable[[float, float, str], None] | None = None,
               thresholds: DataThresholds | None = None, storage_options: dict | None = None,
               client: Any = None) -> Report:
    """Audit every audio file of a corpus; returns a Report (JSON contract: docs/).

    directory: a folder, one audio file / .tar shard / .parquet file / lhotse manifest, or an
    fsspec URL (s3://bucket/prefix, gs://..., hf://datasets/...) read with `storage_options`
    (credentials stay there: reports show paths relative to the prefix and never the options).
    jobs: worker processes (default: the machine's cores). client: a dask.distributed Client; the
    work then runs on its cluster (file-sized tasks, accumulators combined there) and is judged
    here. shard: 'i/n' measures every n-th entry (combine the partial JSONs with
    `merge_partials`). sample: audit only this fraction of the files (deterministic by path);
    statistics within a file are always exact. progress: called as
    `progress(done_bytes, total_bytes, detail)` after each task.
    Figures are drawn only when the HTML view is rendered.
    """
    if thresholds is None:
        thresholds = DataThresholds(silence_threshold_db=silence_threshold_db, max_silence_fraction=max_silence_fraction,
                                    sample_rate=sample_rate, long_file_s=long_file_s)
    if sample is not None and not 0.0 < float(sample) <= 1.0:
        raise InputError(f"--sample must be a fraction in (0, 1], got {sample}")
    shard_t = parse_shard(shard)
    jobs = int(jobs) if jobs else (os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}")

    corpus = _list(directory, storage_options)
    entries, cuts, notes = _selected(corpus, sample, shard_t)

    tasks = [e for e in entries if isinstance(e, Task)]
    listed = Fold()
    for row in (e for e in entries if not isinstance(e, Task)):
        listed.add(CorpusAccumulator.of_row(row, thresholds))
    for row in cuts:
        listed.add(CorpusAccumulator.of_cut(row, thresholds))
    bar = _Progress(progress, len(tasks), sum(t.size_bytes for t in tasks))
    started = time.perf_counter()
    _measure_tasks(tasks, jobs, thresholds, client, bar, listed)
    elapsed = time.perf_counter() - started

    args = {"directory": corpus.display, "jobs": jobs, "sample_rate": sample_rate,
            "shard": f"{shard_t[0]}/{shard_t[1]}" if shard_t else None, "sample": sample,
            "silence_threshold_db": thresholds.silence_threshold_db,
            "max_silence_fraction": thresholds.max_silence_fraction, "long_file_s": thresholds.long_file_s}
    if client is not None:
        args["scheduler"] = public_url(str(getattr(client.scheduler, "address", "") or "")) or None
    report = judge(listed.result(CorpusAccumulator()), thresholds, args=args, notes=notes, shard=shard_t)
    hours = report.measurements["corpus"]["hours"]
    report.measurements["timing"] = {"seconds": elapsed, "audio_hours_per_second": hours / elapsed if elapsed > 0 else None}
    return report


def _selected(corpus: Any, sample: float | None, shard_t: tuple[int, int] | None) -> tuple[list, list, list[str]]:
    """The corpus's entries and cuts after --sample and --shard, with the notes that say so."""
    entries = corpus.entries
    if not any(isinstance(e, Task) for e in entries):
        raise InputError(f"{corpus.display}: no audio files found ({len(entries)} other entries)")
    notes = list(corpus.notes)
    if sample is not None and sample < 1.0:
        before = sum(1 for e in entries if isinstance(e, Task))
        entries = [e for e in entries if not isinstance(e, Task) or _sampled(e.subject, float(sample))]
        after = sum(1 for e in entries if isinstance(e, Task))
        notes.append(f"--sample {sample}: audited {after} of {before} audio files (chosen by path hash); "
                     "corpus totals cover those files only")
    cuts = corpus.cuts
    if shard_t is not None:
        index, count = shard_t
        entries = [e for i, e in enumerate(entries) if i % count == index - 1]
        cuts = [c for i, c in enumerate(cuts) if i % count == index - 1]
        notes.append(f"shard {index}/{count}: {len(entries)} entries; combine the shards with `codecdoctor merge`")
    return entries, cuts, notes


def _measure_tasks(tasks: list[Task], jobs: int, thresholds: DataThresholds, client: Any, bar: Any,
                   listed: Fold) -> None:
    """Measure every file: on a Dask cluster when `client` is given, else in the local pool."""
    if client is None:
        for done, part in _audit_all(tasks, jobs, thresholds, on_started=bar.start):
            bar.advance(part, tasks=done)
            listed.add(part)
        return
    from codecdoctor.distributed import run_on_cluster

    def lost(batch: list[Task], reason: str) -> CorpusAccumulator:
        return combine_all([CorpusAccumulator.of_row(FileMeasurement(
            path=t.subject, kind="unreadable", size_bytes=t.size_bytes or None, error=reason), thresholds)
            for t in batch], CorpusAccumulator())

    # Small files travel in batches (a Dask task should run for 100 ms or more); a batch
    # whose workers died is retried file by file, so only the file that kills is lost.
    task_batches = _task_batches(tasks, DASK_BATCH_BYTES, DASK_BATCH_FILES)
    total, _ = run_on_cluster(client, _audit_batch, task_batches, thresholds, failed=lost, empty=CorpusAccumulator(),
                              label="audit", split=lambda b: [[t] for t in b], on_started=bar.start,
                              on_done=bar.advance_tasks)
    listed.add(total)


def _read_text(location: str, storage_options: dict | None) -> str:
    if not is_url(location):
        return Path(location).read_text(encoding="utf-8")
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{public_url(location)}: object storage needs fsspec "
                         "(pip install 'codecdoctor[storage]')") from None
    with fsspec.open(location, "rb", **(storage_options or {})) as handle:
        return handle.read().decode("utf-8")


def merge_partials(paths: Iterable[str | os.PathLike], *, storage_options: dict | None = None) -> Report:
    """Combine partial audit-data JSON reports (from `--shard i/n`; local paths or fsspec URLs)
    into the report one run gives: each partial is read back into its CorpusAccumulator and the
    accumulators combine."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError("merge: no partial reports given")
    parts: list[tuple[str, Report, DataThresholds]] = []
    shards: dict[int, int] = {}
    for p in paths:
        shown = public_url(p)
        try:
            data = json.loads(_read_text(p, storage_options))
            partial = Report.from_dict(data)
        except FileNotFoundError:
            raise InputError(f"{shown}: no such file") from None
        except InputError:
            raise
        except Exception as exc:  # OSError, bad JSON, an object store's own errors
            message = " ".join(str(exc).split())[:200]
            raise InputError(f"{shown}: not a readable codecdoctor JSON report ({type(exc).__name__}: "
                             f"{Storage(None, storage_options or {}).redact(message)})") from None
        if partial.command != "audit-data":
            raise InputError(f"{shown}: a '{partial.command}' report, not audit-data")
        thresholds = DataThresholds.from_dict(partial.measurements.get("thresholds") or {})
        if parts and thresholds != parts[0][2]:
            raise InputError(f"{shown}: audited with different thresholds than {public_url(paths[0])}")
        shard = partial.measurements.get("shard") or {}
        if shard:
            index, count = int(shard["index"]), int(shard["count"])
            if shards and next(iter(shards.values())) != count:
                raise InputError(f"{shown}: shard of {count}, others are of {next(iter(shards.values()))}")
            if index in shards:
                raise InputError(f"{shown}: shard {index}/{count} given twice")
            shards[index] = count
        parts.append((p, partial, thresholds))
    thresholds = parts[0][2]
    total = combine_all([CorpusAccumulator.from_partial(partial.measurements, thresholds) for _, partial, _ in parts],
                        CorpusAccumulator())
    notes = []
    if shards:
        count = next(iter(shards.values()))
        missing = sorted(set(range(1, count + 1)) - set(shards))
        if missing:
            notes.append(f"incomplete merge: shards {', '.join(f'{i}/{count}' for i in missing)} are missing")
    args = {**parts[0][1].args, "shard": None, "merged_from": [public_url(p) for p in paths]}
    return judge(total, thresholds, args=args, notes=notes)
