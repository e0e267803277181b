"""Live training monitor: range assertions, NaN / AMP-overflow detection and codebook health for any
PyTorch training loop, without a host sync per step.

A plain loop needs these lines (the built-in trainer calls the same hooks)::

    import codecdoctor

    monitor = codecdoctor.Monitor(model, sample_rate=16000, mode="strict", output_bound=1.0,
                                  optimizer=optimizer, event_log="runs/monitor.jsonl")
    for step, x in enumerate(loader):
        y, commit_loss = model(x)
        losses = {"l1": (y - x).abs().mean(), "commit": commit_loss}
        monitor.on_batch(x, y, losses)          # after the forward
        optimizer.zero_grad()
        sum(losses.values()).backward()
        monitor.on_backward(model)              # after backward, before clipping
        optimizer.step()
        monitor.on_step()                       # after the step (on_step(scaler) with AMP)
        if step % 1000 == 0:
            monitor.flush()                     # read back first: never checkpoint an unread fault
            torch.save(model.state_dict(), "last.pt")
        # after validation: monitor.on_validation(ref, est)
    report = monitor.close(html="reports/monitor.html", json="reports/monitor.json")

In "strict" mode a finding of severity error or worse raises `codecdoctor.CheckFailed` from the
hook that read it back (its `.findings` name the violation), so the loop stops before the next
checkpoint; in "warn" mode findings only accumulate in `monitor.findings` and the event log.

How it stays off the critical path: every statistic is a tensor op on the batch's device, written
into one row of a preallocated buffer (`monitor_stats.py`). The buffer is copied to the host in one
transfer every `read_every` steps (and in `flush`, `on_validation`, `close`). A violation is therefore
reported at most one read-back late, naming the step and batch item recorded on the device. Non-finite
values also bump an on-device alarm counter that the host peeks at without blocking (a zero-copy view
on the CPU; a non-blocking copy to pinned memory polled through a CUDA event), so a NaN stops a strict
run at once on the CPU and within a step or two on a GPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from codecdoctor.core.errors import CheckFailed
from codecdoctor.core.findings import Finding, Report, Severity, jsonable
from codecdoctor.core.registry import run_checks
from codecdoctor.measure.training import (
    CodebookLevel,
    DdpMeasurements,
    NonfiniteTrace,
    RunState,
    StepWindow,
    TrainingMeasurements,
    ValidationMeasurements,
    median_finite,
)
from codecdoctor.monitor.stats import (
    SIGNAL_FIELDS,
    AlarmPeek,
    ColumnLayout,
    codebook_checksum,
    codebook_stats,
    find_codebooks,
    grad_norm,
    loss_vector,
    signal_stats,
)

SPECTRAL_WORDS = ("mel", "stft", "spec")
_HALF_DTYPES = (torch.float16,)


def _bound_from(value: Any) -> float | None:
    """'tanh' / 'clamp' -> 1.0, 'none' -> None, a number -> that number."""
    if value is None:
        return None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("tanh", "clamp", "clip", "hardtanh"):
            return 1.0
        if low in ("none", "", "unbounded", "off"):
            return None
        return float(low)
    return float(value)


def _auto_output_bound(model: torch.nn.Module) -> float | None:
    base = getattr(model, "module", model)  # DDP wrapper
    config = getattr(base, "config", None)
    return _bound_from(getattr(config, "output_bound", None)) if config is not None else None


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_nonfinite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    return False


class _FoundNonfinite(Exception):
    pass


STOP_POLICIES = ("errors", "nonfinite")


def is_nonfinite_fault(f: Finding) -> bool:
    """A finding that means NaN/Inf reached the input, output, loss or gradients: the run is lost
    from this step on, so even a lenient strict mode stops for it."""
    return f.id == "T604" or any(key in f.evidence for key in ("nonfinite_samples", "nonfinite_steps"))


class Monitor:
    """Live checks T601-T611 (and S501-S503 for spectral loss terms) for a training loop.

    Parameters beyond the documented interface: `optimizer` (learning rate for T609; also taken from
    `on_step(optimizer=...)`), `start_step` (a resumed run's first step), `warmup_steps` (drift checks
    wait this long; default 2 × read_every), `forward` (how to re-run a batch for T604; default
    `model(x)`), `spectral_terms` / `spectral_fft_sizes` / `spectral_eps` (S5xx; default: loss terms
    named *mel*/*stft*/*spec* and the codec config's `mel_fft_sizes`), `stop_on` ("errors": strict
    mode stops on any error finding; "nonfinite": only on non-finite values, see `is_nonfinite_fault`).
    """

    def __init__(self, model: torch.nn.Module, sample_rate: int, mode: str = "strict", *,
                 output_bound: float | str | None = None, read_every: int = 25, event_log: str | Path | None = None,
                 optimizer: Any = None, start_step: int = 0, warmup_steps: int | None = None,
                 forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None,
                 spectral_terms: tuple[str, ...] | None = None, spectral_fft_sizes: tuple[int, ...] | None = None,
                 spectral_eps: float | None = None, dead_code_share: float | None = None, ddp_check: bool = True,
                 codebook_warmup_steps: int | None = None, stop_on: str = "errors"):
        if mode not in ("strict", "warn"):
            raise ValueError(f"mode must be 'strict' or 'warn', got {mode!r}")
        if stop_on not in STOP_POLICIES:
            raise ValueError(f"stop_on must be one of {', '.join(STOP_POLICIES)}, got {stop_on!r}")
        # what a strict monitor stops on: "errors" = any finding of severity error or worse;
        # "nonfinite" = only non-finite values (the run is lost; everything else is reported as drift)
        self.stop_on = stop_on
        if int(read_every) < 1:
            raise ValueError("read_every must be at least 1")
        self.model = model
        self.sample_rate = int(sample_rate)
        self.mode = mode
        self.output_bound = _auto_output_bound(model) if output_bound is None else _bound_from(output_bound)
        self.read_every = int(read_every)
        self.optimizer = optimizer
        self.warmup_steps = 2 * self.read_every if warmup_steps is None else int(warmup_steps)
        self.codebook_warmup_steps = 4 * self.warmup_steps if codebook_warmup_steps is None else int(codebook_warmup_steps)
        self._forward = forward or (lambda m, x: m(x))
        self.spectral_terms = spectral_terms
        config = getattr(getattr(model, "module", model), "config", None)
        self.spectral_fft_sizes = tuple(spectral_fft_sizes or getattr(config, "mel_fft_sizes", ()) or ())
        self.spectral_eps = spectral_eps
        if dead_code_share is None:
            from codecdoctor.measure.quantizer import USED_FRACTION_OF_UNIFORM
            dead_code_share = USED_FRACTION_OF_UNIFORM
        self.dead_code_share = dead_code_share
        self.ddp_check = ddp_check

        self._start_step = int(start_step)
        self._next_step = int(start_step)
        self._layout = ColumnLayout()
        self._rows: torch.Tensor | None = None
        self._alarm: torch.Tensor | None = None
        self._peek: AlarmPeek | None = None
        self._loss_index_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._slot = 0
        self._row_steps: list[int] = []
        self._row_terms: list[tuple[str, ...]] = []
        self._row_samples: list[tuple[int, int]] = []
        self._row_grad: list[bool] = []
        self._row_scale: list[bool] = []
        self._grad_elements: int | None = None
        self._retained: deque[tuple[int, torch.Tensor, torch.Tensor | None]] = deque(maxlen=2)
        self._loss_dtypes: dict[str, str] = {}
        self._output_dtype: str | None = None
        self._scaler_used = False
        self._steps_without_scaler = 0
        self._codebooks = find_codebooks(getattr(model, "module", model))
        self._stft_peak_checked: float | None = None
        self._retained_for_stft: tuple | None = None

        self.state = RunState()
        self.curves: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self._findings: list[Finding] = []
        self._finding_keys: dict[tuple, Finding] = {}
        # findings judged on one validation (T603, T608 and its R3xx diagnosis) describe the model at
        # that moment; a later validation that no longer shows them marks them resolved
        self._from_validation: list[Finding] = []
        self.checks_run: list[str] = []
        self.latest: dict[str, Any] = {"step": None, "findings": 0, "newest_finding": None}
        self.read_backs = 0
        self._closed = False
        self._started = time.time()
        self.event_log = Path(event_log) if event_log else None
        self._log = None
        if self.event_log is not None:
            self.event_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.event_log.open("a", encoding="utf-8")
        # allocate the device buffers (and the alarm's host view) now, not inside the first step
        first_param = next(iter(model.parameters()), None)
        if first_param is not None:
            self._ensure_buffers(first_param.device)
        self._event("start", mode=mode, read_every=self.read_every, output_bound=self.output_bound,
                    codebooks=[c.name for c in self._codebooks], sample_rate=self.sample_rate)

    # -- public state -------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        return list(self._findings)

    # -- hooks --------------------------------------------------------------------------------
    def on_batch(self, x: torch.Tensor, y: Any, losses: dict[str, Any] | None = None, *, step: int | None = None) -> None:
        """After the forward: input batch `x [B, ...]`, output batch `y`, dict of scalar loss terms."""
        if self._closed or not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0:
            return
        step = self._next_step if step is None else int(step)
        self._next_step = step + 1
        # The schedule follows the step number, not the buffer fill, so all DDP ranks read back (and
        # all-reduce for T611) at the same steps even after one of them read back early.
        scheduled = step != self._start_step and (step - self._start_step) % self.read_every == 0
        if scheduled or self._slot >= self.read_every:
            self._read_back(scheduled=scheduled, now_step=step)
        self._ensure_buffers(x.device)
        slot = self._slot
        self._slot += 1
        row = self._rows[slot]
        row.fill_(math.nan)
        lay = self._layout.fixed
        bound = self.output_bound if self.output_bound is not None else 1.0
        x_stats = signal_stats(x, bound)
        row[lay["in_peak"]: lay["in_peak"] + len(SIGNAL_FIELDS)].copy_(x_stats)
        alarm_parts = [x_stats[4:5]]
        out_samples = 0
        y_tensor = y if isinstance(y, torch.Tensor) and y.dim() > 0 and y.shape[0] > 0 else None
        if y_tensor is not None:
            y_stats = signal_stats(y_tensor.to(x.device, non_blocking=True) if y_tensor.device != x.device else y_tensor, bound)
            row[lay["out_peak"]: lay["out_peak"] + len(SIGNAL_FIELDS)].copy_(y_stats)
            alarm_parts.append(y_stats[4:5])
            out_samples = y_tensor[0].numel()
            self._output_dtype = str(y_tensor.dtype).replace("torch.", "")
        names, values = loss_vector(losses or {}, x.device)
        if names:
            index = self._loss_index(tuple(names), x.device)
            if index is None:
                names, values = [], values[:0]
            else:
                row.index_copy_(0, index, values)
                alarm_parts.append((~torch.isfinite(values)).sum().float().reshape(1))
                for name in names:
                    if name not in self._loss_dtypes and isinstance((losses or {}).get(name), torch.Tensor):
                        self._loss_dtypes[name] = str(losses[name].dtype).replace("torch.", "")
        self._alarm.add_(torch.cat(alarm_parts).sum())
        self._row_steps.append(step)
        self._row_terms.append(tuple(names))
        self._row_samples.append((x[0].numel(), out_samples))
        self._row_grad.append(False)
        self._row_scale.append(False)
        # references, not copies: the batch stays alive one or two steps longer so that a fault can
        # be re-run under hooks (T604); detach() drops the autograd graph
        self._retained.append((step, x.detach(), y_tensor.detach() if y_tensor is not None else None))
        self._peek.arm()
        if self._peek.tripped():
            self._read_back(scheduled=False)

    def on_backward(self, model: torch.nn.Module | None = None) -> None:
        """After backward (gradients unscaled), before clipping."""
        if self._closed or self._rows is None or self._slot == 0:
            return
        result = grad_norm((model or self.model).parameters())
        if result is None:
            return
        total, nonfinite, elements = result
        col = self._layout.fixed["grad_norm"]
        self._rows[self._slot - 1, col: col + 2].copy_(torch.stack([total.float(), nonfinite]).to(self._rows.device))
        self._grad_elements = elements
        self._row_grad[-1] = True
        if self._steps_without_scaler > 0 and not self._scaler_used:
            # without a scaler nothing skips a non-finite step: the optimizer would write it into the weights
            self._alarm.add_(nonfinite.to(self._alarm.device))
            self._peek.arm()
            if self._peek.tripped():
                self._read_back(scheduled=False)

    def on_step(self, scaler: Any = None, *, optimizer: Any = None) -> None:
        """After the optimizer step. Pass the GradScaler when training with AMP."""
        if optimizer is not None:
            self.optimizer = optimizer
        if self._closed or self._rows is None or self._slot == 0:
            return
        scale = getattr(scaler, "_scale", None) if scaler is not None else None
        enabled = scaler is not None and (not hasattr(scaler, "is_enabled") or scaler.is_enabled())
        if enabled and isinstance(scale, torch.Tensor):
            col = self._layout.fixed["scale"]
            # the scale tensor itself (scaler.get_scale() would call .item(), a sync)
            self._rows[self._slot - 1, col: col + 1].copy_(scale.detach().reshape(1).float().to(self._rows.device))
            self._scaler_used = True
            self._row_scale[-1] = True
        else:
            self._steps_without_scaler += 1

    def on_validation(self, ref: torch.Tensor, est: torch.Tensor, *, step: int | None = None) -> None:
        """After validation: all reference inputs and the model's outputs, `[N, ...]` each."""
        if self._closed:
            return
        self._read_back(scheduled=False)
        step = self._next_step if step is None else int(step)
        validation = self._measure_validation(ref, est, step)
        if validation is None:
            return
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 validation=validation)
        run = run_checks("training", m, only=("T603", "T608"))
        findings = list(run.findings)
        checks = list(run.checks_run)
        if any(f.id == "T608" for f in findings):
            findings += [f for f in validation.diagnosis if f.id != "R300"]
            checks += validation.diagnosis_checks
        self.validations.append({"step": step, "snr_db": validation.snr_db, "rms_ratio_db": validation.rms_ratio_db,
                                 "pairs": validation.pairs})
        self.latest.update({"val_snr_db": validation.snr_db, "val_rms_ratio_db": validation.rms_ratio_db})
        self._event("validation", step=step, snr_db=validation.snr_db, rms_ratio_db=validation.rms_ratio_db,
                    pairs=validation.pairs)
        self._resolve_earlier_validation_findings({f.id for f in findings}, step, validation.snr_db)
        before = len(self._findings)
        try:
            self._emit(findings, checks)
        finally:
            self._from_validation.extend(self._findings[before:])

    def _resolve_earlier_validation_findings(self, current_ids: set[str], step: int, snr_db: float) -> None:
        """An early validation of a model that is still learning often has SNR near 0 dB; once a later
        validation is healthy, that finding is history, not a diagnosis of the run: keep it as info."""
        for f in self._from_validation:
            if f.severity > Severity.INFO and f.id not in current_ids:
                f.severity = Severity.INFO
                f.message += f" - resolved: not seen at the validation at step {step} (SNR {snr_db:.2f} dB)"
                f.evidence["resolved_at_step"] = step
                # a recurrence later must be a new finding, not a repeat of this resolved one
                self._finding_keys = {k: v for k, v in self._finding_keys.items() if v is not f}

    def flush(self) -> None:
        """Read back now (e.g. before saving a checkpoint). Raises CheckFailed in strict mode."""
        if not self._closed:
            self._read_back(scheduled=False)

    def close(self, html: str | Path | None = None, json: str | Path | None = None) -> Report:
        """Flush, stop, and return the run's Report (written to `html` / `json` when given).
        Never raises CheckFailed: the findings are in the report."""
        if not self._closed:
            try:
                self._read_back(scheduled=False)
            except CheckFailed:
                pass
            self._closed = True
        from codecdoctor.report.figures.train import build_report

        report = build_report(self)
        self._event("close", findings=len(self._findings), summary=report.summary())
        if self._log is not None:
            self._log.close()
            self._log = None
        if html:
            from codecdoctor.report import html as html_out
            html_out.write(report, Path(html), title="codecdoctor: training monitor")
        if json:
            from codecdoctor.report import json as json_out
            json_out.write(report, Path(json))
        return report

    # -- device buffers -------------------------------------------------------------------------
    def _ensure_buffers(self, device: torch.device) -> None:
        if self._rows is not None and self._rows.device == device:
            return
        if self._rows is not None and self._slot:
            self._read_back(scheduled=False)
        self._rows = torch.full((self.read_every, self._layout.width), math.nan, dtype=torch.float32, device=device)
        self._alarm = torch.zeros(1, dtype=torch.float32, device=device)
        self._peek = AlarmPeek(self._alarm)
        self._loss_index_cache.clear()

    def _loss_index(self, names: tuple[str, ...], device: torch.device) -> torch.Tensor | None:
        index = self._loss_index_cache.get(names)
        if index is None:
            cols = self._layout.loss_columns(names)
            if cols is None:
                return None
            # built once per distinct set of terms: a host-to-device copy, not a per-step one
            index = torch.tensor(cols, dtype=torch.long, device=device)
            self._loss_index_cache[names] = index
        return index

    # -- read-back and judging -----------------------------------------------------------------
    def _read_back(self, scheduled: bool, now_step: int | None = None) -> None:
        if self._rows is None:
            return
        if self._slot == 0:
            # nothing new on this rank (an alarm read it back early), but a scheduled step must still
            # join the T611 all-reduce, or the other ranks would wait for it forever
            if scheduled and self.ddp_check and now_step is not None:
                ddp = self._ddp_checksums(now_step)
                if ddp is not None:
                    m = TrainingMeasurements(state=self.state, output_bound=self.output_bound,
                                             warmup_steps=self.warmup_steps, ddp=ddp)
                    run = run_checks("training", m, only=("T611",))
                    self._emit(run.findings, run.checks_run)
            return
        n = self._slot
        base = getattr(self.model, "module", self.model)
        buffers = dict(base.named_buffers())
        levels_t = codebook_stats(buffers, self._codebooks, self.dead_code_share) if self._codebooks else None
        parts = [self._rows[:n].reshape(-1)]
        if levels_t is not None and levels_t.numel():
            parts.append(levels_t.reshape(-1).to(self._rows.device))
        # the one device-to-host transfer of this read-back
        host = torch.cat(parts).cpu().numpy().astype(np.float64)
        self.read_backs += 1
        width = self._layout.width
        table = host[: n * width].reshape(n, width)
        level_values = host[n * width:].reshape(-1, 4) if levels_t is not None and levels_t.numel() else None
        steps = list(self._row_steps)
        terms_per_row = list(self._row_terms)
        samples = list(self._row_samples)
        had_grad, had_scale = list(self._row_grad), list(self._row_scale)
        self._slot = 0
        self._row_steps.clear(), self._row_terms.clear(), self._row_samples.clear()
        self._row_grad.clear(), self._row_scale.clear()
        self._alarm.zero_()

        window = self._window(table, steps, terms_per_row, samples, had_grad, had_scale)
        levels = None
        if level_values is not None:
            levels = [CodebookLevel(level=i, name=cb.name, codebook_size=int(v[0]), perplexity=float(v[1]),
                                    dead_codes=float(v[2]), initted=bool(v[3] > 0))
                      for i, (cb, v) in enumerate(zip(self._codebooks, level_values))]
        # the ceiling in T601 covers all data seen so far, this window included
        self.state.input_energy += float(np.nansum(window.columns["in_energy"]))
        self.state.input_clip_error_energy += float(np.nansum(window.columns["in_clip_error_energy"]))
        trace = self._trace_if_needed(window)
        # buffers are checksummed as they are now: during step `now_step`, after its forward
        ddp = self._ddp_checksums(steps[-1] if now_step is None else now_step) if scheduled and self.ddp_check else None
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 window=window, lr=self._learning_rate(), levels=levels, nonfinite=trace, ddp=ddp,
                                 scaler_used=self._scaler_used)
        run = run_checks("training", m)
        findings, checks = list(run.findings), list(run.checks_run)
        stft_findings, stft_checks = self._spectral_checks(window)
        findings += stft_findings
        checks += stft_checks
        self._update_state(window, levels, m.lr)
        self._record_curves(window, levels, m.lr)
        self._emit(findings, checks)

    def _window(self, table, steps, terms_per_row, samples, had_grad, had_scale) -> StepWindow:
        lay = self._layout
        columns: dict[str, list[float]] = {}
        for name, col in lay.fixed.items():
            columns[name] = [float(v) for v in table[:, col]]
        for i in range(len(steps)):
            if not had_grad[i]:
                columns["grad_norm"][i] = math.nan
                columns["grad_nonfinite"][i] = 0.0
            if not had_scale[i]:
                columns["scale"][i] = math.nan
            if samples[i][1] == 0:
                for f in SIGNAL_FIELDS:
                    columns[f"out_{f}"][i] = math.nan if f not in ("nonfinite", "over") else 0.0
        losses: dict[str, list[float | None]] = {}
        for name in lay.loss_terms:
            col = lay.loss_start + lay.loss_terms.index(name)
            values = [float(table[i, col]) if name in terms_per_row[i] else None for i in range(len(steps))]
            if any(v is not None for v in values):
                losses[name] = values
        return StepWindow(steps=steps, columns=columns, losses=losses, in_samples=[s[0] for s in samples],
                          out_samples=[s[1] for s in samples], grad_elements=self._grad_elements,
                          loss_dtypes=dict(self._loss_dtypes), output_dtype=self._output_dtype)

    def _learning_rate(self) -> float | None:
        groups = getattr(self.optimizer, "param_groups", None)
        if not groups:
            return None
        lr = groups[0].get("lr")
        try:
            return float(lr)  # a tensor lr (capturable optimizers) syncs here, at read-back only
        except (TypeError, ValueError):
            return None

    def _update_state(self, w: StepWindow, levels: list[CodebookLevel] | None, lr: float | None) -> None:
        s = self.state
        s.windows += 1
        s.steps_seen += len(w.steps)
        s.rms_ratio_db.append((w.steps[-1], median_finite(w.rms_ratio_db())))
        s.grad_norms.extend(g for g in w.columns["grad_norm"] if math.isfinite(g))
        total = self._total_series(w)
        s.loss_total.extend((step, v) for step, v in zip(w.steps, total) if v is not None)
        if lr is not None:
            s.lr_history.append((w.steps[-1], lr))
        for lv in levels or []:
            if lv.initted and math.isfinite(lv.perplexity) and w.steps[-1] >= self.codebook_warmup_steps:
                s.perplexity_peak[lv.level] = max(s.perplexity_peak.get(lv.level, 0.0), lv.perplexity)
        scales = [v for v in w.columns["scale"] if math.isfinite(v)]
        if scales:
            s.last_scale = scales[-1]

    @staticmethod
    def _total_series(w: StepWindow) -> list[float | None]:
        if "total" in w.losses:
            return w.losses["total"]
        out: list[float | None] = []
        for i in range(len(w.steps)):
            values = [vals[i] for vals in w.losses.values() if vals[i] is not None]
            out.append(sum(values) if values else None)
        return out

    def _record_curves(self, w: StepWindow, levels: list[CodebookLevel] | None, lr: float | None) -> None:
        def finite_max(values):
            finite = [v for v in values if math.isfinite(v)]
            return max(finite) if finite else math.nan

        point = {
            "step": w.steps[-1],
            "loss": {k: median_finite([v for v in vals if v is not None]) for k, vals in w.losses.items()},
            "input_peak": finite_max(w.columns["in_peak"]),
            "output_peak": finite_max(w.columns["out_peak"]),
            "rms_ratio_db": median_finite(w.rms_ratio_db()),
            "grad_norm": median_finite(w.columns["grad_norm"]),
            "grad_norm_max": finite_max(w.columns["grad_norm"]),
            "scale": next((v for v in reversed(w.columns["scale"]) if math.isfinite(v)), math.nan),
            "perplexity": [lv.perplexity for lv in levels or []],
            "dead_codes": [lv.dead_codes for lv in levels or []],
            "lr": lr,
        }
        self.curves.append(point)
        last = {k: vals[-1] for k, vals in w.losses.items() if vals and vals[-1] is not None}
        self.latest.update({"step": w.steps[-1], "losses": last, "input_peak": point["input_peak"],
                            "output_peak": point["output_peak"], "rms_ratio_db": point["rms_ratio_db"],
                            "grad_norm": point["grad_norm"], "perplexity": point["perplexity"],
                            "scale": point["scale"], "lr": lr, "read_backs": self.read_backs})
        self._event("readback", **point)

    # -- T604: re-run the offending batch under forward hooks --------------------------------------
    def _trace_if_needed(self, w: StepWindow) -> NonfiniteTrace | None:
        bad_steps = [s for name, vals in w.losses.items() for s, v in zip(w.steps, vals)
                     if v is not None and not math.isfinite(v)]
        if not bad_steps:
            return None
        step = min(bad_steps)
        i = w.steps.index(step)
        terms = [name for name, vals in w.losses.items() if vals[i] is not None and not math.isfinite(vals[i])]
        named = [t for t in terms if t != "total"] or terms
        values = {t: w.losses[t][i] for t in named}
        item = None
        if w.columns["out_nonfinite"][i] > 0 and w.columns["out_nonfinite_item"][i] >= 0:
            item = int(w.columns["out_nonfinite_item"][i])
        elif w.columns["in_nonfinite"][i] > 0 and w.columns["in_nonfinite_item"][i] >= 0:
            item = int(w.columns["in_nonfinite_item"][i])
        trace = NonfiniteTrace(step=step, terms=named, term_values=values, module=None, item=item)
        batch = next(((x, y) for s, x, y in self._retained if s == step), None)
        if batch is None:
            trace.detail = "the batch was no longer in memory, so it was not re-run"
            return trace
        if w.columns["in_nonfinite"][i] > 0:
            trace.detail = "the input batch itself holds non-finite samples (see T601)"
        self._rerun_under_hooks(batch[0], trace)
        self._retained_for_stft = (step, batch[0], batch[1], named)
        return trace

    def _rerun_under_hooks(self, x: torch.Tensor, trace: NonfiniteTrace) -> None:
        model = self.model
        base = getattr(model, "module", model)
        saved_buffers = {name: b.detach().clone() for name, b in base.named_buffers()}
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        found: list[str] = []

        def hook_for(name: str):
            def hook(module, inputs, output):
                if not found and _has_nonfinite(output):
                    found.append(name)
                    raise _FoundNonfinite
            return hook

        handles = [m.register_forward_hook(hook_for(name)) for name, m in base.named_modules() if name]
        dist = torch.distributed
        # Under DDP a training-mode forward may run collectives (this codec all-reduces its EMA
        # statistics); one rank re-running alone would wait forever, so re-run in eval mode there.
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        was_training = base.training
        if distributed:
            base.eval()
            trace.detail = (trace.detail + "; " if trace.detail else "") + "re-run in eval mode (distributed run)"
        try:
            with torch.no_grad():
                # the unwrapped module under DDP: the wrapper's forward may broadcast buffers
                self._forward(base if distributed else model, x)
        except _FoundNonfinite:
            pass
        except Exception as exc:  # the user's model may need more than model(x): say so, keep training
            trace.detail = (trace.detail + "; " if trace.detail else "") + f"re-running the batch failed ({type(exc).__name__}: {exc}); pass forward= to Monitor"
        finally:
            for h in handles:
                h.remove()
            base.train(was_training)
            with torch.no_grad():
                for name, b in base.named_buffers():
                    if name in saved_buffers and saved_buffers[name].shape == b.shape:
                        b.copy_(saved_buffers[name])
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        if found:
            name = found[0]
            # a weight-norm (or other) parametrization fires its hook when its owner reads the
            # weight: name the layer, say that its computed weight is the non-finite output
            owner = name.split(".parametrizations.")[0] if ".parametrizations." in name else None
            trace.module = owner or name
            module = base.get_submodule(trace.module)
            trace.module_params_nonfinite = any(_has_nonfinite(p) for p in module.parameters(recurse=owner is not None))
            if owner is not None:
                note = f"its parametrized weight ({name[len(owner) + 1:]}) is already non-finite"
                trace.detail = (trace.detail + "; " if trace.detail else "") + note

    # -- S501-S503 for spectral loss terms ----------------------------------------------------------
    def _spectral_terms(self, w: StepWindow) -> list[str]:
        if self.spectral_terms is not None:
            return [t for t in self.spectral_terms if t in w.losses]
        return [t for t in w.losses if any(word in t.lower() for word in SPECTRAL_WORDS)]

    def _spectral_checks(self, w: StepWindow) -> tuple[list[Finding], list[str]]:
        """S501-S503 when a spectral loss term is computed in float16 (the dtype of the loss tensor
        the loop hands over, a host-side attribute: no sync)."""
        terms = self._spectral_terms(w)
        half = [t for t in terms if w.loss_dtypes.get(t) == "float16"]
        retained = self._retained_for_stft
        nonfinite = retained is not None and retained[0] in w.steps and any(t in half for t in retained[3])
        if not half or not self.spectral_fft_sizes:
            return [], []
        peaks = [p for p in w.columns["in_peak"] + w.columns["out_peak"] if math.isfinite(p)]
        peak = max(peaks) if peaks else None
        if peak is None:
            return [], []
        # risk checks once, and again only when the data gets 1 dB louder than when last checked
        louder = self._stft_peak_checked is None or peak > self._stft_peak_checked * 10 ** (1 / 20)
        if not louder and not nonfinite:
            return [], []
        from codecdoctor.measure.stft_risk import measure_stft

        device = self._rows.device.type if self._rows is not None else None
        kwargs: dict[str, Any] = {}
        if nonfinite:
            _, x, y, _ = retained
            kwargs = {"reference": x[0].reshape(-1), "estimate": y[0].reshape(-1) if y is not None else None,
                      "run_loss": True}
            self._retained_for_stft = None
        else:
            kwargs = {"run_loss": False}
        m = measure_stft(peak, self.spectral_fft_sizes, eps=self.spectral_eps, stft_dtype="float16", device=device,
                         source=f"loss term(s) {', '.join(half)} (float16)", sample_rate=self.sample_rate, **kwargs)
        self._stft_peak_checked = max(peak, self._stft_peak_checked or 0.0)
        only = ("S501", "S502", "S503") if nonfinite else ("S501", "S502")
        run = run_checks("stft", m, only=only)
        return run.findings, run.checks_run

    # -- T608: validation ----------------------------------------------------------------------------
    def _measure_validation(self, ref: Any, est: Any, step: int) -> ValidationMeasurements | None:
        r = torch.as_tensor(ref).detach().double().cpu()
        e = torch.as_tensor(est).detach().double().cpu()
        if r.dim() == 0 or r.numel() == 0 or e.numel() == 0 or r.shape[0] != e.shape[0]:
            return None
        r2, e2 = r.reshape(r.shape[0], -1), e.reshape(e.shape[0], -1)
        length = min(r2.shape[1], e2.shape[1])
        r2, e2 = r2[:, :length], e2[:, :length]
        e2 = torch.nan_to_num(e2, nan=0.0, posinf=0.0, neginf=0.0) if not bool(torch.isfinite(e2).all()) else e2
        signal = r2.pow(2).sum(1)
        noise = (r2 - e2).pow(2).sum(1)
        pair_snr = [10 * math.log10(s / n) if n > 0 and s > 0 else (math.inf if n == 0 else -math.inf)
                    for s, n in zip(signal.tolist(), noise.tolist())]
        total_signal, total_noise = float(signal.sum()), float(noise.sum())
        snr = 10 * math.log10(total_signal / total_noise) if total_noise > 0 and total_signal > 0 else (
            math.inf if total_noise == 0 else -math.inf)
        out_energy = float(e2.pow(2).sum())
        ratio_db = 10 * math.log10(out_energy / total_signal) if out_energy > 0 and total_signal > 0 else math.nan
        finite = [(v, i) for i, v in enumerate(pair_snr) if not math.isnan(v)]
        worst = min(finite)[1] if finite else 0
        v = ValidationMeasurements(step=step, pairs=r2.shape[0], snr_db=snr, pair_snr_db=pair_snr, worst_pair=worst,
                                   rms_ratio_db=ratio_db)
        from codecdoctor.checks.training import VAL_SNR_LOW_DB

        if not math.isfinite(snr) or snr < VAL_SNR_LOW_DB:
            try:
                from codecdoctor.diagnose import diagnose_pair

                pm, diag, checks = diagnose_pair(r[worst].numpy(), e[worst].numpy(), self.sample_rate,
                                                 subject=f"validation pair {worst} at step {step}",
                                                 output_bound=self.output_bound)
                v.diagnosis, v.diagnosis_checks = diag, checks
                v.what_if = {k: float(val) for k, val in (pm.what_if or {}).items() if isinstance(val, (int, float))}
            except ImportError:
                pass
        return v

    # -- T611: DDP codebook agreement ------------------------------------------------------------------
    def _ddp_checksums(self, step: int) -> DdpMeasurements | None:
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        result = codebook_checksum(getattr(self.model, "module", self.model))
        if result is None:
            return None
        names, sums = result
        if dist.get_backend() == "gloo" and sums.device.type != "cpu":
            sums = sums.cpu()
        high, low = sums.clone(), sums.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        scale = torch.maximum(high.abs(), low.abs()).clamp_min(1e-12)
        spread = ((high - low).abs() / scale).amax(1).cpu().tolist()
        return DdpMeasurements(rank=dist.get_rank(), world_size=dist.get_world_size(), step=step, tensors=names,
                               spread=[float(s) for s in spread])

    # -- findings ----------------------------------------------------------------------------------------
    def _emit(self, findings: list[Finding], checks: list[str]) -> None:
        for check_id in checks:
            if check_id not in self.checks_run:
                self.checks_run.append(check_id)
        new: list[Finding] = []
        for f in findings:
            # one finding per (check, severity, level/term): a fault that persists updates its count
            # instead of flooding the report every read-back
            key = (f.id, f.severity, f.evidence.get("level"), f.evidence.get("direction"))
            seen = self._finding_keys.get(key)
            if seen is not None:
                seen.evidence["repeats"] = int(seen.evidence.get("repeats", 0)) + 1
                seen.evidence["last_subject"] = f.subject
                continue
            self._finding_keys[key] = f
            self._findings.append(f)
            new.append(f)
            self._event("finding", **f.to_dict())
        if new:
            newest = new[-1]
            self.latest["newest_finding"] = f"{newest.id} {newest.severity.label}: {newest.message}"
        self.latest["findings"] = len(self._findings)
        errors = [f for f in new if f.severity >= Severity.ERROR
                  and (self.stop_on == "errors" or is_nonfinite_fault(f))]
        if errors and self.mode == "strict" and not self._closed:
            errors.sort(key=lambda f: -int(f.severity))
            raise CheckFailed(errors)

    def _event(self, kind: str, **fields: Any) -> None:
        if self._log is None:
            return
        record = {"event": kind, "time": round(time.time() - self._started, 3), **fields}
        self._log.write(json.dumps(jsonable(record), allow_nan=False) + "\n")
        self._log.flush()

    def __del__(self):  # pragma: no cover - best effort
        log = getattr(self, "_log", None)
        if log is not None:
            try:
                log.close()
            except Exception:
                pass
