"""The decoder's output bound: one value type and one way to find it, for every command.

A bounded decoder output (a final tanh, hardtanh or clamp) can never pass its bound, so data
beyond it is error no training removes (C205, R307, T602 read it). The bound is known from, in
this order: what the user gave; the model's last module (nn.Tanh / nn.Softsign: 1, nn.Hardtanh and a
clamp module: their limits); the codec config's `output_bound` ("tanh", "none", a number); the
published architecture (EnCodec ends in a conv, DAC in tanh); and, for a pair of recordings only,
the peaks (an output that never exceeds 1.0 is taken as bounded at 1.0, which R307 says).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The words a config or a flag uses for a bound of 1.0, and for none.
UNIT_BOUND_WORDS = ("tanh", "hardtanh", "softsign", "clamp", "clip")
UNBOUNDED_WORDS = ("none", "", "unbounded", "off")
# Published decoders: EnCodec's ends in a conv, DAC's in tanh.
KNOWN_OUTPUT_BOUND = {"encodec": "none", "dac": "tanh"}


@dataclass(frozen=True)
class OutputBound:
    """`value`: the amplitude the decoder's output cannot pass, None when it is unbounded.
    `source`: how that is known, in words ("given", "final Hardtanh", "config output_bound='tanh'")."""
    value: float | None
    source: str

    @property
    def bounded(self) -> bool:
        return self.value is not None


def parse_output_bound(value: Any, source: str = "given") -> OutputBound | None:
    """A bound from a flag or a config value: "tanh" / "clamp" / "hardtanh" -> 1.0, "none" ->
    unbounded, a number -> its magnitude; None (not said) -> None. Raises ValueError for other words."""
    if value is None:
        return None
    if isinstance(value, OutputBound):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in UNIT_BOUND_WORDS:
            return OutputBound(1.0, source)
        if word in UNBOUNDED_WORDS:
            return OutputBound(None, source)
        return OutputBound(abs(float(word)), source)
    return OutputBound(abs(float(value)), source)


def module_bound(module: Any) -> OutputBound:
    """The bound a final module imposes: nn.Hardtanh its limits, nn.Tanh / nn.Softsign 1, a module
    named like a clamp its `max_val` / `max` / `limit` (1 when it carries none)."""
    from torch import nn

    name = type(module).__name__
    source = f"final {name}"
    if isinstance(module, nn.Hardtanh):
        return OutputBound(max(abs(float(module.min_val)), abs(float(module.max_val))), source)
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return OutputBound(1.0, source)
    if "clamp" in name.lower() or "clip" in name.lower():
        limit = next((v for v in (getattr(module, k, None) for k in ("max_val", "max", "limit"))
                      if isinstance(v, (int, float)) and not isinstance(v, bool)), 1.0)
        return OutputBound(abs(float(limit)), source)
    return OutputBound(None, f"final module {name} is not bounded")


def bound_value(value: Any) -> float | None:
    """The amplitude bound a flag or config value names (parse_output_bound), None when unbounded or unsaid."""
    bound = parse_output_bound(value)
    return bound.value if bound is not None else None


def module_name_bound(name: str | None) -> OutputBound | None:
    """The bound from the class name of the module whose output is the reconstruction (seen in a
    traced forward): a tanh-like activation 1, a conv or linear layer none, anything else unknown."""
    if name in ("Tanh", "Hardtanh", "Softsign"):
        return OutputBound(1.0, f"final {name}")
    if name and ("Conv" in name or name == "Linear"):
        return OutputBound(None, f"final {name}")
    return None


def infer_output_bound(*, given: Any = None, module: Any = None, config: Any = None,
                       architecture: str | None = None, peak: float | None = None) -> OutputBound | None:
    """The output bound from the first source that says (see the module doc); None when none does.
    `module`: the model's last leaf module; `config`: a codec config (object or dict) with an
    `output_bound` entry; `peak`: the largest output magnitude of a recording."""
    if given is not None:
        return parse_output_bound(given)
    if module is not None:
        found = module_bound(module)
        if found.bounded or config is None:
            return found
    said = config.get("output_bound") if isinstance(config, dict) else getattr(config, "output_bound", None)
    if said is not None:
        return parse_output_bound(said, f"config output_bound={said!r}")
    if architecture in KNOWN_OUTPUT_BOUND:
        return parse_output_bound(KNOWN_OUTPUT_BOUND[architecture], f"{architecture} as published")
    if peak is not None and peak <= 1.0:
        return OutputBound(1.0, "inferred: the output never exceeds 1.0")
    if module is not None:
        return module_bound(module)
    return None
