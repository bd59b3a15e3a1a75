"""Exact cleartext simulation of the fixed-point computation the parties perform.

The simulation runs the same layer code as the parties (`privacy.encrypted.layers`) on integers in the
same ring. It tracks three integer arrays per value:

* ``point``: the result with every truncation rounded down (the fixed-point model, deterministic);
* ``lo`` and ``hi``: bounds that enclose every result the protocol can return. The only freedom the
  protocol has is its probabilistic truncation, which returns floor(z / 2^f) or floor(z / 2^f) + 1;
  bounds are pushed through linear layers with the signs of the (public to the simulation) weights
  and through ReLU, max and the sigmoid's ReLUs by monotonicity.

So a correct protocol output satisfies ``lo <= output <= hi`` bit for bit, and ``lo == hi`` wherever no
truncation happened. The simulation also accumulates, per layer, the union bound ``sum |z| / 2^64`` on
the probability that some truncation fails (the event the runtime overflow monitor detects).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses

import numpy as np

from privacy.encrypted.layers import evaluate
from privacy.encrypted.plan import Architecture
from privacy.encrypted.ring import DTYPE, FixedPoint, arithmetic_shift, as_signed


@dataclasses.dataclass(frozen=True)
class Interval:
    """A fixed-point value in the ring (uint64) with its floor-rounded `point` and enclosing bounds."""

    point: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def exact(cls, v: np.ndarray) -> "Interval":
        v = np.asarray(v, dtype=DTYPE)
        return cls(v, v, v)

    @property
    def shape(self) -> tuple:
        return self.point.shape

    def map(self, fn) -> "Interval":
        return Interval(fn(self.point), fn(self.lo), fn(self.hi))

    def contains(self, v: np.ndarray) -> np.ndarray:
        """Elementwise lo <= v <= hi (signed comparison)."""
        v = as_signed(np.asarray(v, dtype=DTYPE))
        return (as_signed(self.lo) <= v) & (v <= as_signed(self.hi))


def _split_signs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = as_signed(w)
    return np.maximum(s, 0).view(DTYPE), np.minimum(s, 0).view(DTYPE)


class IntervalBackend:
    """The backend interface of `privacy.encrypted.layers` on `Interval` values."""

    def __init__(self, fixed: FixedPoint):
        self.fixed = fixed
        self.failure_bound: dict[str, float] = collections.OrderedDict()
        self._layer = "input"

    @contextlib.contextmanager
    def layer(self, name):
        previous, self._layer = self._layer, name
        try:
            yield
        finally:
            self._layer = previous

    @staticmethod
    def shape(x: Interval) -> tuple:
        return x.shape

    @staticmethod
    def map(x: Interval, fn) -> Interval:
        return x.map(fn)

    def _truncate(self, point, lo, hi) -> Interval:
        largest = np.maximum(np.abs(as_signed(lo).astype(np.float64)), np.abs(as_signed(hi).astype(np.float64)))
        self.failure_bound[self._layer] = self.failure_bound.get(self._layer, 0.0) + float(largest.sum()) / 2.0 ** 64
        f = self.fixed.frac_bits
        return Interval(arithmetic_shift(point, f), arithmetic_shift(lo, f), arithmetic_shift(hi, f) + DTYPE(1))

    def linear(self, x: Interval, encoded) -> Interval:
        pos, neg = _split_signs(encoded.kernel)
        return self._truncate(x.point @ encoded.kernel + encoded.bias,
                              x.lo @ pos + x.hi @ neg + encoded.bias, x.hi @ pos + x.lo @ neg + encoded.bias)

    def add_public(self, x: Interval, c) -> Interval:
        c = np.asarray(c, dtype=DTYPE)
        return Interval(x.point + c, x.lo + c, x.hi + c)

    def dot_public(self, x: Interval, c) -> Interval:
        pos, neg = _split_signs(np.asarray(c, dtype=DTYPE))
        total = lambda v: v.sum(axis=-1, dtype=DTYPE)  # noqa: E731
        return self._truncate(total(x.point * np.asarray(c, dtype=DTYPE)),
                              total(x.lo * pos + x.hi * neg), total(x.hi * pos + x.lo * neg))

    @staticmethod
    def relu(x: Interval) -> Interval:
        return x.map(lambda v: np.maximum(as_signed(v), 0).view(DTYPE))

    @staticmethod
    def maximum(x: Interval) -> Interval:
        return x.map(lambda v: as_signed(v).max(axis=-1).view(DTYPE))


@dataclasses.dataclass(frozen=True)
class Simulation:
    """Result of `simulate`: the logits as an `Interval` and the truncation-failure union bound."""

    logits: Interval
    failure_bound: dict

    def labels(self) -> np.ndarray:
        """Labels of the floor-rounded logits (argmax, or [logit > 0] for one logit)."""
        point = as_signed(self.logits.point)
        return (point[..., 0] > 0).astype(np.int64) if point.shape[-1] == 1 else point.argmax(axis=-1)

    def possible_labels(self) -> np.ndarray:
        """Boolean (batch, classes) mask of the labels some protocol run could return."""
        lo, hi = as_signed(self.logits.lo), as_signed(self.logits.hi)
        if lo.shape[-1] == 1:
            return np.stack([lo[..., 0] <= 0, hi[..., 0] > 0], axis=-1)
        return hi >= lo.max(axis=-1, keepdims=True)


def simulate(architecture: Architecture, encoded: dict, x: np.ndarray, fixed: FixedPoint) -> Simulation:
    """Runs the fixed-point computation in the clear on an encoded input (uint64, leading batch axis)."""
    backend = IntervalBackend(fixed)
    logits = evaluate(architecture, encoded, Interval.exact(x), backend, fixed)
    return Simulation(logits, dict(backend.failure_bound))
