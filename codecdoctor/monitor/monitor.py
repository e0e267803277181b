"""Live training monitor: range assertions, NaN / AMP-overflow detection and codebook health for any
PyTorch training loop, without a host sync per step.

A plain loop needs these lines (the built-in trainer calls the same hooks)::

    import codecdoctor

    config = codecdoctor.MonitorConfig(mode="strict", output_bound=1.0, event_log="runs/monitor.jsonl")
    monitor = codecdoctor.Monitor(model, sample_rate=16000, config=config, optimizer=optimizer)
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
checkpoint; in "warn" mode findings only accumulate in `monitor.findings` and the event log. Under
DDP a strict stop is voted after each optimizer step, so every rank stops at the same step
(`ddp.py`).

How it stays off the critical path: every statistic is a tensor op on the batch's device, written
into one row of a preallocated buffer (`readback.py`, values from `device_stats.py`). The buffer is
copied to the host in one transfer every `read_every` steps (and in `flush`, `on_validation`,
`close`). A violation is therefore reported at most one read-back late, naming the step and batch
item recorded on the device. Non-finite values also bump an on-device alarm counter that the host
peeks at without blocking, so a NaN stops a strict run at once on the CPU and within a step or two
on a GPU. The parts: `readback.py` (buffer, one transfer), `nan_trace.py` (which module went
non-finite), `validation.py` (T603/T608 with the R3xx diagnosis), `ddp.py` (T611, the stop vote),
`spectral.py` (S50x), `balance.py` (T612), `policy.py` (dedupe, resolution, what stops),
`tensorboard.py` (scalars).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from codecdoctor.checks.training import EMITTED_COLLAPSE_DISTINCT
from codecdoctor.core.errors import CheckFailed
from codecdoctor.core.findings import Finding, Report, Severity, jsonable
from codecdoctor.core.registry import run_checks
from codecdoctor.measure.bound import bound_value, infer_output_bound
from codecdoctor.measure.training import (
    CodebookLevel,
    EmittedLevel,
    LossBalance,
    MonitorSummary,
    RunState,
    ScalerBypass,
    StepWindow,
    TrainingMeasurements,
    is_discriminator_term,
    median_finite,
)
from codecdoctor.monitor import ddp as ddp_part
from codecdoctor.monitor.amp import LateScalerReadings, scaler_state
from codecdoctor.monitor.balance import TOTAL_NAMES, term_grad_norms
from codecdoctor.monitor.codes import common_parent
from codecdoctor.monitor.config import MonitorConfig, resolve_config
from codecdoctor.monitor.device_stats import codebook_stats, find_codebooks, grad_norm
from codecdoctor.monitor.nan_trace import NonfiniteTracer
from codecdoctor.monitor.policy import STOP_POLICIES, FindingsPolicy, is_nonfinite_fault
from codecdoctor.monitor.readback import StepBuffer
from codecdoctor.monitor.spectral import SpectralRisk
from codecdoctor.monitor.validation import measure_validation

__all__ = ["Monitor", "MonitorConfig", "STOP_POLICIES", "is_nonfinite_fault"]


def _auto_output_bound(model: torch.nn.Module) -> float | None:
    base = getattr(model, "module", model)  # DDP wrapper
    config = getattr(base, "config", None)
    bound = infer_output_bound(config=config) if config is not None else None
    return bound.value if bound is not None else None


class Monitor:
    """Live checks T601-T613 (and S501-S503 for spectral loss terms) for a training loop.

    A GAN loop reports its discriminator with `on_discriminator_backward(disc)` before the
    discriminator's optimizer step and `on_discriminator_step()` after it (T613); `watch` calls
    them from the optimizer step hooks. A loss term named disc* / d_loss is the discriminator's
    (T610, and not part of the total loss T609 reads).

    The settings (mode, stop_on, read_every, output_bound, warmup and spectral settings, event_log,
    ...) come in one `config=MonitorConfig(...)`, each field documented there; the same names as
    keyword arguments still work, but not together with `config`. The arguments are the run's own
    objects: `optimizer` (learning rate for T609; also taken from `on_step(optimizer=...)`),
    `start_step` (a resumed run's first step), `forward` (how to re-run a batch for T604; default
    `model(x)`) and `writer` (a TensorBoard SummaryWriter: the read-back statistics become scalars).
    `monitor.config` is the config it runs with; attributes such as `read_every` and `warmup_steps`
    hold the values resolved from it (a None setting filled in from the model or another field).
    """

    def __init__(self, model: torch.nn.Module, sample_rate: int, config: MonitorConfig | None = None, *,
                 optimizer: Any = None, start_step: int = 0,
                 forward: Callable[[torch.nn.Module, torch.Tensor], Any] | None = None, writer: Any = None,
                 **settings: Any):
        # the keyword settings are the form this class took before MonitorConfig; they still work
        self.config = config = resolve_config(config, settings)
        self.policy = FindingsPolicy(config.mode, config.stop_on, on_new=lambda f: self._event("finding", **f.to_dict()))
        self.check_notes: dict[str, str] = {}  # check ID -> its first internal error (core.registry)
        self.model = model
        self.sample_rate = int(sample_rate)
        self.mode = config.mode
        self.stop_on = config.stop_on
        self.output_bound = (_auto_output_bound(model) if config.output_bound is None
                             else bound_value(config.output_bound))
        self.read_every = int(config.read_every)
        self.optimizer = optimizer
        self.warmup_steps = 2 * self.read_every if config.warmup_steps is None else int(config.warmup_steps)
        self.codebook_warmup_steps = (4 * self.warmup_steps if config.codebook_warmup_steps is None
                                      else int(config.codebook_warmup_steps))
        model_config = getattr(getattr(model, "module", model), "config", None)
        fft_sizes = config.spectral_fft_sizes or getattr(model_config, "mel_fft_sizes", ()) or ()
        self.spectral = SpectralRisk(config.spectral_terms, tuple(fft_sizes), config.spectral_eps, self.sample_rate)
        dead_code_share = config.dead_code_share
        if dead_code_share is None:
            from codecdoctor.measure.quantizer import USED_FRACTION_OF_UNIFORM
            dead_code_share = USED_FRACTION_OF_UNIFORM
        self.dead_code_share = dead_code_share
        self.ddp_check = config.ddp_check
        self.loss_balance = config.loss_balance
        self.tracer = NonfiniteTracer(model, forward)
        self.buffer = StepBuffer(self.read_every)
        self.stop_vote = ddp_part.StopVote()
        self.scalars = None
        if writer is not None:
            from codecdoctor.monitor.tensorboard import ScalarLog
            self.scalars = ScalarLog(writer)

        self._start_step = int(start_step)
        self._next_step = int(start_step)
        self._scaler_used = False
        self._steps_without_scaler = 0
        self._late_scaler = LateScalerReadings()
        self._codebooks = find_codebooks(getattr(model, "module", model))
        self._balance_pending: list[tuple[int, list[str], torch.Tensor]] = []
        self._balance: list[LossBalance] = []
        self._codes_pending: list[tuple[int, list[str], list[int], list[int], torch.Tensor]] = []
        self._disc_before: list[torch.Tensor] | None = None
        self._disc_params: list[torch.Tensor] = []
        self._discriminator: str | None = None
        self._disc_change_measured = False

        self.state = RunState()
        self.curves: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self.latest: dict[str, Any] = {"step": None, "findings": 0, "newest_finding": None}
        self.read_backs = 0
        self._last_validation = None
        self._closed = False
        self._started = time.time()
        self.event_log = Path(config.event_log) if config.event_log else None
        self._log = None
        if self.event_log is not None:
            self.event_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.event_log.open("a", encoding="utf-8")
        # allocate the device buffers (and the alarm's host view) now, not inside the first step
        first_param = next(iter(model.parameters()), None)
        if first_param is not None:
            self.buffer.allocate(first_param.device)
        self._event("start", mode=self.mode, read_every=self.read_every, output_bound=self.output_bound,
                    codebooks=[c.name for c in self._codebooks], sample_rate=self.sample_rate)

    # -- public state -------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        return list(self.policy.findings)

    @property
    def checks_run(self) -> list[str]:
        return self.policy.checks_run

    def step_scheduled(self) -> bool:
        """Whether the next `on_batch` starts a read-back window (where T612 and codes are measured)."""
        return (self._next_step - self._start_step) % self.read_every == 0

    def quantizer_name(self) -> str | None:
        """The module that holds the codebooks whose EMA buffers T607 reads, or None."""
        return common_parent([c.name for c in self._codebooks]) if self._codebooks else None

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
        if scheduled or self.buffer.full:
            self._read_back(scheduled=scheduled, now_step=step)
        if self.buffer.needs_device(x.device):
            if self.buffer.filled:
                self._read_back(scheduled=False)
            self.buffer.allocate(x.device)
        y_tensor = y if isinstance(y, torch.Tensor) and y.dim() > 0 and y.shape[0] > 0 else None
        bound = self.output_bound if self.output_bound is not None else 1.0
        self.buffer.write_batch(step, x, y_tensor, losses, bound)
        self.spectral.keep_losses(losses)
        if self.loss_balance and (step - self._start_step) % self.read_every == 0 and losses:
            measured = term_grad_norms(y_tensor, losses)
            if measured is not None:
                self._balance_pending.append((step, measured[0], measured[1]))
        self.tracer.keep(step, x, y_tensor)
        self._peek_alarm()

    def on_loss(self, losses: dict[str, Any]) -> None:
        """Loss terms of the newest step, when they are known only after `on_batch` (watch sees the
        loss when `.backward()` is called on it)."""
        if self._closed or not self.buffer.filled:
            return
        self.buffer.write_losses(losses)
        self.spectral.keep_losses(losses)
        self._peek_alarm()

    def on_backward(self, model: torch.nn.Module | None = None) -> None:
        """After backward (gradients unscaled), before clipping."""
        if self._closed or not self.buffer.filled:
            return
        result = grad_norm((model or self.model).parameters())
        if result is None:
            return
        total, nonfinite, elements = result
        self.buffer.write_grad(total, nonfinite, elements)
        if self._steps_without_scaler > 0 and not self._scaler_used:
            # without a scaler nothing skips a non-finite step: the optimizer would write it into the weights
            self.buffer.add_alarm(nonfinite)
            self._peek_alarm()

    def on_step(self, scaler: Any = None, *, optimizer: Any = None) -> None:
        """After the optimizer step. Pass the GradScaler when training with AMP."""
        if optimizer is not None:
            self.optimizer = optimizer
        if self._closed:
            return
        self.state.optimizer_steps += 1
        if self.state.optimizer_steps == 1 and (lr := self._learning_rate()) is not None:
            # T609 sees a rise from the first step on, not only between read-backs
            self.state.lr_history.append((self._next_step - 1, lr))
        state = scaler_state(scaler)
        if self.buffer.filled:
            if state is not None:
                self.buffer.write_scale(*state)
                self._scaler_used = True
            else:
                self._steps_without_scaler += 1
        elif state is not None:  # this step's row was read back early by the non-finite alarm (amp.py)
            self._late_scaler.add(self._next_step - 1, state)
            self._scaler_used = True
            if len(self._late_scaler) >= self.read_every:
                self._judge_late_scaler()
        if self.mode == "strict" and self.stop_vote.active():
            stop = self.stop_vote.vote(self.buffer.device)
            if stop:
                mine = {id(f) for f in self.policy.findings}
                self.policy.add([f for f in stop if id(f) not in mine], [])
                raise CheckFailed(stop)

    def _judge_late_scaler(self) -> None:
        if not len(self._late_scaler):
            return
        window = self._late_scaler.take_window()
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 window=window, scaler_used=True)
        run = run_checks("training", m, only=("T606",))
        self.state.last_scale = window.columns["scale"][-1]
        self._emit(run.findings, run.checks_run)

    def on_scaler_bypass(self, bypass: ScalerBypass) -> None:
        """The model's optimizer stepped outside `GradScaler.step` while a scaler was active (T614)."""
        if self._closed:
            return
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 scaler_bypass=bypass)
        run = run_checks("training", m, only=("T614",))
        self._emit(run.findings, run.checks_run)

    def on_discriminator_backward(self, discriminator: torch.nn.Module) -> None:
        """Before the discriminator's optimizer step: its gradient norm as the step will see it (0
        when it holds no gradient), and once per read-back window a copy of its parameters, so
        `on_discriminator_step` can measure how far the step moved them (T613)."""
        if self._closed or not self.buffer.filled:
            return
        self._discriminator = type(getattr(discriminator, "module", discriminator)).__name__
        params = [p for p in discriminator.parameters() if p.requires_grad]
        result = grad_norm(params)
        norm = result[0] if result is not None else torch.zeros((), device=self.buffer.device)
        self.buffer.write_value("disc_grad_norm", norm)
        if not self._disc_change_measured and params:
            self._disc_before = [p.detach().clone() for p in params]
            self._disc_params = params

    def on_discriminator_step(self) -> None:
        """After the discriminator's optimizer step: ‖θ_after − θ_before‖ / ‖θ_before‖ on the
        window's measured step."""
        before, self._disc_before = self._disc_before, None
        if self._closed or before is None or not self.buffer.filled:
            return
        after = [p.detach() for p in self._disc_params]
        change = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(torch._foreach_sub(after, before))).float())
        size = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before)).float())
        self.buffer.write_value("disc_param_change", change / size.clamp_min(1e-30))
        self._disc_change_measured = True

    def on_codes(self, names: list[str], sizes: list[int], frames: list[int], stats: torch.Tensor, *,
                 step: int | None = None) -> None:
        """Per-level `[distinct, perplexity]` device statistics of the codes one training batch
        emitted (`codes.py`); read back with the next read-back (T607)."""
        if self._closed:
            return
        step = self._next_step - 1 if step is None else int(step)
        self._codes_pending.append((step, names, sizes, frames, stats))

    def on_validation(self, ref: torch.Tensor, est: torch.Tensor, *, step: int | None = None) -> None:
        """After validation: all reference inputs and the model's outputs, `[N, ...]` each."""
        if self._closed:
            return
        self._read_back(scheduled=False)
        step = self._next_step if step is None else int(step)
        validation = measure_validation(ref, est, step, self.sample_rate, self.output_bound)
        if validation is None:
            return
        # a loop that never calls on_step: the steps it names (or the batches seen) are its training steps
        validation.trained_steps = self.state.optimizer_steps or max(step - self._start_step, 0)
        self.state.validation_history.append((step, validation.snr_db))
        self._last_validation = validation
        findings, checks = self._judge_validation(validation)
        record = {"step": step, "snr_db": validation.snr_db, "rms_ratio_db": validation.rms_ratio_db,
                  "pairs": validation.pairs, "what_if": dict(validation.what_if)}
        self.validations.append(record)
        self.latest.update({"val_snr_db": validation.snr_db, "val_rms_ratio_db": validation.rms_ratio_db})
        self._event("validation", **record)
        if self.scalars is not None:
            self.scalars.validation(validation)
        self.policy.resolve_validation({f.id for f in findings}, step, validation.snr_db)
        self._emit(findings, checks, from_validation=True)

    def _judge_validation(self, validation: Any, *, ended: bool = False) -> tuple[list[Finding], list[str]]:
        """T603 and T608 on one validation, with the R3xx diagnosis of its worst pair when T608
        fires; while T608 says "not learned yet" (info) the diagnosis is listed at that severity too."""
        causes = [f.id for f in self.policy.findings if f.severity >= Severity.WARNING
                  and not self.policy.from_validation(f)]
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 validation=validation, run_ended=ended, run_causes=list(dict.fromkeys(causes)))
        run = run_checks("training", m, only=("T608",) if ended else ("T603", "T608"))
        self._keep_notes(run.notes)
        findings = list(run.findings)
        checks = list(run.checks_run)
        t608 = next((f for f in findings if f.id == "T608"), None)
        if t608 is not None:
            # copies: the same diagnosis is judged again when the run ends
            findings += [dataclasses.replace(f, evidence=dict(f.evidence),
                                             severity=Severity.INFO if t608.severity == Severity.INFO else f.severity)
                         for f in validation.diagnosis if f.id != "R300"]
            checks += validation.diagnosis_checks
            self._keep_notes(validation.diagnosis_notes)
        return findings, checks

    def flush(self) -> None:
        """Read back now (e.g. before saving a checkpoint). Raises CheckFailed in strict mode."""
        if not self._closed:
            self._read_back(scheduled=False)
            if self.stop_vote.pending and any(is_nonfinite_fault(f) for f in self.stop_vote.pending):
                # under DDP a stop waits for the vote after the next step, but a checkpoint written
                # now would hold the non-finite weights: stop this rank (the others stop when its
                # process group goes away)
                raise CheckFailed(self.stop_vote.pending)

    def summary(self) -> MonitorSummary:
        s = self.state
        ceiling = (10 * math.log10(s.input_energy / s.input_clip_error_energy)
                   if s.input_clip_error_energy > 0 and s.input_energy > 0 else None)
        balance = [{"step": b.step, "terms": b.terms, "grad_norms": b.grad_norms, "shares": b.shares}
                   for b in self._balance]
        return MonitorSummary(mode=self.mode, read_every=self.read_every, output_bound=self.output_bound,
                              sample_rate=self.sample_rate, steps=s.steps_seen, read_backs=self.read_backs,
                              event_log=str(self.event_log) if self.event_log else None, curves=self.curves,
                              validations=self.validations, latest=self.latest, input_snr_ceiling_db=ceiling,
                              balance=balance, loss_series=list(s.loss_total))

    def close(self, html: str | Path | None = None, json: str | Path | None = None) -> Report:
        """Flush, stop, and return the run's Report (written to `html` / `json` when given).
        Never raises CheckFailed: the findings are in the report."""
        if not self._closed:
            try:
                self._read_back(scheduled=False)
                self._judge_late_scaler()
            except CheckFailed:
                pass
            self._judge_end()
            self._closed = True
        report = self.build_report()
        self._event("close", findings=len(self.policy.findings), summary=report.summary())
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.scalars is not None:
            self.scalars.flush()
        if html:
            from codecdoctor.report import html as html_out
            html_out.write(report, Path(html), title="codecdoctor: training monitor")
        if json:
            from codecdoctor.report import json as json_out
            json_out.write(report, Path(json))
        return report

    def _judge_end(self) -> None:
        """T608 once more on the last validation, now that the run has ended (see its rule)."""
        validation = self._last_validation
        if validation is None:
            return
        findings, checks = self._judge_validation(validation, ended=True)
        judged = {f.severity for f in self.policy.findings if f.id == "T608" and self.policy.from_validation(f)
                  and "resolved_at_step" not in f.evidence}
        if any(f.id == "T608" and f.severity not in judged for f in findings):
            # only a change of verdict: the same validation is not seen a second time
            self.policy.add(findings, checks, from_validation=True)

    def build_report(self, command: str = "monitor") -> Report:
        """The run's Report: findings, checks run and the summary's measurements (figures are drawn
        from them when the report is rendered)."""
        summary = self.summary()
        report = Report(command=command, args={"mode": self.mode, "read_every": self.read_every,
                                               "output_bound": self.output_bound, "sample_rate": self.sample_rate})
        from codecdoctor.diagnose import rank_root_causes

        report.add(rank_root_causes(self.findings), self.checks_run, self.check_notes.values())
        report.measurements = summary.measurements()
        if not summary.curves:
            report.notes.append("no training step was read back: the monitor saw no batch")
        return report

    # -- read-back and judging -----------------------------------------------------------------
    def _peek_alarm(self) -> None:
        self.buffer.peek.arm()
        if self.buffer.peek.tripped():
            self._read_back(scheduled=False)

    def _read_back(self, scheduled: bool, now_step: int | None = None) -> None:
        if self.buffer.rows is None:
            return
        if not self.buffer.filled:
            # nothing new on this rank (an alarm read it back early), but a scheduled step must still
            # join the T611 all-reduce, or the other ranks would wait for it forever
            if scheduled and self.ddp_check and now_step is not None:
                ddp = ddp_part.codebook_agreement(self.model, now_step)
                if ddp is not None:
                    m = TrainingMeasurements(state=self.state, output_bound=self.output_bound,
                                             warmup_steps=self.warmup_steps, ddp=ddp)
                    run = run_checks("training", m, only=("T611",))
                    self._keep_notes(run.notes)
                    self._emit(run.findings, run.checks_run)
            return
        base = getattr(self.model, "module", self.model)
        levels_t = codebook_stats(dict(base.named_buffers()), self._codebooks, self.dead_code_share) if self._codebooks else None
        extra = [levels_t] if levels_t is not None and levels_t.numel() else []
        pending_balance, self._balance_pending = self._balance_pending, []
        extra += [norms for _, _, norms in pending_balance]
        pending_codes, self._codes_pending = self._codes_pending[-1:], []  # the newest batch's codes
        extra += [stats for *_, stats in pending_codes]
        # the one device-to-host transfer of this read-back
        window, host_extra = self.buffer.read(extra)
        self.read_backs += 1
        self._disc_change_measured = False
        emitted = _emitted_levels(pending_codes[0], host_extra.pop()) if pending_codes else []
        levels = None
        if levels_t is not None and levels_t.numel():
            level_values = host_extra.pop(0)
            levels = [CodebookLevel(level=i, name=cb.name, codebook_size=int(v[0]), perplexity=float(v[1]),
                                    dead_codes=float(v[2]), initted=bool(v[3] > 0))
                      for i, (cb, v) in enumerate(zip(self._codebooks, level_values))]
        balance = [LossBalance(step=step, terms=names, grad_norms=[float(v) for v in norms])
                   for (step, names, _), norms in zip(pending_balance, host_extra)]
        self._balance.extend(balance)
        # the ceiling in T601 covers all data seen so far, this window included
        self.state.input_energy += float(sum(v for v in window.columns["in_energy"] if math.isfinite(v)))
        self.state.input_clip_error_energy += float(sum(v for v in window.columns["in_clip_error_energy"]
                                                        if math.isfinite(v)))
        trace = self.tracer.trace(window)
        # buffers are checksummed as they are now: during step `now_step`, after its forward
        ddp = (ddp_part.codebook_agreement(self.model, window.steps[-1] if now_step is None else now_step)
               if scheduled and self.ddp_check else None)
        m = TrainingMeasurements(state=self.state, output_bound=self.output_bound, warmup_steps=self.warmup_steps,
                                 window=window, lr=self._learning_rate(), levels=levels, nonfinite=trace, ddp=ddp,
                                 scaler_used=self._scaler_used, balance=balance or None, emitted=emitted or None,
                                 discriminator=self._discriminator,
                                 optimizer_kind=type(self.optimizer).__name__ if self.optimizer is not None else None,
                                 lr_scheduled_peak=_scheduled_peak_lr(self.optimizer))
        run = run_checks("training", m)
        self._keep_notes(run.notes)
        findings, checks = list(run.findings), list(run.checks_run)
        if emitted:
            self.policy.resolve_recovered("T607", "emitted codes", {
                lv.level: f"level {lv.level} emits {lv.distinct} distinct codes at step {lv.step}"
                for lv in emitted if lv.distinct > EMITTED_COLLAPSE_DISTINCT})
        stft_findings, stft_checks = self.spectral.check(window, trace, self.tracer.batch(trace.step) if trace else None,
                                                         self.buffer.device)
        findings += stft_findings
        checks += stft_checks
        self._update_state(window, levels, m.lr)
        self._record_curves(window, levels, m.lr, emitted)
        if self.scalars is not None:
            self.scalars.window(window, levels, balance, m.lr)
        self._emit(findings, checks)

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
        total = _total_series(w)
        s.loss_total.extend((step, v) for step, v in zip(w.steps, total) if v is not None)
        if lr is not None:
            s.lr_history.append((w.steps[-1], lr))
        for name, values in w.losses.items():
            s.first_loss_median.setdefault(name, median_finite(values))
        for lv in levels or []:
            if lv.initted and math.isfinite(lv.perplexity) and w.steps[-1] >= self.codebook_warmup_steps:
                s.perplexity_peak[lv.level] = max(s.perplexity_peak.get(lv.level, 0.0), lv.perplexity)
        scales = [v for v in w.columns["scale"] if math.isfinite(v)]
        if scales:
            s.last_scale = scales[-1]

    def _record_curves(self, w: StepWindow, levels: list[CodebookLevel] | None, lr: float | None,
                       emitted: list[EmittedLevel] | None = None) -> None:
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
            "disc_grad_norm": median_finite(w.columns["disc_grad_norm"]),
            "disc_param_change": median_finite(w.columns["disc_param_change"]),
            "codes": [{"level": lv.level, "module": lv.name, "step": lv.step, "frames": lv.frames,
                       "distinct": lv.distinct, "perplexity": lv.perplexity} for lv in emitted or []],
        }
        self.curves.append(point)
        last = {k: vals[-1] for k, vals in w.losses.items() if vals and vals[-1] is not None}
        self.latest.update({"step": w.steps[-1], "losses": last, "input_peak": point["input_peak"],
                            "output_peak": point["output_peak"], "rms_ratio_db": point["rms_ratio_db"],
                            "grad_norm": point["grad_norm"], "perplexity": point["perplexity"],
                            "scale": point["scale"], "lr": lr, "read_backs": self.read_backs})
        self._event("readback", **point)

    # -- findings ----------------------------------------------------------------------------------------
    def _keep_notes(self, notes: list[str]) -> None:
        """A check that raised on every read-back is named once, with its first error."""
        for note in notes:
            check_id = note.split(" on ", 1)[0]
            self.check_notes.setdefault(check_id, note)

    def _emit(self, findings: list[Finding], checks: list[str], *, from_validation: bool = False) -> None:
        new = self.policy.add(findings, checks, from_validation=from_validation)
        if new:
            newest = new[-1]
            self.latest["newest_finding"] = f"{newest.id} {newest.severity.label}: {newest.message}"
        self.latest["findings"] = len(self.policy.findings)
        stopping = self.policy.stopping(new)
        if not stopping or self._closed:
            return
        if self.stop_vote.active():
            self.stop_vote.defer(stopping)  # every rank stops together, after this step (ddp.py)
            return
        raise CheckFailed(stopping)

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


