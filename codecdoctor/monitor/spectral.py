"""S501-S503 for the spectral loss terms of a live run.

Two ways in, both decided from host-side attributes (no sync):
* a spectral term handed over in float16 (the dtype of the loss tensor): judged once, and again
  when the data gets 1 dB louder or a spectral term goes non-finite;
* a run under float16 autocast (the model's output is float16) whose loss went non-finite while the
  model's output stayed finite: the fault is in the loss. The loss is then measured, not predicted:
  a multi-scale log-mel loss runs under real float16 autocast on that step's batch (the loudest
  items first), and the step's own loss graph is read for float16 logs of exact zeros.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from codecdoctor.core.findings import Finding
from codecdoctor.core.registry import run_checks
from codecdoctor.measure.training import NonfiniteTrace, StepWindow

SPECTRAL_WORDS = ("mel", "stft", "spec")
# when the loss's FFT sizes are unknown (a watched script): the sizes multi-scale mel losses of
# published codecs share (EnCodec 2^5-2^11, DAC 32-2048), from where float16 overflow starts at full scale
ASSUMED_FFT_SIZES = (512, 1024, 2048)
LOUDEST_ITEMS = 4


class SpectralRisk:
    def __init__(self, terms: tuple[str, ...] | None, fft_sizes: tuple[int, ...], eps: float | None,
                 sample_rate: int):
        self.terms = terms
        self.fft_sizes = tuple(fft_sizes)
        self.eps = eps
        self.sample_rate = sample_rate
        self._peak_checked: float | None = None
        self._losses: dict[str, Any] | None = None
        self._measured_steps: set[int] = set()

    def keep_losses(self, losses: dict[str, Any] | None) -> None:
        """The newest step's loss tensors (a reference, replaced every step): their autograd graph
        is read only when the loss is non-finite, before the backward frees it."""
        if losses:
            self._losses = losses

    def spectral_terms(self, w: StepWindow) -> list[str]:
        if self.terms is not None:
            return [t for t in self.terms if t in w.losses]
        return [t for t in w.losses if any(word in t.lower() for word in SPECTRAL_WORDS)]

    def check(self, w: StepWindow, trace: NonfiniteTrace | None,
              batch: tuple[torch.Tensor, torch.Tensor | None] | None,
              device: torch.device | None) -> tuple[list[Finding], list[str]]:
        half = [t for t in self.spectral_terms(w) if w.loss_dtypes.get(t) == "float16"]
        if (not half and w.output_dtype == "float16" and trace is not None and batch is not None
                and trace.module is None and trace.terms):
            return self._measure_nonfinite_loss(trace, batch, device)
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

    def _measure_nonfinite_loss(self, trace: NonfiniteTrace, batch: tuple[torch.Tensor, torch.Tensor | None],
                                device: torch.device | None) -> tuple[list[Finding], list[str]]:
        """A float16-autocast run's loss is non-finite with a finite output: run the spectral loss
        under real float16 autocast on the step's batch, and read the step's loss graph."""
        if trace.step in self._measured_steps:
            return [], []
        self._measured_steps.add(trace.step)
        from codecdoctor.measure.stft_risk import half_precision_log_inputs, measure_stft

        x, y = batch
        order = x.detach().reshape(x.shape[0], -1).abs().amax(1).argsort(descending=True)[:LOUDEST_ITEMS]
        ref = x.detach().reshape(x.shape[0], -1)[order].float()
        est = y.detach().reshape(y.shape[0], -1)[order].float() if y is not None and y.shape[0] == x.shape[0] else None
        sizes = self.fft_sizes or ASSUMED_FFT_SIZES
        source = "the loss's FFT sizes" if self.fft_sizes else f"assumed FFT sizes {', '.join(map(str, sizes))}"
        device_type = device.type if device is not None else "cpu"
        m = measure_stft(float(ref.abs().max()), sizes, eps=self.eps, stft_dtype="float16", device=device_type,
                         source=f"non-finite loss at step {trace.step} under float16 autocast; {source}",
                         reference=ref, estimate=est, sample_rate=self.sample_rate, autocast="float16",
                         autocast_device=device_type)
        for value in (self._losses or {}).values():
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value.detach()).all()):
                m.half_logs.extend(half_precision_log_inputs(value))
        run = run_checks("stft", m, only=("S501", "S502", "S503"))
        for f in run.findings:
            f.subject = f"step {trace.step}: {f.subject}"
            f.evidence["step"] = trace.step
        return run.findings, run.checks_run
