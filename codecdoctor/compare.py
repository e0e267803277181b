"""`compare(ref, est)`: differential diagnosis of a reconstruction, for two files, two folders of
files paired by relative path, or two arrays.

Each pair is read whole (float64; about ten times the pair's size in memory while it is measured),
measured once by `diagnosis.measure_pair` and judged by the R3xx checks. Bad input never stops the
run: an unreadable file, a missing counterpart, a silent reference, a rate or channel mismatch each
become a finding and the other pairs are still compared. Only a path that does not exist, or a
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
from codecdoctor.core.registry import finding, run_checks
from codecdoctor.diagnose import diagnose_pair, order_findings
from codecdoctor.measure.audio.reader import resample
from codecdoctor.measure.pair import PairMeasurements, chunk_energies, chunk_set_from_energies

# A single pair is scored per second for R313: one second is the usual validation crop.
CHUNK_SECONDS = 1.0
# Figures are drawn for at most this many pairs (the worst ones): plotting costs more than measuring.
MAX_PLOTTED_PAIRS = 1


@dataclass
class _Pair:
    subject: str
    ref_rel: str
    est_rel: str | None
    ref_path: Path | None = None
    est_path: Path | None = None
    ref_array: Any = None
    est_array: Any = None


def _downmix(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=0, keepdims=True)


def _read(path: Path) -> tuple[np.ndarray, int]:
    """(channels, frames) float64 and the sample rate; raises on an unreadable file."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)


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


