"""S501-S503 for the spectral loss terms of a live run: judged only when a spectral term is computed
in float16 (the dtype of the loss tensor the loop hands over, a host-side attribute: no sync), once,
and again when the data gets 1 dB louder or a spectral term goes non-finite."""
from __future__ import annotations

import math
from typing import Any

import torch

from codecdoctor.core.findings import Finding
from codecdoctor.core.registry import run_checks
from codecdoctor.measure.training import NonfiniteTrace, StepWindow

SPECTRAL_WORDS = ("mel", "stft", "spec")


class SpectralRisk:
    def __init__(self, terms: tuple[str, ...] | None, fft_sizes: tuple[int, ...], eps: float | None,
                 sample_rate: int):
        self.terms = terms
        self.fft_sizes = tuple(fft_sizes)
        self.eps = eps
        self.sample_rate = sample_rate
        self._peak_checked: float | None = None

    def spectral_terms(self, w: StepWindow) -> list[str]:
        if self.terms is not None:
            return [t for t in self.terms if t in w.losses]
        return [t for t in w.losses if any(word in t.lower() for word in SPECTRAL_WORDS)]

    def check(self, w: StepWindow, trace: NonfiniteTrace | None,
              batch: tuple[torch.Tensor, torch.Tensor | None] | None,
              device: torch.device | None) -> tuple[list[Finding], list[str]]:
        half = [t for t in self.spectral_terms(w) if w.loss_dtypes.get(t) == "float16"]
        if not half or not self.fft_sizes:
            return [], []
        nonfinite = trace is not None and batch is not None and any(t in half for t in trace.terms)
        peaks = [p for p in w.columns["in_peak"] + w.columns["out_peak"] if math.isfinite(p)]
        if not peaks:
            return [], []
        peak = max(peaks)
        # risk checks once, and again only when the data gets 1 dB louder than when last checked
        louder = self._peak_checked is None or peak > self._peak_checked * 10 ** (1 / 20)
        if not louder and not nonfinite:
            return [], []
        from codecdoctor.measure.stft_risk import measure_stft

        kwargs: dict[str, Any] = {"run_loss": False}
        if nonfinite:
            x, y = batch
            kwargs = {"reference": x[0].reshape(-1), "estimate": y[0].reshape(-1) if y is not None else None,
                      "run_loss": True}
        m = measure_stft(peak, self.fft_sizes, eps=self.eps, stft_dtype="float16",
                         device=device.type if device is not None else None,
                         source=f"loss term(s) {', '.join(half)} (float16)", sample_rate=self.sample_rate, **kwargs)
        self._peak_checked = max(peak, self._peak_checked or 0.0)
        run = run_checks("stft", m, only=("S501", "S502", "S503") if nonfinite else ("S501", "S502"))
        return run.findings, run.checks_run
