"""The monitor's read-back statistics as TensorBoard scalars (`Monitor(..., writer=SummaryWriter)`).

Values are written only where the monitor already has them on the host (each read-back and each
validation), at their own training step: the per-step statistics of a window are logged for every
step in it when the window is read back, so logging adds no device sync. Any object with
`add_scalar(tag, value, global_step)` works (torch.utils.tensorboard's SummaryWriter, tensorboardX).
"""
from __future__ import annotations

import math
from typing import Any

from codecdoctor.measure.training import CodebookLevel, LossBalance, StepWindow, ValidationMeasurements

PREFIX = "codecdoctor"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class ScalarLog:
    def __init__(self, writer: Any):
        if not hasattr(writer, "add_scalar"):
            raise TypeError("writer must have add_scalar(tag, value, global_step) (e.g. a SummaryWriter)")
        self.writer = writer

    def _add(self, tag: str, value: Any, step: int) -> None:
        if _finite(value):
            self.writer.add_scalar(f"{PREFIX}/{tag}", float(value), int(step))

    def window(self, w: StepWindow, levels: list[CodebookLevel] | None, balance: list[LossBalance],
               lr: float | None) -> None:
        ratios = w.rms_ratio_db()
        for i, step in enumerate(w.steps):
            self._add("input_peak", w.columns["in_peak"][i], step)
            self._add("output_peak", w.columns["out_peak"][i], step)
            self._add("rms_ratio_db", ratios[i], step)
            self._add("grad_norm", w.columns["grad_norm"][i], step)
            self._add("scaler_scale", w.columns["scale"][i], step)
            for name, values in w.losses.items():
                self._add(f"loss/{name}", values[i], step)
        last = w.steps[-1]
        for lv in levels or []:
            self._add(f"perplexity/level_{lv.level}", lv.perplexity, last)
            self._add(f"dead_codes/level_{lv.level}", lv.dead_codes, last)
        for b in balance:
            for name, share in zip(b.terms, b.shares):
                self._add(f"loss_share/{name}", share, b.step)
        self._add("lr", lr, last)

    def validation(self, v: ValidationMeasurements) -> None:
        self._add("val/snr_db", v.snr_db, v.step)
        self._add("val/rms_ratio_db", v.rms_ratio_db, v.step)
        for key, value in v.what_if.items():
            self._add(f"val/what_if_{key}_db", value, v.step)

    def flush(self) -> None:
        flush = getattr(self.writer, "flush", None)
        if callable(flush):
            flush()
