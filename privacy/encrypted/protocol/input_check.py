"""The servers' check of a client's input: consistent shares within the checked bounds, or no output.

The model's arithmetic is proven correct only for inputs within the bounds the servers check (the declared
ones, or by default those widened to a one-comparison window, `RangePlan.server_bounds`), and a
client that bypasses the library can send anything: values out of range (a comparison outside its proven
range returns a bit of the operand, which exposes weights; a value just outside the bounds can reach
neurons that are dead inside them), or replicated shares whose copies disagree (each party then computes
on another input, some combination of the weight shares). So the parties check, and a party that sees
the check fail releases nothing; one withheld share leaves the client with two uniformly random ones.
The check's messages ride on the model's first four rounds (`Party.add_rider`): no round of its own for
any model with four rounds or more.

1. Consistency (round 1): component c_j is held by parties j and j-1; party i sends party i+1 a SHA-256
   digest of its copy of c_{i+1}, which party i+1 compares with its own; a mismatch (a hash collision
   aside) means the client sent inconsistent shares, and party i+1 withholds its output.
2. Bounds, for every value x with bounds [lo, hi]: d = x - lo must lie in [0, m], m = hi - lo < 2^k.
   Helper 0 knows B = c_0 + c_1 - lo and its pair (1, 2) knows A = c_2, with d = A + B mod 2^64. Two
   comparisons (`comparison`, rounds 1-2) give the carry c = [A mod 2^k + B mod 2^k >= 2^k] (k bits)
   and g = [m - d >= 0] (k + 1 bits; exact whenever d < 2^k). Round 3 makes both bits arithmetic
   (gating the constant 1), and in round 4 parties 1 and 2 send party 0 their terms of
   W = d - (A mod 2^k) - (B mod 2^k) + 2^k c + 1 - g, masked by a value only they share.
   W = 2^k floor(d / 2^k) + (1 - g) mod 2^64, so W = 0 exactly when d < 2^k and d <= m, that is when
   lo <= x <= hi. Party 0 learns W, which is 0 for every input the library sends; for a client that
   bypasses the library it shows the high bits of its out-of-range values.
3. Bounds whose encoded span is a power of two less one (hi - lo = 2^k - 1 for every value, e.g. [0, 2)
   in steps of 2^-f, declared as [0, 2 - 2^-f]): d <= m is the same as d < 2^k, so the bound comparison
   is left out (g = 1) and W = 2^k floor(d / 2^k). Exact, with half the residues. So one comparison checks
   any window [lo, lo + 2^k) of the grid, wherever it starts: by default the parties check the declared
   bounds widened outward to such a window (`InputBounds.widened`, input_check "widened": [0, 1] at 2^-16 as
   [-0.5 + 2^-16, 1.5], k = 17) where the interval analysis proves it safe. Bounds shared half-open
   (`InputBounds.half_open`, `share-model --half-open`) are such spans: [0, 1] at 2^-16 (2^16 + 1 values)
   is checked as [0, 1 - 2^-16], k = 16, and a client gives 1.0 as 1 - 2^-16.

Cost per input value (`residues_per_value`): 2k + 1 residues mod 127 (k for a power-of-two span) from
each of three messages, and four ring words (k = 17 for inputs in [0, 1] with 16 fractional bits checked
exactly: 2^16 + 1 encoded values, so two comparisons; k = 17 and one comparison for [0, 2 - 2^-16] or [0,
1] widened; k = 16 and one comparison for [0, 1] half-open: 16 residues instead of 35). The check runs on
the inputs at their declared precision (`InputBounds.frac_bits`), before the parties scale them to the
model's format: inputs of 8 fractional bits in [0, 1] have k = 9 (19 residues; half-open k = 8, 8
residues).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

from privacy.encrypted.model.ring import DTYPE
from privacy.encrypted.protocol.comparison import Comparison, GateParts, Split, flat, gate_in
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.shares import AShare

ROUNDS = 4
"""Rounds the check needs (it rides on the model's)."""
OPENER = 0
"""The party that learns W: the helper of both comparisons (its pair is parties 1 and 2)."""


def _digest(component: np.ndarray) -> bytes:
    digest = hashlib.sha256(b"ppml input component\0")
    digest.update(np.ascontiguousarray(component).data)  # the same bytes as tobytes(), without copying them
    return digest.digest()


def _spans(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.asarray(hi, dtype=DTYPE) - np.asarray(lo, dtype=DTYPE)


def _window(spans: np.ndarray) -> tuple[int, bool]:
    """`bound_bits` and `power_of_two_span`, from one pass over the spans."""
    signed = spans.view(np.int64)
    k = max(int(signed.max()).bit_length(), 1)
    return k, bool(np.all(signed == (1 << k) - 1))


def bound_bits(lo: np.ndarray, hi: np.ndarray) -> int:
    """k with hi - lo < 2^k for every feature (encoded bounds)."""
    return _window(_spans(lo, hi))[0]


def power_of_two_span(lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether hi - lo = 2^k - 1 for every feature (encoded bounds), with k = `bound_bits`: one comparison."""
    return _window(_spans(lo, hi))[1]


def residues_per_value(lo: np.ndarray, hi: np.ndarray) -> int:
    """Residues mod 127 per input value in each of the check's three comparison messages."""
    k, one_comparison = _window(_spans(lo, hi))
    return k if one_comparison else 2 * k + 1


@dataclasses.dataclass(frozen=True, eq=False)
class CheckedBounds:
    """The encoded bounds the parties check, [lo, lo + span] per feature (ring elements, input shape; copies, made
    read-only against accidental writes), and the check's parameters derived from them: what depends on the model
    alone, derived once per model (`PartyModel.checked_bounds`), not per query.

    Attributes:
        k: `bound_bits`: span < 2^k for every feature.
        one_comparison: `power_of_two_span`: span = 2^k - 1 for every feature (the bound comparison is left out).
    """

    lo: np.ndarray
    span: np.ndarray
    k: int = dataclasses.field(init=False)
    one_comparison: bool = dataclasses.field(init=False)

    def __post_init__(self):
        for name in ("lo", "span"):
            bound = np.array(getattr(self, name), dtype=DTYPE)
            bound.setflags(write=False)
            object.__setattr__(self, name, bound)
        k, one_comparison = _window(self.span)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "one_comparison", one_comparison)

    @classmethod
    def of(cls, lo: np.ndarray, hi: np.ndarray) -> "CheckedBounds":
        """From the encoded bounds."""
        return cls(lo, _spans(lo, hi))


class InputCheck:
    """The check of one input; its messages ride on the next `ROUNDS` rounds of the party.

    Args:
        x: this party's share of the encoded input, (batch,) + input shape.
        bounds: the checked bounds (`PartyModel.checked_bounds`).

    Raises:
        ValueError: where ``x``'s example shape is not the bounds' (the kernel repeats the bounds over the flat
            batch, so it would not notice; the network server and the client check the shares' shape before).
    """

    def __init__(self, p: Party, x: AShare, bounds: CheckedBounds):
        if x.shape[1:] != bounds.lo.shape:
            raise ValueError(
                f"the input share's example shape {x.shape[1:]} is not the checked bounds' {bounds.lo.shape}"
            )
        self.p, self.x = p, x
        self.k, self.one_comparison, self.lo, self.span = bounds.k, bounds.one_comparison, bounds.lo, bounds.span
        self._verdict = None
        p.add_rider(self._steps())

    def _splits(self, rnd) -> tuple[list[Split], np.ndarray | None]:
        """The comparisons' splits (carry, then bound unless `one_comparison`) and, at the opener, its term
        B - (B mod 2^k) of d - (A mod 2^k) - (B mod 2^k) (the pair's, A - (A mod 2^k) at party 1 and 0 at party 2,
        goes into `kernels.check_word`)."""
        from privacy.encrypted.protocol import kernels  # imported where used: see kernels' docstring

        p, x, k = self.p, self.x, self.k
        if p.index == OPENER:  # B = c_0 + c_1 - lo
            carry, high = np.empty(x.shape, dtype=DTYPE), np.empty(x.shape, dtype=DTYPE)
            bound = np.empty(x.shape if not self.one_comparison else (0,), dtype=DTYPE)
            kernels.opener_split(
                flat(x.a, x.shape),
                flat(x.b, x.shape),
                self.lo.reshape(-1),
                self.span.reshape(-1),
                k,
                carry.reshape(-1),
                high.reshape(-1),
                bound.reshape(-1),
            )
            splits = [Split(rnd, OPENER, x.shape, helper_part=carry)]  # (B mod 2^k) - 2^k
            if not self.one_comparison:
                splits.append(Split(rnd, OPENER, x.shape, helper_part=bound))  # span - B
            return splits, high  # B - (B mod 2^k)
        common = x.b if p.index == OPENER + 1 else x.a  # A = c_2
        low = DTYPE((1 << k) - 1)
        splits = [Split(rnd, OPENER, x.shape, pair_part=lambda: common & low)]
        if not self.one_comparison:
            splits.append(Split(rnd, OPENER, x.shape, pair_part=lambda: -common))
        return splits, None

    def _steps(self):
        p, x, k = self.p, self.x, self.k
        rnd = yield
        rnd.send(p.next, np.frombuffer(_digest(x.b), np.uint8))
        theirs = rnd.receive(p.prev, (32,), np.uint8)
        splits, high = self._splits(rnd)
        comparisons = [Comparison(p, split, k + i) for i, split in enumerate(splits)]  # k bits, then k + 1
        rnd = yield
        inconsistent = theirs.value.tobytes() != _digest(x.a)
        for comparison in comparisons:
            comparison.send(rnd)
        rnd = yield
        one = GateParts(None if p.index == OPENER else np.ones(x.shape, dtype=DTYPE), None, helper_zero=True)
        gated = [gate_in(p, comparison.bit(), [one], rnd) for comparison in comparisons]
        rnd = yield
        from privacy.encrypted.protocol import kernels

        if p.index == OPENER:
            received = [rnd.receive(j, x.shape) for j in (1, 2)]

            @functools.cache
            def verdict():  # W = high + the pair's words (in place), or None where it is 0 everywhere
                nonzero = kernels.check_sum(high.reshape(-1), *(flat(slot.value, x.shape) for slot in received))
                return inconsistent, high if nonzero else None

            self._verdict = verdict
            return
        (carry_term,), *bound = (finish() for finish in gated)  # the bound's term is g: 1 - g goes into W
        common = x.b if p.index == OPENER + 1 else x.a
        bound_term = flat(bound[0][0].term, x.shape) if bound else np.empty(0, dtype=DTYPE)
        mask = p.prf_with(3 - p.index).words(x.shape)  # parties 1 and 2: a mask party 0 does not know
        word = flat(carry_term.term, x.shape)  # becomes high + 2^k carry_term + mask (party 1) or - mask (party 2)
        kernels.check_word(word, k, flat(common, x.shape), bound_term, flat(mask, x.shape), p.index == OPENER + 1)
        rnd.send(OPENER, word.reshape(x.shape))
        self._verdict = lambda: (inconsistent, None)

    def refused(self) -> str | None:
        """Why this party must release nothing (None if it saw no problem); after the check's rounds ran."""
        if self._verdict is None or self.p.riders:
            raise RuntimeError("the input check has not finished its rounds")
        inconsistent, w = self._verdict()
        if inconsistent:
            return "the parties' copies of the input shares differ (the client sent inconsistent shares)"
        if w is not None:
            bad = w.reshape(len(w), -1) != 0
            return (
                f"{int(bad.any(axis=1).sum())} example(s) hold values outside the bounds the model was shared "
                f"with ({int(bad.sum())} values); nothing was released"
            )
        return None