def _load_pair(pair: _Pair, sample_rate: int | None) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Read (or take) both sides, reconcile rate and channels; returns (ref, est, rate, header info)."""
    if pair.ref_path is not None:
        ref, ref_rate = _read(pair.ref_path)
        est, est_rate = _read(pair.est_path)
    else:
        ref, est = _as_channels_first(pair.ref_array), _as_channels_first(pair.est_array)
        ref_rate = est_rate = int(sample_rate)
    info = {"subject": pair.subject, "ref_rate": ref_rate, "est_rate": est_rate,
            "ref_channels": int(ref.shape[0]), "est_channels": int(est.shape[0])}
    target = int(sample_rate) if (sample_rate and pair.ref_path is not None) else ref_rate
    if ref_rate != target:
        ref = resample(ref, ref_rate, target)
    if est_rate != target:
        est = resample(est, est_rate, target)
    if ref.shape[0] != est.shape[0]:
        ref, est = _downmix(ref), _downmix(est)
    return ref, est, target, info


def pair_record(m: PairMeasurements, ref_rel: str, est_rel: str | None, error: str | None = None) -> dict[str, Any]:
    """One entry of measurements.pairs[] (see docs/JSON.md): the contract fields first, then the rest."""
    record: dict[str, Any] = {"ref": ref_rel, "est": est_rel, "error": error}
    if m is None:
        return record
    data = dataclasses.asdict(m)
    for key in ("snr_db", "si_snr_db", "seg_snr_db", "mel_distance", "gain", "lag_samples", "correlation", "what_if"):
        record[key] = data.pop(key)
    record["subject"] = data.pop("subject", None)  # the findings' subject for this pair
    record.update(data)
    return record


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


def compare(ref: Any, est: Any, *, sample_rate: int | None = None, output_bound: float | None = None,
            max_lag_ms: float | None = None,
            progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Compare a reference with an estimate (reconstruction) and diagnose the difference.

    `ref`/`est`: two audio files, two folders (paired by relative path; another audio extension with
    the same stem also pairs), or two arrays (time on the last axis; `sample_rate` required). For
    files, `sample_rate` resamples both sides to that rate. `output_bound`: the decoder's output
    bound if known (1.0 for tanh), for R307. `max_lag_ms`: lag search window (default 500 ms).
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

    report = Report(command="compare", args={**root_args, "sample_rate": sample_rate, "output_bound": output_bound,
                                             "max_lag_ms": max_lag_ms})
    report.notes.extend(notes)
    records: list[dict[str, Any]] = []
    measured: list[tuple[_Pair, PairMeasurements, list[Finding]]] = []
    set_signal: list[float] = []
    set_error: list[float] = []
    single_chunks: tuple[list[float], list[float]] = ([], [])
    failed = 0
    for index, pair in enumerate(pairs):
        if pair.ref_path is not None and pair.est_path is None:
            failed += 1
            report.add([finding("R315", f"No output file pairs with {pair.ref_rel} (same relative path, any audio "
                                "extension) under EST.", subject=pair.subject, severity="error", evidence={})], ["R315"])
            records.append(pair_record(None, pair.ref_rel, None, error="missing counterpart in EST"))
            continue
        try:
            ref_sig, est_sig, rate, info = _load_pair(pair, sample_rate)
        except Exception as exc:  # soundfile raises several types for corrupt or odd files
            failed += 1
            reason = f"{type(exc).__name__}: {exc}".strip()
            report.add([finding("R315", f"Cannot read the pair: {reason}", subject=pair.subject, severity="error",
                                evidence={})], ["R315"])
            records.append(pair_record(None, pair.ref_rel, pair.est_rel, error=reason))
            continue
        file_run = run_checks("reconstruction", info, level="file")
        lag = None if max_lag_ms is None else max(0, int(round(max_lag_ms * rate / 1000.0)))
        m, findings, ran = diagnose_pair(ref_sig, est_sig, rate, subject=pair.subject, output_bound=output_bound,
                                         max_lag_samples=lag)
        report.add(order_findings(file_run.findings + findings), file_run.checks_run + ran)
        records.append(pair_record(m, pair.ref_rel, pair.est_rel))
        measured.append((pair, m, findings))
        signal, error = chunk_energies(ref_sig, est_sig)
        set_signal.append(signal)
        set_error.append(error)
        if len(pairs) == 1:
            chunk = max(1, int(CHUNK_SECONDS * rate))
            r_flat, e_flat = ref_sig.reshape(-1), est_sig.reshape(-1)
            n = min(r_flat.size, e_flat.size)
            for start in range(0, n, chunk):
                s, e = chunk_energies(r_flat[start:min(start + chunk, n)], e_flat[start:min(start + chunk, n)])
                single_chunks[0].append(s)
                single_chunks[1].append(e)
        if progress is not None:
            progress(index + 1, len(pairs), pair.subject)

    # R313: the user's averaging over files (folders) or over one-second chunks (one pair).
    if len(pairs) > 1:
        chunk_set = chunk_set_from_energies(set_signal, set_error, subject="all pairs (per file)")
    else:
        chunk_set = chunk_set_from_energies(*single_chunks, subject=f"{pairs[0].subject} (per {CHUNK_SECONDS:g} s chunk)")
    set_run = run_checks("reconstruction", chunk_set, level="set")
    report.add(set_run.findings, set_run.checks_run)

    aggregate = _aggregate([m for _, m, _ in measured], len(pairs), failed)
    for _, _, findings in measured:
        top = next((f for f in findings if f.id != "R300"), None)
        if top is not None:
            aggregate["top_findings"][top.id] = aggregate["top_findings"].get(top.id, 0) + 1
    aggregate["mean_chunk_snr_db"] = chunk_set.mean_chunk_snr_db
    aggregate["silent_chunks"] = chunk_set.silent_chunks
    aggregate["chunks"] = chunk_set.chunks
    report.measurements = {"pairs": records, "aggregate": aggregate}
    excerpt = _worst_pair_excerpt(measured, sample_rate, report.notes)
    if excerpt is not None:
        report.measurements["excerpt"] = excerpt
    return report


def _worst_pair_excerpt(measured: list, sample_rate: int | None, notes: list[str]) -> dict[str, Any] | None:
    """The bounded excerpt of the lowest-SNR scored pair, which the report's figures draw."""
    from codecdoctor.measure.excerpt import pair_excerpt

    scored = [item for item in measured if not item[1].ref_silent and item[1].compared_samples > 0]
    if not scored:
        return None
    pair, m, _ = min(scored, key=lambda item: item[1].snr_db)
    try:
        ref, est, rate, _ = _load_pair(pair, sample_rate)
    except Exception as exc:  # the file changed since it was measured: say so, keep the report
        notes.append(f"figures skipped: cannot re-read {pair.subject}: {exc}")
        return None
    excerpt = pair_excerpt(ref, est, rate, pair.subject)
    excerpt["ref"] = pair.ref_rel
    return excerpt
