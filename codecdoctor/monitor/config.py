"""The live monitor's settings as one value: `Monitor(model, sample_rate, config=MonitorConfig(...))`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codecdoctor.monitor.policy import check_stop_policy

# the `--checks` levels of train / watch / the Lightning callback -> (mode, stop_on)
CHECK_LEVELS = {"nonfinite": ("strict", "nonfinite"), "strict": ("strict", "errors"), "warn": ("warn", "errors")}


@dataclass(frozen=True)
class MonitorConfig:
    """How a `Monitor` judges a run: what stops it, how often it reads back, which checks it runs.

    The config holds settings only: plain values that can be written down, shared by every rank of
    a DDP run and reused for the next run. The things that belong to one run stay arguments of
    `Monitor`: the model, its sample rate, the optimizer, the `forward` that re-runs a batch, the
    TensorBoard writer and `start_step` (where a resumed run picks up). A None default is resolved
    from the model or from another field when the monitor is built, as the comment says.
    """

    mode: Literal["strict", "warn"] = "strict"  # "strict" raises CheckFailed on a stopping finding; "warn" only records it
    stop_on: Literal["errors", "nonfinite"] = "errors"  # what strict mode stops on: any error finding, or NaN/Inf only
    output_bound: float | str | None = None  # peak the output may reach (1.0, "tanh", "none"); None: from the model's config
    read_every: int = 25  # steps between read-backs of the on-device statistics (one host transfer each)
    warmup_steps: int | None = None  # steps before the drift checks judge; None: 2 x read_every
    codebook_warmup_steps: int | None = None  # steps before codebook perplexity is judged (T607); None: 4 x warmup_steps
    spectral_terms: tuple[str, ...] | None = None  # loss terms S50x reads; None: terms named *mel* / *stft* / *spec*
    spectral_fft_sizes: tuple[int, ...] | None = None  # FFT sizes of those terms; None: the model config's mel_fft_sizes
    spectral_eps: float | None = None  # the eps inside the spectral loss's log; None: its float16 underflow is not judged
    dead_code_share: float | None = None  # a code used less than this share of uniform is dead; None: 0.01
    ddp_check: bool = True  # T611: compare codebook buffers across DDP ranks at each scheduled read-back
    loss_balance: bool = True  # T612: measure each loss term's gradient share at the output on the read-back schedule
    event_log: str | Path | None = None  # JSON-lines file that gets every finding as it is read back; None: no log

    def __post_init__(self) -> None:
        check_stop_policy(self.mode, self.stop_on)
        if int(self.read_every) < 1:
            raise ValueError("read_every must be at least 1")
        # tuples, so a config stays hashable and a caller's list cannot change it afterwards
        for name in ("spectral_terms", "spectral_fft_sizes"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @classmethod
    def for_checks(cls, checks: str, **settings: Any) -> MonitorConfig:
        """The config for a `--checks` level: "nonfinite" (stop on NaN/Inf only, report drift),
        "strict" (stop on any error) or "warn" (never stop)."""
        if checks not in CHECK_LEVELS:
            raise ValueError(f"checks must be one of {', '.join(CHECK_LEVELS)}, got {checks!r}")
        mode, stop_on = CHECK_LEVELS[checks]
        return cls(mode=mode, stop_on=stop_on, **settings)


SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(MonitorConfig))


def resolve_config(config: MonitorConfig | str | None, settings: dict[str, Any]) -> MonitorConfig:
    """The config of a `Monitor(...)` call, given either as `config=` or as the keyword settings
    the monitor took before the config existed; both at once is ambiguous and a TypeError."""
    if isinstance(config, str):  # before the config, the third positional parameter was `mode`
        if "mode" in settings:
            raise TypeError("Monitor() got multiple values for argument 'mode'")
        config, settings = None, {"mode": config, **settings}
    unknown = sorted(set(settings) - SETTING_NAMES)
    if unknown:
        raise TypeError(f"Monitor() got an unexpected keyword argument {unknown[0]!r}")
    if config is None:
        return MonitorConfig(**settings)
    if not isinstance(config, MonitorConfig):
        raise TypeError(f"Monitor() config must be a MonitorConfig, got {type(config).__name__}")
    if settings:
        names = ", ".join(f"{name}=" for name in sorted(settings))
        raise TypeError(f"Monitor() got both config= and {names}: give the settings in one place, e.g. "
                        f"config=dataclasses.replace(config, {sorted(settings)[0]}=...)")
    return config
