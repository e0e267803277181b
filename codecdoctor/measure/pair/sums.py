"""Running sums of blocks: per side, per pair, per frame; scaled by powers of two so nothing overflows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codecdoctor.measure import metrics as M
from codecdoctor.measure.metrics import dot

# An expanded error energy below this fraction of its largest term is float64 rounding: an exact
# match after the fix.
EXACT_FRACTION = 1e-11
# Values whose magnitude is within 2^+-400 can be squared and summed in float64 without overflow or
# underflow; a block outside is summed divided by a power of two (exact), as metrics scales by peaks.
SAFE_EXPONENT = 400


def finite_or_zero(x: np.ndarray) -> np.ndarray:
    """The block with non-finite samples read as 0 (a new array only when there are any)."""
    if x.size and not math.isfinite(float(np.add.reduce(x))) and not np.isfinite(x).all():
        return np.where(np.isfinite(x), x, 0.0)
    return x


def nonfinite_mask(r: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    """Where either block is non-finite (None when both are finite, the usual case)."""
    finite = [x.size == 0 or math.isfinite(float(np.add.reduce(x))) for x in (r, e)]
    if all(finite):
        return None
    n = min(r.size, e.size)
    mask = ~(np.isfinite(r[:n]) & np.isfinite(e[:n]))
    return mask if mask.any() else None


def scale_exponent(*blocks: np.ndarray, peak: float | None = None, limit: int = SAFE_EXPONENT) -> int:
    """0 when every value is within 2^+-limit (can be squared safely); else the power of two to
    divide the blocks by (`peak`: the blocks' largest magnitude, when known)."""
    if peak is None:
        peak = 0.0
        for b in blocks:
            if b.size:
                peak = max(peak, float(np.max(b)), -float(np.min(b)))
    if peak == 0.0:
        return 0
    exponent = math.frexp(peak)[1]
    return 0 if -limit < exponent < limit else exponent


class Sums:
    """Running sums of degree 1 (linear) or 2 (products) in units of 2^(degree * exponent), so blocks
    of huge or tiny values add up without overflow (each block brings its own exponent)."""

    def __init__(self, degrees: dict[str, int]):
        self.degrees = degrees
        self.exponent: int | None = None
        self.values = dict.fromkeys(degrees, 0.0)

    def add(self, exponent: int, **sums: float) -> None:
        if self.exponent is None:
            self.exponent = exponent
        if exponent > self.exponent:
            for key, d in self.degrees.items():
                self.values[key] = math.ldexp(self.values[key], d * (self.exponent - exponent))
            self.exponent = exponent
        for key, value in sums.items():
            self.values[key] += math.ldexp(value, self.degrees[key] * (exponent - self.exponent))

    def __getitem__(self, key: str) -> float:
        return self.values[key]


_REDUCTIONS = {"sum": np.sum, "min": np.min, "max": np.max}


def _piece_reduce(op: str, value: Any, cuts: np.ndarray, size: int) -> np.ndarray:
    """The reduction `op` of each piece [cuts[k], cuts[k + 1]) of `value` (the last piece runs to
    its end), for cuts that start at 0 and are `size` apart after the first: the whole frames
    between head and tail as the rows of one reshaped view. `value` is an array, or for "dot" a
    pair of arrays whose products are summed."""
    a, b = value if op == "dot" else (value, value)
    products = op in ("sumsq", "dot")

    def reduce(lo: int, hi: int, rows: bool = False) -> Any:
        x, y = a[lo:hi], b[lo:hi]
        if rows:
            x, y = x.reshape(-1, size), y.reshape(-1, size)
            return np.einsum("ij,ij->i", x, y) if products else _REDUCTIONS[op](x, axis=1)
        return float(dot(x, y)) if products else float(_REDUCTIONS[op](x))

    first_end = int(cuts[1]) if cuts.size > 1 else a.size
    last = int(cuts[-1])
    out = np.empty(cuts.size)
    out[0] = reduce(0, first_end)
    if cuts.size > 1:
        out[-1] = reduce(last, a.size)
    if cuts.size > 2:
        out[1:-1] = reduce(first_end, last, rows=True)
    return out


class FrameSums:
    """Per-frame reductions of per-sample quantities over consecutive blocks, frames of `size`
    samples covering [0, usable); a frame split across blocks is carried over. `ops` gives each
    quantity's reduction ("sum", "min", "max", "sumsq": the sum of the squares, or "dot": the sum
    of the products of a pair of arrays). `update` returns the reductions of the frames the block
    completes, one array per quantity; a quantity given as None is all zeros (a block without
    non-finite samples needs no flags)."""

    _UFUNCS = {"sum": np.add, "sumsq": np.add, "dot": np.add, "min": np.minimum, "max": np.maximum}
    _EMPTY = {"sum": 0.0, "sumsq": 0.0, "dot": 0.0, "min": math.inf, "max": -math.inf}
    DEGREES = {"sum": 1, "sumsq": 2, "dot": 2, "min": 1, "max": 1}

    def __init__(self, size: int, usable: int, ops: tuple[str, ...]):
        self.size, self.usable, self.ops = int(size), int(usable), ops
        self.carry = [self._EMPTY[op] for op in ops]
        self.exponent = 0

    def update(self, start: int, values: list[Any], exponent: int = 0) -> list[np.ndarray]:
        """`exponent`: the block's values are divided by 2^exponent (the frames it completes come out
        in its units; a carried frame is brought into them)."""
        if exponent != self.exponent:
            self.carry = [math.ldexp(c, self.DEGREES[op] * (self.exponent - exponent)) if math.isfinite(c) else c
                          for op, c in zip(self.ops, self.carry)]
            self.exponent = exponent
        first = next(v for v in values if v is not None)
        stop = min(start + (first[0] if isinstance(first, tuple) else first).size, self.usable)
        if stop <= start:
            return [np.zeros(0) for _ in self.ops]
        n = stop - start
        cuts = np.arange(-(-start // self.size) * self.size, stop, self.size) - start
        cuts = np.concatenate([[0], cuts[cuts > 0]]).astype(np.int64)
        out = []
        for op, v, carry in zip(self.ops, values, self.carry):
            if v is None:
                reduced = np.zeros(cuts.size)
            else:
                v = (v[0][:n], v[1][:n]) if isinstance(v, tuple) else v[:n]
                reduced = _piece_reduce(op, v, cuts, self.size)
            # the first piece continues the carried frame when the block starts inside a frame
            reduced[0] = self._UFUNCS[op](reduced[0], carry)
            out.append(reduced)
        if (start + n) % self.size == 0 or start + n == self.usable:   # the last frame is complete
            self.carry = [self._EMPTY[op] for op in self.ops]
        else:
            self.carry = [float(r[-1]) for r in out]
            out = [r[:-1] for r in out]
        return out


@dataclass
class SideStats:
    nonfinite: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    samples: int = 0
    beyond_bound: int = 0

    def __post_init__(self):
        self.sums = Sums({"sum": 1, "square": 2, "clip_error": 2})

    def update(self, x: np.ndarray, bound: float | None) -> None:
        """Add a block of raw samples (non-finite ones are counted, then read as 0); samples beyond
        `bound` are counted and their excess summed."""
        if x.size == 0:
            return
        total = float(np.add.reduce(x))
        if not math.isfinite(total):
            finite = np.isfinite(x)
            bad = int(x.size - np.count_nonzero(finite))
            if bad:  # else huge finite values overflowed the sum: summed scaled below
                self.nonfinite += bad
                x = np.where(finite, x, 0.0)
                total = float(np.add.reduce(x))
        lo, hi = float(np.min(x)), float(np.max(x))
        self.minimum, self.maximum = min(self.minimum, lo), max(self.maximum, hi)
        self.samples += x.size
        peak = max(hi, -lo)
        k = scale_exponent(peak=peak)
        y = np.ldexp(x, -k) if k else x
        sums = {"sum": float(np.add.reduce(y)) if k else total, "square": float(dot(y, y))}
        if bound is not None and peak > bound:
            beyond = np.abs(x) > bound
            self.beyond_bound += int(np.count_nonzero(beyond))
            excess = (x - np.clip(x, -bound, bound))
            excess = np.ldexp(excess, -k) if k else excess
            sums["clip_error"] = float(dot(excess, excess))
        self.sums.add(k, **sums)

    @property
    def peak(self) -> float:
        return max(self.maximum, -self.minimum) if self.samples else 0.0

    def rms_db(self) -> float:
        square = self.sums["square"]
        if not self.samples or square <= 0.0 or self.peak == 0.0:
            return -math.inf
        return 10.0 * math.log10(square / self.samples) + 20.0 * (self.sums.exponent or 0) * math.log10(2.0)

    def mean(self) -> float:
        if not self.samples or self.peak == 0.0:
            return 0.0
        return math.ldexp(self.sums["sum"] / self.samples, self.sums.exponent or 0)


def pair_sums() -> Sums:
    return Sums({"r": 1, "e": 1, "rr": 2, "ee": 2, "re": 2, "err": 2})


def add_pair_sums(sums: Sums, r: np.ndarray, e: np.ndarray, peak: float | None = None,
                  also: Sums | None = None) -> np.ndarray | None:
    """Add the block's pair sums to `sums` (and to `also`). `peak`: the blocks' largest magnitude
    when known.
    Returns r - e when the block needed no scaling (for the caller's per-frame errors), else None."""
    if r.size == 0:
        return None
    k = scale_exponent(r, e, peak=peak)
    if k:
        r, e = np.ldexp(r, -k), np.ldexp(e, -k)
    d = r - e
    values = dict(r=float(np.add.reduce(r)), e=float(np.add.reduce(e)), rr=float(dot(r, r)), ee=float(dot(e, e)),
                  re=float(dot(r, e)), err=float(dot(d, d)))
    sums.add(k, **values)
    if also is not None:
        also.add(k, **values)
    return None if k else d


class Quadratic:
    """Error energies of corrections `a*r - b*e - c` (c a constant) from the pair sums over n samples."""

    def __init__(self, sums: Sums, n: int):
        v = sums.values
        self.n = n
        self.r, self.e, self.rr, self.ee, self.re, self.raw_error = v["r"], v["e"], v["rr"], v["ee"], v["re"], v["err"]
        self.mean_r = self.r / n if n else 0.0
        self.mean_e = self.e / n if n else 0.0
        self.centred_rr = max(self.rr - n * self.mean_r ** 2, 0.0)
        self.centred_ee = max(self.ee - n * self.mean_e ** 2, 0.0)
        self.centred_re = self.re - n * self.mean_r * self.mean_e

    def error(self, a: float, b: float, c: float = 0.0) -> float:
        """sum (a*r - b*e - c)^2, 0.0 when the expansion is within rounding of its terms."""
        terms = (a * a * self.rr, b * b * self.ee, 2 * a * b * self.re, 2 * a * c * self.r, 2 * b * c * self.e,
                 c * c * self.n)
        value = terms[0] + terms[1] - terms[2] - terms[3] + terms[4] + terms[5]
        largest = max(abs(t) for t in terms)
        return 0.0 if value <= EXACT_FRACTION * largest else value

    def snr(self, signal: float, a: float, b: float, c: float = 0.0) -> float:
        return M.energy_ratio_db(signal, self.error(a, b, c))


def ratio_or_zero(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0.0 else 0.0
