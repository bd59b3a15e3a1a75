"""Exact interval arithmetic over the parties' fixed-point computation, in unbounded integers.

The interval backend runs the same layer code as the parties (`privacy.encrypted.model.layers`) on Python
integers (no wrap-around). It tracks three integer arrays per value:

* ``point``: the result with every truncation rounded down (the fixed-point model, deterministic);
* ``lo`` and ``hi``: bounds that enclose the result for every input in the input interval; bounds go
  through linear layers with the signs of the weights and through ReLU, gating and max by monotonicity.

The protocol's truncation is exact (`privacy.encrypted.protocol.truncation`), so run on one exact input
(`simulate`), a correct protocol output equals ``point`` bit for bit (and ``lo == point == hi``). Run on a
box of inputs (`privacy.encrypted.model.ranges.analyse`), it records for every truncation and every
comparison the number of bits its operand needs: |z| < 2^bits before a truncation, x in [-2^bits, 2^bits)
at a comparison. Those are the bounds the protocol relies on. A ReLU of a fresh truncation's result y
compares y' in [y - 1, y] instead (`privacy.encrypted.protocol.backend.fused`): `Interval.carry` marks
such values, as long as only index operations and public additions touched them.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from privacy.encrypted.model.layers import evaluate
from privacy.encrypted.model.plan import Architecture
from privacy.encrypted.model.ring import DTYPE, FixedPoint, as_signed


def as_integers(v) -> np.ndarray:
    """Ring elements (uint64) or integers as an object array of Python ints (two's complement read)."""
    v = np.asarray(v)
    if v.dtype == object:
        return v
    return as_signed(v).astype(object) if v.dtype == DTYPE else v.astype(np.int64).astype(object)


def bits_needed(lo: np.ndarray, hi: np.ndarray) -> int:
    """Smallest b >= 1 with -2^b <= lo and hi < 2^b for all elements."""
    if not np.size(lo):
        return 1
    need = max(-int(np.min(lo)), int(np.max(hi)) + 1, 2)
    return (need - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class Interval:
    """A fixed-point value as Python-int arrays: floor-rounded `point` and enclosing `lo`, `hi`."""

    point: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    wide: bool = False
    carry: bool = False

    @classmethod
    def exact(cls, v, wide: bool = False) -> "Interval":
        v = as_integers(v)
        return cls(v, v, v, wide)

    @property
    def shape(self) -> tuple:
        return self.point.shape

    def map(self, fn) -> "Interval":
        return Interval(fn(self.point), fn(self.lo), fn(self.hi), self.wide, self.carry)

    def contains(self, v) -> np.ndarray:
        """Elementwise lo <= v <= hi, with v ring elements or integers."""
        v = as_integers(v)
        return (self.lo <= v) & (v <= self.hi)


@dataclasses.dataclass(frozen=True)
class RangeOp:
    """A truncation ('trunc': |z| < 2^bits) or comparison ('cmp': x in [-2^bits, 2^bits)) of a layer."""

    layer: str
    kind: str
    bits: int
    elements: int


def _split_signs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(w > 0, w, 0), np.where(w < 0, w, 0)


class IntervalBackend:
    """The backend interface of `privacy.encrypted.model.layers` on `Interval` values; records `ops`."""

    def __init__(self, fixed: FixedPoint):
        self.fixed = fixed
        self.ops: list[RangeOp] = []
        self._layer = "input"

    @contextlib.contextmanager
    def layer(self, name):
        previous, self._layer = self._layer, name
        try:
            yield
        finally:
            self._layer = previous

    def _record(self, kind: str, lo, hi) -> None:
        elements = int(np.prod(lo.shape[1:], dtype=np.int64)) if lo.ndim else 1
        self.ops.append(RangeOp(self._layer, kind, bits_needed(lo, hi), elements))

    @staticmethod
    def shape(x: Interval) -> tuple:
        return x.shape

    @staticmethod
    def map(x: Interval, fn) -> Interval:
        return x.map(fn)

    def narrow(self, x: Interval) -> Interval:
        if not x.wide:
            return x
        f = self.fixed.frac_bits
        self._record("trunc", x.lo, x.hi)
        return Interval(x.point >> f, x.lo >> f, x.hi >> f, carry=True)

    def linear(self, x: Interval, encoded) -> Interval:
        kernel, bias = as_integers(encoded.kernel), as_integers(encoded.bias)
        pos, neg = _split_signs(kernel)
        return Interval(
            x.point @ kernel + bias, x.lo @ pos + x.hi @ neg + bias, x.hi @ pos + x.lo @ neg + bias, wide=True
        )

    def _scaled(self, x: Interval, c) -> np.ndarray:
        c = as_integers(c)
        return c * (1 << self.fixed.frac_bits) if x.wide else c

    def add_public(self, x: Interval, c) -> Interval:
        c = self._scaled(x, c)
        return Interval(x.point + c, x.lo + c, x.hi + c, x.wide, x.carry)

    def dot_public(self, x: Interval, c) -> Interval:
        x = self.narrow(x)
        c = as_integers(c)
        pos, neg = _split_signs(c)
        total = lambda v: v.sum(axis=-1)  # noqa: E731
        return self.narrow(
            Interval(total(x.point * c), total(x.lo * pos + x.hi * neg), total(x.hi * pos + x.lo * neg), wide=True)
        )

    @staticmethod
    def add(x: Interval, y: Interval) -> Interval:
        return Interval(x.point + y.point, x.lo + y.lo, x.hi + y.hi, x.wide)

    @staticmethod
    def sub(x: Interval, y: Interval) -> Interval:
        return Interval(x.point - y.point, x.lo - y.hi, x.hi - y.lo, x.wide)

    @staticmethod
    def concat(xs: list) -> Interval:
        join = lambda part: np.concatenate([getattr(x, part) for x in xs], axis=-1)  # noqa: E731
        return Interval(join("point"), join("lo"), join("hi"), xs[0].wide)

    @staticmethod
    def constant(c) -> Interval:
        return Interval.exact(np.asarray(c, dtype=np.int64))

    def gate(self, x: Interval, values: list, strict: bool = False) -> list:
        shift = 1 if strict else 0
        fused = x.carry and not strict and all(v is x for v in values)  # as `backend.fused`: y' in [y - 1, y]
        self._record("cmp", x.lo - (1 if fused else shift), x.hi - shift)
        on, off = x.point - shift >= 0, x.hi - shift < 0
        always = x.lo - shift >= 0
        out = []
        for v in values:
            if v is x and not strict:  # ReLU: monotone in x
                lo, hi = np.maximum(x.lo, 0), np.maximum(x.hi, 0)
            else:
                lo = np.where(always, v.lo, np.where(off, 0, np.minimum(v.lo, 0)))
                hi = np.where(always, v.hi, np.where(off, 0, np.maximum(v.hi, 0)))
            out.append(Interval(np.where(on, v.point, 0), lo, hi, v.wide))
        return out

    def bit(self, x: Interval, strict: bool = False) -> Interval:
        shift = 1 if strict else 0
        self._record("cmp", x.lo - shift, x.hi - shift)
        return Interval(
            (x.point - shift >= 0).astype(np.int64).astype(object),
            (x.lo - shift >= 0).astype(np.int64).astype(object),
            (x.hi - shift >= 0).astype(np.int64).astype(object),
        )


@dataclasses.dataclass(frozen=True)
class Simulation:
    """Result of `simulate`: the logits as an `Interval` (wide if the last layer is linear)."""

    logits: Interval

    def labels(self) -> np.ndarray:
        """Labels of the floor-rounded logits (argmax, or [logit > 0] for one logit)."""
        point = self.logits.point.astype(np.float64)
        return (point[..., 0] > 0).astype(np.int64) if point.shape[-1] == 1 else point.argmax(axis=-1)

    def possible_labels(self) -> np.ndarray:
        """Boolean (batch, classes) mask of the labels some protocol run could return."""
        lo, hi = self.logits.lo, self.logits.hi
        if lo.shape[-1] == 1:
            return np.stack([lo[..., 0] <= 0, hi[..., 0] > 0], axis=-1).astype(bool)
        return (hi >= lo.max(axis=-1, keepdims=True)).astype(bool)


def simulate(architecture: Architecture, encoded: dict, x: np.ndarray, fixed: FixedPoint) -> Simulation:
    """Runs the fixed-point computation in the clear on an encoded input (uint64, leading batch axis)."""
    return Simulation(evaluate(architecture, encoded, Interval.exact(x), IntervalBackend(fixed), fixed))


def box(lo: np.ndarray, hi: np.ndarray) -> Interval:
    """The interval of all encoded inputs between `lo` and `hi` (ring elements, one example)."""
    lo, hi = as_integers(lo)[None], as_integers(hi)[None]
    return Interval(lo, lo, hi)