def _scheduled_peak_lr(optimizer: Any) -> float | None:
    """The highest rate the scheduler heads for: torch's schedulers keep the base rate in each param
    group as `initial_lr` (a warm-up's target), OneCycleLR its peak as `max_lr`."""
    values = []
    for group in getattr(optimizer, "param_groups", None) or []:
        for key in ("initial_lr", "max_lr"):
            try:
                values.append(float(group[key]))
            except (KeyError, TypeError, ValueError):
                continue
    return max(values) if values else None


def _emitted_levels(pending: tuple, values) -> list[EmittedLevel]:
    """The levels of one captured batch (`on_codes`) with their read-back `[distinct, perplexity]`."""
    step, names, sizes, frames, _ = pending
    return [EmittedLevel(level=i, name=name, step=step, codebook_size=size, frames=count, distinct=int(v[0]),
                         perplexity=float(v[1]))
            for i, (name, size, count, v) in enumerate(zip(names, sizes, frames, values))]


def _total_series(w: StepWindow) -> list[float | None]:
    """The generator's total loss per step: a term named as the total ("total", or "loss" as watch
    names the generator's backward), else the sum of the terms other than the discriminator's."""
    for name in TOTAL_NAMES:
        if name in w.losses:
            return w.losses[name]
    terms = {name: vals for name, vals in w.losses.items() if not is_discriminator_term(name)}
    out: list[float | None] = []
    for i in range(len(w.steps)):
        values = [vals[i] for vals in terms.values() if vals[i] is not None]
        out.append(sum(values) if values else None)
    return out
