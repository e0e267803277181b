"""Where a corpus lives and how its audio is read: folders on disk, object storage through fsspec
(s3://, gs://, hf://, ...), WebDataset tar shards, Hugging Face parquet with an audio column, and
lhotse recording / cut manifests.

`open_corpus(location)` lists a corpus into `Task`s (file-sized units of work that a worker
process or a Dask worker measures with `measure_task`) plus rows for entries that are not audio.
Everything is streamed: an object is read in blocks through fsspec's file object, a tar shard is
read member by member (each member spooled to memory, or to a temporary file past 64 MB), a
parquet file batch by batch. Credentials live only in `Storage.options`; every path and message
that can reach a report goes through `Storage.redact` / `public_url`.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from codecdoctor.measure.audio.discover import AUDIO_EXTENSIONS, Entry, discover, display_path
from codecdoctor.measure.audio.file import FileMeasurement, measure_file, measure_fileobj

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
LHOTSE_SUFFIXES = (".jsonl", ".jsonl.gz")
SPOOL_BYTES = 64 << 20  # a tar member up to this size is held in memory, a larger one in a temp file
REMOTE_BLOCK_BYTES = 8 << 20  # fsspec read-ahead block: two reader blocks of float32 per request
PARQUET_BATCH_ROWS = 16
_SECRET_KEY = re.compile(r"key|secret|token|pass|cred|auth|sig|session", re.IGNORECASE)


def container_kind(name: str) -> str | None:
    """'tar' | 'parquet' | 'audio' by file name, else None."""
    lower = name.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if os.path.splitext(lower)[1] in AUDIO_EXTENSIONS and not posixpath.basename(lower).startswith("._"):
        return "audio"
    return None


def public_url(url: str) -> str:
    """A URL as it may appear in a report: no user:password@, no query string (signed URLs carry
    their signature there), no fragment."""
    parts = urlsplit(url)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return display_path(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return display_path(urlunsplit((parts.scheme, host, parts.path, "", "")))


def parse_storage_options(text: str | None) -> dict:
    """`--storage-options JSON` -> dict; the text is never echoed (it holds credentials)."""
    from codecdoctor.core.errors import InputError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--storage-options: not valid JSON (line {getattr(exc, 'lineno', '?')} column "
                         f"{getattr(exc, 'colno', '?')})") from None
    if not isinstance(value, dict):
        raise InputError("--storage-options: must be a JSON object, e.g. "
                         '\'{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}\'')
    return value


def is_url(location: str | os.PathLike) -> bool:
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class Storage:
    """Local disk (protocol None) or one fsspec filesystem with its storage options."""

    protocol: str | None = None
    options: dict = field(default_factory=dict, hash=False, compare=False)
    url_secrets: tuple[str, ...] = ()  # user / password given inside the URL itself

    def filesystem(self) -> Any:
        import fsspec

        return fsspec.filesystem(self.protocol, **self.options)

    def open(self, path: str) -> Any:
        if self.protocol is None:
            return open(path, "rb")
        return self.filesystem().open(path, "rb", block_size=REMOTE_BLOCK_BYTES)

    def secrets(self) -> list[str]:
        found: list[str] = []

        def walk(value: Any, key: str = "") -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v, key)
            elif isinstance(value, str) and len(value) >= 4 and _SECRET_KEY.search(key):
                found.append(value)

        walk(self.options)
        found.extend(v for v in self.url_secrets if v)
        return sorted(found, key=len, reverse=True)

    def redact(self, text: str | None) -> str | None:
        """`text` with every credential from the storage options, and any URL's user:password@,
        replaced, so an error message can go into a report."""
        if text is None:
            return None
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return re.sub(r"://[^/\s@]+@", "://", text)


@dataclass(frozen=True)
class Task:
    """A file-sized unit of work. kind: 'audio' (one file or object), 'tar' (a WebDataset shard:
    every audio member), 'parquet' (every row of its audio column)."""

    kind: str
    path: str  # local path, or the fsspec path without protocol
    subject: str  # what reports call it, relative to the corpus root
    size_bytes: int
    storage: Storage = field(default_factory=Storage)


@dataclass
class Corpus:
    """A listed corpus: `entries` in subject order, each a Task or a row for a non-audio entry;
    `cuts` holds lhotse cut rows (durations from the manifest, judged by D101/D113)."""

    display: str
    entries: list[Task | FileMeasurement]
    cuts: list[FileMeasurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class SourceError(Exception):
    """The corpus location cannot be listed (missing, no permission, an extra not installed)."""


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------

def open_corpus(location: str | os.PathLike, storage_options: dict | None = None) -> Corpus:
    """List a folder, a single file (audio, tar shard, parquet, lhotse manifest) or an fsspec URL."""
    text = os.fspath(location)
    if is_url(text):
        return _open_remote(text, dict(storage_options or {}))
    if text.startswith("file://"):
        text = text[len("file://"):]
    root = Path(text)
    if not root.exists():
        raise SourceError(f"{display_path(root)}: no such folder or file")
    if root.is_dir():
        return Corpus(display_path(root), [_local_entry(e) for e in discover(root)])
    return _single(str(root), root.name, root.stat().st_size, Storage(), display_path(root))


def _local_entry(e: Entry) -> Task | FileMeasurement:
    regular_file = e.kind == "audio" or (e.kind == "non_audio" and (e.reason or "").startswith("not an audio file"))
    kind = container_kind(e.path.name) if regular_file else None
    if e.kind == "audio" or kind in ("tar", "parquet"):
        return Task(kind or "audio", os.fspath(e.path), e.relpath, e.size_bytes)
    return FileMeasurement(path=e.relpath, kind=e.kind, size_bytes=e.size_bytes or None, error=e.reason)


def _is_lhotse(name: str) -> bool:
    return name.lower().endswith(LHOTSE_SUFFIXES)


def _single(path: str, name: str, size: int, storage: Storage, display: str) -> Corpus:
    if _is_lhotse(name):
        return _open_lhotse(path, name, storage, display)
    kind = container_kind(name)
    if kind is None:
        raise SourceError(f"{display}: not a folder, an audio file, a .tar shard, a .parquet file or a lhotse "
                          "manifest (.jsonl / .jsonl.gz)")
    return Corpus(display, [Task(kind, path, name, size, storage)])


def _open_remote(url: str, options: dict) -> Corpus:
    try:
        import fsspec  # noqa: F401
    except ImportError:
        raise SourceError(f"{public_url(url)}: object storage needs fsspec (pip install 'codecdoctor[storage]')") from None
    parts = urlsplit(url)
    url_secrets = tuple(v for v in (parts.username, parts.password) if v)
    storage = Storage(None, options, url_secrets)
    display = public_url(url)
    try:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(url, **options)
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        storage = Storage(protocol, options, url_secrets)
        root = root.rstrip("/")
        if fs.isfile(root):
            info = fs.info(root)
            return _single(root, posixpath.basename(root), int(info.get("size") or 0), storage, display)
        listing = fs.find(root, detail=True)
    except ImportError as exc:
        raise SourceError(f"{display}: this protocol needs a package that is not installed ({_one_line(exc)})") from None
    except Exception as exc:  # OSError family, and botocore / gcsfs types (credentials, endpoints)
        raise SourceError(f"{display}: cannot list: {storage.redact(_one_line(exc))}") from None
    if not listing:
        raise SourceError(f"{display}: no such prefix, or it holds no objects")
    entries: list[Task | FileMeasurement] = []
    for path, info in sorted(listing.items()):
        if info.get("type", "file") != "file":
            continue
        rel = display_path(path[len(root):].lstrip("/") or posixpath.basename(path))
        size = int(info.get("size") or 0)
        kind = container_kind(posixpath.basename(path))
        if kind is not None:
            entries.append(Task(kind, path, rel, size, storage))
        else:
            ext = posixpath.splitext(path)[1] or "none"
            entries.append(FileMeasurement(path=rel, kind="non_audio", size_bytes=size or None,
                                           error=f"not an audio file extension ({ext})"))
    return Corpus(display, entries)


def _open_lhotse(path: str, name: str, storage: Storage, display: str) -> Corpus:
    """Tasks for the recordings a lhotse manifest points to, and one row per cut (its duration)."""
    try:
        with storage.open(path) as raw:
            data = raw.read()
        if name.lower().endswith(".gz"):
            data = gzip.decompress(data)
        lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, EOFError) as exc:
        raise SourceError(f"{display}: not a readable lhotse manifest ({storage.redact(_one_line(exc))})") from None
    base = posixpath.dirname(path) if storage.protocol else os.path.dirname(os.path.abspath(path))
    recordings: dict[str, dict] = {}
    cuts: list[FileMeasurement] = []
    notes: list[str] = []
    skipped_cuts = 0
    for item in lines:
        if not isinstance(item, dict):
            continue
        if "sources" in item:  # a Recording
            recordings.setdefault(str(item.get("id")), item)
        elif isinstance(item.get("recording"), dict):  # a MonoCut carries its recording
            rec = item["recording"]
            recordings.setdefault(str(rec.get("id")), rec)
            rate = int(rec.get("sampling_rate") or 0)
            duration = float(item.get("duration") or 0.0)
            if rate > 0:
                cuts.append(FileMeasurement(path=f"{name}:{item.get('id')}", kind="audio", sample_rate=rate,
                                            channels=1, frames=int(round(duration * rate)), duration_s=duration))
        else:
            skipped_cuts += 1
    if skipped_cuts:
        notes.append(f"{name}: {skipped_cuts} entries are neither recordings nor cuts with a recording "
                     "(e.g. MixedCut, supervisions) and were not audited")
    if not recordings:
        raise SourceError(f"{display}: no lhotse recordings or cuts found")
    entries: dict[str, Task | FileMeasurement] = {}
    for rec_id, rec in recordings.items():
        for source in rec.get("sources") or []:
            kind, where = source.get("type"), str(source.get("source", ""))
            if kind == "url" or (kind == "file" and is_url(where)):
                sub_storage = Storage(urlsplit(where).scheme, storage.options if urlsplit(where).scheme == storage.protocol
                                      else {})
                scheme = urlsplit(where).scheme
                # fsspec's HTTP filesystem takes the whole URL as its path; object stores drop the scheme
                target = where if scheme in ("http", "https") else where.split("://", 1)[1]
                subject = public_url(where)
            elif kind == "file":
                sub_storage = storage
                if storage.protocol:
                    target = where if where.startswith("/") else posixpath.join(base, where)
                else:
                    local = Path(where)
                    target = os.fspath(local if local.is_absolute() or not (Path(base) / local).exists()
                                       else Path(base) / local)
                under = os.path.relpath(target, base) if not storage.protocol else posixpath.relpath(target, base)
                subject = display_path(under if not under.startswith("..") else where)
            else:
                entries[f"{rec_id}:{kind}"] = FileMeasurement(
                    path=f"{rec_id}", kind="unreadable",
                    error=f"lhotse source type {kind!r} is not read by audit-data (only 'file' and 'url')")
                continue
            entries[subject] = Task("audio", target, subject, 0, sub_storage)
    return Corpus(display, sorted(entries.values(), key=_subject), cuts=sorted(cuts, key=lambda r: r.path),
                  notes=notes)


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _subject(entry: Task | FileMeasurement) -> str:
    return entry.subject if isinstance(entry, Task) else entry.path


# --------------------------------------------------------------------------------------------------
# Measuring one task
# --------------------------------------------------------------------------------------------------

def measure_task(task: Task, *, silence_threshold_db: float = -60.0) -> Iterator[FileMeasurement]:
    """Rows for one task, in order; never raises for bad content (a row says what failed)."""
    options = {"silence_threshold_db": silence_threshold_db}
    if task.kind == "audio" and task.storage.protocol is None:
        yield measure_file(task.path, task.subject, **options)
        return
    try:
        if task.kind == "audio":
            with task.storage.open(task.path) as stream:
                row = measure_fileobj(stream, task.subject, task.size_bytes or None, **options)
            yield _redacted(row, task.storage)
        elif task.kind == "tar":
            for row in _tar_rows(task, options):
                yield _redacted(row, task.storage)
        elif task.kind == "parquet":
            for row in _parquet_rows(task, options):
                yield _redacted(row, task.storage)
        else:
            raise ValueError(f"unknown task kind {task.kind!r}")
    except ImportError as exc:
        yield FileMeasurement(path=task.subject, kind="unreadable", size_bytes=task.size_bytes or None,
                              error=f"a package this format needs is not installed: {exc}")
    except Exception as exc:  # the object itself could not be opened (missing, no permission, network)
        yield FileMeasurement(path=task.subject, kind="unreadable", size_bytes=task.size_bytes or None,
                              error=task.storage.redact(f"cannot open: {_one_line(exc)}"))


def _redacted(row: FileMeasurement, storage: Storage) -> FileMeasurement:
    if row.error is not None and storage.options:
        row.error = storage.redact(row.error)
    return row


def _tar_rows(task: Task, options: dict) -> Iterator[FileMeasurement]:
    """Every member of a (possibly gzip-compressed) tar stream, read once front to back without
    seeking: audio members are measured, other members are listed as skipped. A member that does
    not decode is its own row (D100); a stream that breaks ends the shard with a row for the
    member it broke in, and every member before it is kept."""
    members = 0
    with task.storage.open(task.path) as raw:
        stream = gzip.GzipFile(fileobj=raw) if task.path.lower().endswith((".gz", ".tgz")) else raw
        current = task.subject
        try:
            for name, size, is_file in _tar_members(stream):
                current = f"{task.subject}:{display_path(name)}"
                if not is_file:
                    _skip(stream, _padded(size))
                    continue
                members += 1
                if container_kind(name) != "audio":
                    _skip(stream, _padded(size))
                    yield FileMeasurement(path=current, kind="non_audio", size_bytes=size or None,
                                          error=f"tar member: not an audio file extension "
                                                f"({posixpath.splitext(name)[1] or 'none'})")
                    continue
                with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                    copied = _copy(stream, spool, size)
                    if copied < size:
                        raise EOFError(f"member truncated: {copied} of {size} bytes")
                    _skip(stream, _padded(size) - size)
                    spool.seek(0)
                    yield measure_fileobj(spool, current, size, **options)
                current = task.subject
            if members == 0:
                yield FileMeasurement(path=task.subject, kind="non_audio", size_bytes=task.size_bytes or None,
                                      error="tar shard without file members (nothing to audit)")
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            yield FileMeasurement(path=current, kind="unreadable", size_bytes=task.size_bytes or None,
                                  error=f"tar stream broken after {members} members: "
                                        f"{str(exc).strip() or type(exc).__name__}")


def _tar_members(stream: Any) -> Iterator[tuple[str, int, bool]]:
    """(name, size, is regular file) per tar member, streaming; the caller consumes or skips the
    member's data before asking for the next. Understands ustar, GNU long names and pax paths."""
    import tarfile

    long_name: str | None = None
    while True:
        header = _read(stream, 512)
        if not header.strip(b"\0"):
            return  # end-of-archive blocks (or a clean end of the stream)
        if len(header) < 512:
            raise EOFError("tar header truncated")
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ValueError(f"not a tar header ({exc})") from None
        size = info.size
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
            data = _read(stream, _padded(size))[:size]
            if len(data) < size:
                raise EOFError("tar extended header truncated")
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.XHDTYPE:
                for record in data.split(b"\n"):
                    key, _, value = record.partition(b" ")[2].partition(b"=")
                    if key == b"path":
                        long_name = value.decode("utf-8", "surrogateescape")
            continue
        name, long_name = long_name or info.name, None
        yield name, size, info.isreg()


