"""The gap between the SNR a checkpoint saved as its own validation and the SNR measured on data.

`check-ckpt --data` scores the codec on the given crops (energy-weighted: total reference energy /
total error energy). The checkpoint says what its trainer's validation read (the latest
`val_snr_db` of its history; a `val_snr` saved next to the weights counts as a one-entry
history). This module puts the two side by side with what is needed to read the difference (C219):

- the estimate's own spread: a leave-one-crop-out (jackknife) standard error of the measured SNR;
- whether the data is held out: a measured file that lies under the training folder the checkpoint
  saved (`train_args.data_dir`, outside its `val_dir`) is training audio; "unknown" when the
  checkpoint names no training folder or it is not on this machine (matched by path, not content);
- how the trainer held its validation out (`validation_split`, written by this project's trainer:
  whole files, a separate folder, or regions of the training files).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ValidationGap:
    saved_val_snr_db: float | None  # the checkpoint's own validation SNR (latest saved value)
    saved_at: str  # the history entry it was read from: "epoch N"
    measured_snr_db: float | None  # energy-weighted over the data crops
    measured_stderr_db: float | None  # jackknife over crops; None with fewer than 3 crops
    crops: int
    data_held_out: str  # "yes" | "no" | "unknown"
    training_files_in_data: list[str] = field(default_factory=list)
    validation_split: dict | None = None  # this project's trainer: how its validation was held out

    @property
    def gap_db(self) -> float | None:
        if self.saved_val_snr_db is None or self.measured_snr_db is None:
            return None
        return self.saved_val_snr_db - self.measured_snr_db

    def to_dict(self) -> dict[str, Any]:
        return {"saved_val_snr_db": self.saved_val_snr_db, "saved_at": self.saved_at,
                "measured_snr_db": self.measured_snr_db, "measured_stderr_db": self.measured_stderr_db,
                "gap_db": self.gap_db, "crops": self.crops, "data_held_out": self.data_held_out,
                "training_files_in_data": list(self.training_files_in_data),
                "validation_split": self.validation_split}


def _total_snr_db(signal: float, error: float) -> float | None:
    if signal <= 0 or error <= 0:
        return None
    return 10.0 * math.log10(signal / error)


def jackknife_stderr_db(signal: list[float], error: list[float]) -> float | None:
    """Standard error of 10 log10(sum signal / sum error) from leaving out one crop at a time."""
    n = len(signal)
    if n < 3:
        return None
    total_s, total_e = sum(signal), sum(error)
    values = [_total_snr_db(total_s - s, total_e - e) for s, e in zip(signal, error)]
    if any(v is None for v in values):
        return None
    mean = sum(values) / n
    return math.sqrt((n - 1) / n * sum((v - mean) ** 2 for v in values))


def saved_validation_snr(history: list[dict]) -> tuple[float | None, str]:
    """The latest finite `val_snr_db` of the history (the one the saved weights were scored at)."""
    for i, entry in reversed(list(enumerate(history))):
        value = entry.get("val_snr_db") if isinstance(entry, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            return float(value), f"epoch {entry.get('epoch', i)}"
    return None, ""


def _training_file(path: Path, train_root: Path, val_root: Path | None, held_out_files: set[str]) -> bool:
    """A file under the training folder, outside its validation folder and not one of the whole
    files the trainer held out."""
    if not path.is_relative_to(train_root) or (val_root is not None and path.is_relative_to(val_root)):
        return False
    return path.relative_to(train_root).as_posix() not in held_out_files


def training_files_among(data: str | Path, relpaths: list[str], folders: dict,
                         held_out_files: set[str] = frozenset()) -> tuple[str, list[str]]:
    """("yes" | "no" | "unknown", the measured files that were trained on). `folders` holds the
    training run's `data_dir` and `val_dir`; `held_out_files` the whole files its trainer held out
    (relative to data_dir)."""
    if not isinstance(folders.get("data_dir"), str) or not folders["data_dir"] or not Path(folders["data_dir"]).exists():
        return "unknown", []
    train_root = Path(folders["data_dir"]).resolve()
    val_dir = folders.get("val_dir")
    val_root = Path(val_dir).resolve() if isinstance(val_dir, str) and val_dir else None
    root = Path(data).resolve()
    inside = [rel for rel in relpaths if _training_file((root / rel).resolve(), train_root, val_root, held_out_files)]
    return ("no" if inside else "yes"), inside


def measure_validation_gap(history: list[dict], train_args: dict | None,
                           validation_split: Any, data: str | Path, reconstruction: dict) -> ValidationGap:
    """Saved validation SNR vs the SNR measured on `data` (check_ckpt's `reconstruction`)."""
    # a hand-written loop's single `val_snr` next to the weights is already a one-row history
    # (measure.checkpoint.scalar_metadata)
    saved, where = saved_validation_snr(history)
    crops = reconstruction.get("crops") or []
    signal = [float(c.get("signal_energy") or 0.0) for c in crops]
    error = [float(c.get("error_energy") or 0.0) for c in crops]
    relpaths = sorted({str(c.get("subject", "")).rsplit("@", 1)[0] for c in crops})
    split = validation_split if isinstance(validation_split, dict) else {}
    # the trainer's split names its folders as absolute paths; train_args holds them as typed
    folders = {**(train_args or {}), **{k: split[k] for k in ("data_dir", "val_dir") if split.get(k)}}
    held = set(split.get("validation_files") or []) if split.get("method") == "files" else set()
    held_out, inside = training_files_among(data, relpaths, folders, held)
    return ValidationGap(saved_val_snr_db=saved, saved_at=where,
                         measured_snr_db=reconstruction.get("total_snr_db"),
                         measured_stderr_db=jackknife_stderr_db(signal, error), crops=len(crops),
                         data_held_out=held_out, training_files_in_data=inside,
                         validation_split=split or None)
