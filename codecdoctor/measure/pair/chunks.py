"""How a set of chunks averages: mean of per-chunk dB against total-power SNR (R313)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot

# A chunk whose reference energy is 40 dB below the median chunk is silent for scoring purposes: its
# content is below the idle noise of any practical codec, so its SNR is hugely negative whatever
# the model does.
SILENT_CHUNK_DB = -40.0


@dataclass
class ChunkSetMeasurements:
    """How a set of chunks (validation crops, files) scores under two averaging rules."""

    chunks: int
    silent_chunks: int
    silent_fraction: float
    # Mean of per-chunk SNR dB computed the way training loops do (eps = float32 epsilon).
    mean_chunk_snr_db: float
    # Same mean over the non-silent chunks only.
    mean_active_chunk_snr_db: float
    median_chunk_snr_db: float
    # Total-power SNR: sum of reference energy over sum of error energy, across every chunk.
    total_snr_db: float
    subject: str | None = None
    chunk_snr_db: list[float] = field(default_factory=list)


def measure_chunk_set(refs: Sequence[Any], ests: Sequence[Any], subject: str | None = None) -> ChunkSetMeasurements:
    """Score a set of (ref, est) chunks both ways: mean of per-chunk dB vs total-power SNR."""
    energies = [chunk_energies(ref, est) for ref, est in zip(refs, ests)]
    return chunk_set_from_energies([s for s, _ in energies], [e for _, e in energies], subject=subject)


def chunk_energies(ref: Any, est: Any) -> tuple[float, float]:
    """(sum ref^2, sum (ref - est)^2) over the common length; the error is inf when a sample is
    non-finite (a loop's metric would be NaN or -inf for that chunk)."""
    r, e = M.crop_pair(ref, est)
    finite = bool(np.isfinite(r).all() and np.isfinite(e).all())
    r = np.where(np.isfinite(r), r, 0.0)
    with np.errstate(over="ignore"):
        signal = float(dot(r, r))
        error = float(dot(r - e, r - e)) if finite else math.inf
    return signal, error


def chunk_set_from_energies(signal_energy: Sequence[float], error_energy: Sequence[float],
                            subject: str | None = None) -> ChunkSetMeasurements:
    """Build the set measurements from per-chunk (reference, error) energies."""
    n = len(signal_energy)
    if n == 0:
        return ChunkSetMeasurements(0, 0, 0.0, -math.inf, -math.inf, -math.inf, -math.inf, subject)
    energies = np.asarray(signal_energy, dtype=np.float64)
    errors = np.asarray(error_energy, dtype=np.float64)
    median = float(np.median(energies))
    silent = (energies <= 0.0) | (energies <= median * 10.0 ** (SILENT_CHUNK_DB / 10.0))
    eps = M.FLOAT32_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values = 10.0 * np.log10((energies + eps) / (errors + eps))
    values = np.where(np.isfinite(errors), values, -math.inf)
    values = np.nan_to_num(values, nan=-math.inf)
    all_finite = bool(np.isfinite(values).all())
    active_values = values[~silent & np.isfinite(values)]
    total_error = float(np.sum(errors))
    total_signal = float(np.sum(energies))
    return ChunkSetMeasurements(
        chunks=n,
        silent_chunks=int(silent.sum()),
        silent_fraction=float(silent.mean()),
        mean_chunk_snr_db=float(values.mean()) if all_finite else -math.inf,
        mean_active_chunk_snr_db=float(active_values.mean()) if active_values.size else -math.inf,
        median_chunk_snr_db=float(np.median(values)) if all_finite else -math.inf,
        total_snr_db=M.energy_ratio_db(total_signal, total_error) if math.isfinite(total_error) else -math.inf,
        subject=subject,
        chunk_snr_db=[float(v) for v in values],
    )


@dataclass
class ChunkEnergies:
    """Per-chunk (sum ref^2, sum (ref - est)^2) over the compared samples, chunks of `samples`;
    the error is inf for a chunk holding a non-finite sample (chunk_energies)."""

    samples: int
    signal: list[float] = field(default_factory=list)
    error: list[float] = field(default_factory=list)