def _read(stream: Any, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _padded(size: int) -> int:
    return size + (-size % 512)  # member data is padded to the next 512-byte block


def _skip(stream: Any, total: int) -> None:
    while total > 0:
        chunk = stream.read(min(total, 1 << 20))
        if not chunk:
            raise EOFError("tar member truncated")
        total -= len(chunk)


def _copy(source: Any, target: Any, size: int) -> int:
    copied = 0
    while copied < size:
        chunk = source.read(min(size - copied, 1 << 20))
        if not chunk:
            break
        target.write(chunk)
        copied += len(chunk)
    return copied


def audio_column(schema: Any) -> str | None:
    """The Hugging Face `Audio` column: a struct with a binary `bytes` field (prefer one named audio)."""
    import pyarrow as pa

    candidates = []
    for item in schema:
        kind = item.type
        if pa.types.is_struct(kind) and any(kind.field(i).name == "bytes" for i in range(kind.num_fields)):
            candidates.append(item.name)
    if not candidates:
        return None
    return "audio" if "audio" in candidates else candidates[0]


def _parquet_rows(task: Task, options: dict) -> Iterator[FileMeasurement]:
    """Each row's audio bytes, read in batches of PARQUET_BATCH_ROWS rows from the audio column."""
    import pyarrow.parquet as pq

    with task.storage.open(task.path) as raw:
        parquet = pq.ParquetFile(raw)
        column = audio_column(parquet.schema_arrow)
        if column is None:
            yield FileMeasurement(path=task.subject, kind="non_audio", size_bytes=task.size_bytes or None,
                                  error="parquet file without an audio column (a struct with a 'bytes' field)")
            return
        index = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[column]):
            for cell in batch.column(0).to_pylist():
                name = (cell or {}).get("path") or ""
                subject = f"{task.subject}:{index}" + (f":{display_path(name)}" if name else "")
                index += 1
                payload = (cell or {}).get("bytes")
                if not payload:
                    yield FileMeasurement(path=subject, kind="unreadable",
                                          error="audio cell has no bytes (only a path outside the parquet file)"
                                          if name else "audio cell is empty")
                    continue
                yield measure_fileobj(io.BytesIO(payload), subject, len(payload), **options)
