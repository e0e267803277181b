"""T603 / T608 on validation pairs: SNR over the whole set, level ratio, and the R3xx diagnosis of
the worst pair when the SNR is low.

The SNR is the energy-weighted one (total reference energy over total error energy across every
pair), the same definition as the training history and check-ckpt's `total_snr_db`; per-pair SNRs
are kept to pick the worst pair for the diagnosis.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from codecdoctor.measure.training import ValidationMeasurements


def _ratio_db(signal: float, noise: float) -> float:
    if signal > 0 and noise > 0:
        return 10 * math.log10(signal / noise)
    return math.inf if noise == 0 else -math.inf


def measure_validation(ref: Any, est: Any, step: int, sample_rate: int,
                       output_bound: float | None) -> ValidationMeasurements | None:
    """`ref`, `est`: `[N, ...]` references and the model's outputs (cropped to the shorter length)."""
    r = torch.as_tensor(ref).detach().double().cpu()
    e = torch.as_tensor(est).detach().double().cpu()
    if r.dim() == 0 or r.numel() == 0 or e.numel() == 0 or r.shape[0] != e.shape[0]:
        return None
    r2, e2 = r.reshape(r.shape[0], -1), e.reshape(e.shape[0], -1)
    length = min(r2.shape[1], e2.shape[1])
    r2, e2 = r2[:, :length], e2[:, :length]
    if not bool(torch.isfinite(e2).all()):
        e2 = torch.nan_to_num(e2, nan=0.0, posinf=0.0, neginf=0.0)
    signal = r2.pow(2).sum(1)
    noise = (r2 - e2).pow(2).sum(1)
    pair_snr = [_ratio_db(s, n) for s, n in zip(signal.tolist(), noise.tolist())]
    snr = _ratio_db(float(signal.sum()), float(noise.sum()))
    out_energy, ref_energy = float(e2.pow(2).sum()), float(signal.sum())
    ratio_db = 10 * math.log10(out_energy / ref_energy) if out_energy > 0 and ref_energy > 0 else math.nan
    finite = [(v, i) for i, v in enumerate(pair_snr) if not math.isnan(v)]
    worst = min(finite)[1] if finite else 0
    v = ValidationMeasurements(step=step, pairs=r2.shape[0], snr_db=snr, pair_snr_db=pair_snr, worst_pair=worst,
                               rms_ratio_db=ratio_db)
    from codecdoctor.checks.training import VAL_SNR_LOW_DB

    if not math.isfinite(snr) or snr < VAL_SNR_LOW_DB:
        try:
            from codecdoctor.core.registry import internal_errors
            from codecdoctor.diagnose import diagnose_pair
        except ImportError:  # a trimmed install without the pair diagnosis: T608 still reports the SNR
            return v
        pm, diag, checks = diagnose_pair(r[worst].reshape(-1).numpy(), e[worst].reshape(-1).numpy(), sample_rate,
                                         subject=f"validation pair {worst} at step {step}",
                                         output_bound=output_bound)
        v.diagnosis, v.diagnosis_checks = diag, checks
        v.diagnosis_notes = internal_errors(pm.notes)
        v.what_if = {k: float(val) for k, val in (pm.what_if or {}).items() if isinstance(val, (int, float))}
    return v
