"""The per-step buffer on the device and its read-back to the host.

Each step writes one row of a preallocated `[read_every, columns]` tensor on the batch's device
(`device_stats.py` computes the values); nothing is read by the host until `read()`, which copies
the rows (and any extra device tensors, such as codebook statistics) in one transfer and turns them
into a `StepWindow`. The host-side bookkeeping per row (step number, which loss terms, sample
counts, whether a gradient / scaler value was written) lives here too, so the row layout is known
in one place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from codecdoctor.measure.training import StepWindow
from codecdoctor.monitor.device_stats import SIGNAL_FIELDS, AlarmPeek, ColumnLayout, loss_vector, signal_stats


@dataclass
class _RowInfo:
    step: int
    terms: tuple[str, ...]
    in_samples: int
    out_samples: int
    grad: bool = False
    scale: bool = False


class StepBuffer:
    """Rows of on-device statistics plus the non-finite alarm; `read()` is the one host transfer."""

    def __init__(self, read_every: int):
        self.read_every = int(read_every)
        self.layout = ColumnLayout()
        self.rows: torch.Tensor | None = None
        self.alarm: torch.Tensor | None = None
        self.peek: AlarmPeek | None = None
        self._rows_info: list[_RowInfo] = []
        self._loss_index_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self.grad_elements: int | None = None
        self.loss_dtypes: dict[str, str] = {}
        self.output_dtype: str | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def filled(self) -> int:
        return len(self._rows_info)

    @property
    def full(self) -> bool:
        return self.filled >= self.read_every

    @property
    def device(self) -> torch.device | None:
        return self.rows.device if self.rows is not None else None

    def needs_device(self, device: torch.device) -> bool:
        """True when the buffers live elsewhere (the caller reads back first, then `allocate`s)."""
        return self.rows is None or self.rows.device != device

    def allocate(self, device: torch.device) -> None:
        self.rows = torch.full((self.read_every, self.layout.width), math.nan, dtype=torch.float32, device=device)
        self.alarm = torch.zeros(1, dtype=torch.float32, device=device)
        self.peek = AlarmPeek(self.alarm)
        self._loss_index_cache.clear()
        self._rows_info.clear()

    def _loss_index(self, names: tuple[str, ...], device: torch.device) -> torch.Tensor | None:
        index = self._loss_index_cache.get(names)
        if index is None:
            cols = self.layout.loss_columns(names)
            if cols is None:
                return None
            # built once per distinct set of terms: a host-to-device copy, not a per-step one
            index = torch.tensor(cols, dtype=torch.long, device=device)
            self._loss_index_cache[names] = index
        return index

    # -- writing one step -------------------------------------------------------------------
    def write_batch(self, step: int, x: torch.Tensor, y: torch.Tensor | None, losses: dict | None,
                    bound: float) -> None:
        """Input / output statistics and loss terms of one step into the next row (device ops only)."""
        row = self.rows[self.filled]
        row.fill_(math.nan)
        lay = self.layout.fixed
        x_stats = signal_stats(x, bound)
        row[lay["in_peak"]: lay["in_peak"] + len(SIGNAL_FIELDS)].copy_(x_stats)
        alarm_parts = [x_stats[4:5]]
        out_samples = 0
        if y is not None:
            y_stats = signal_stats(y.to(x.device, non_blocking=True) if y.device != x.device else y, bound)
            row[lay["out_peak"]: lay["out_peak"] + len(SIGNAL_FIELDS)].copy_(y_stats)
            alarm_parts.append(y_stats[4:5])
            out_samples = y[0].numel()
            self.output_dtype = str(y.dtype).replace("torch.", "")
        self.alarm.add_(torch.cat(alarm_parts).sum())
        self._rows_info.append(_RowInfo(step=step, terms=(), in_samples=x[0].numel(), out_samples=out_samples))
        if losses:
            self.write_losses(losses)

    def write_losses(self, losses: dict) -> None:
        """Loss terms of the newest row (also after the forward, e.g. when a hook sees the loss later)."""
        if not self._rows_info or self.rows is None:
            return
        info = self._rows_info[-1]
        device = self.rows.device
        names, values = loss_vector(losses, device)
        if not names:
            return
        index = self._loss_index(tuple(names), device)
        if index is None:
            return
        self.rows[self.filled - 1].index_copy_(0, index, values)
        self.alarm.add_((~torch.isfinite(values)).sum().float())
        info.terms = tuple(dict.fromkeys(info.terms + tuple(names)))
        for name in names:
            value = losses.get(name)
            if name not in self.loss_dtypes and isinstance(value, torch.Tensor):
                self.loss_dtypes[name] = str(value.dtype).replace("torch.", "")

    def write_grad(self, total: torch.Tensor, nonfinite: torch.Tensor, elements: int) -> None:
        col = self.layout.fixed["grad_norm"]
        self.rows[self.filled - 1, col: col + 2].copy_(torch.stack([total.float(), nonfinite]).to(self.rows.device))
        self.grad_elements = elements
        self._rows_info[-1].grad = True

    def write_scale(self, scale: torch.Tensor, growth_tracker: torch.Tensor | None = None) -> None:
        col = self.layout.fixed["scale"]
        # the scale tensor itself (scaler.get_scale() would call .item(), a sync)
        self.rows[self.filled - 1, col: col + 1].copy_(scale.detach().reshape(1).float().to(self.rows.device))
        if growth_tracker is not None:  # 0 after a skipped step (monitor/amp.py)
            col = self.layout.fixed["scaler_growth"]
            self.rows[self.filled - 1, col: col + 1].copy_(growth_tracker.detach().reshape(1).float().to(self.rows.device))
        self._rows_info[-1].scale = True

    def write_value(self, name: str, value: torch.Tensor) -> None:
        """One device scalar into its own column of the newest row (the discriminator's statistics)."""
        if not self._rows_info or self.rows is None:
            return
        col = self.layout.fixed[name]
        self.rows[self.filled - 1, col: col + 1].copy_(value.detach().reshape(1).float().to(self.rows.device))

    def add_alarm(self, count: torch.Tensor) -> None:
        self.alarm.add_(count.to(self.alarm.device))

    # -- reading back -----------------------------------------------------------------------
    def read(self, extra: list[torch.Tensor] = ()) -> tuple[StepWindow, list[np.ndarray]]:
        """Copy the filled rows and the `extra` device tensors to the host in one transfer; clear."""
        n = self.filled
        parts = [self.rows[:n].reshape(-1)] + [t.reshape(-1).float().to(self.rows.device) for t in extra]
        host = torch.cat(parts).cpu().numpy().astype(np.float64)
        width = self.layout.width
        table = host[: n * width].reshape(n, width)
        extras, offset = [], n * width
        for t in extra:
            extras.append(host[offset: offset + t.numel()].reshape(t.shape))
            offset += t.numel()
        infos = list(self._rows_info)
        self._rows_info.clear()
        self.alarm.zero_()
        return self._window(table, infos), extras

    def _window(self, table: np.ndarray, infos: list[_RowInfo]) -> StepWindow:
        lay = self.layout
        columns: dict[str, list[float]] = {name: [float(v) for v in table[:, col]] for name, col in lay.fixed.items()}
        for i, info in enumerate(infos):
            if not info.grad:
                columns["grad_norm"][i] = math.nan
                columns["grad_nonfinite"][i] = 0.0
            if not info.scale:
                columns["scale"][i] = columns["scaler_growth"][i] = math.nan
            if info.out_samples == 0:
                for f in SIGNAL_FIELDS:
                    columns[f"out_{f}"][i] = math.nan if f not in ("nonfinite", "over") else 0.0
        losses: dict[str, list[float | None]] = {}
        for name in lay.loss_terms:
            col = lay.loss_start + lay.loss_terms.index(name)
            values = [float(table[i, col]) if name in info.terms else None for i, info in enumerate(infos)]
            if any(v is not None for v in values):
                losses[name] = values
        return StepWindow(steps=[info.step for info in infos], columns=columns, losses=losses,
                          in_samples=[info.in_samples for info in infos],
                          out_samples=[info.out_samples for info in infos], grad_elements=self.grad_elements,
                          loss_dtypes=dict(self.loss_dtypes), output_dtype=self.output_dtype)
