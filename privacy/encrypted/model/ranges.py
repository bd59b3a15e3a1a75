"""Input bounds, and the interval analysis proving that no shared value leaves the ring's headroom.

A wrap-around in Z_2^64 cannot be detected after it happened, so it is prevented. The model owner
declares bounds on every input feature, or gives calibration data whose per-feature minimum and
maximum become the bounds (`InputBounds`). `analyse` runs the model's fixed-point computation on the
box of all inputs within the bounds, with exact integer intervals (`privacy.encrypted.model.intervals`),
and records for every truncation the bits b with |z| < 2^b and for every comparison the bits R with
x in [-2^R, 2^R) (`RangePlan`). Sharing is refused (`ModelRangeError`) if

* some value needs more than `HEADROOM_BITS` = 61 bits: a truncation adds an offset 2^b and needs
  z + 2^b in [0, 2^(b+1)) with 2^(b+1) <= 2^62, a comparison needs x + 2^R in [0, 2^(R+1)); or
* the probability that a query must be re-run, the sum over all truncated elements of one example of
  2^(b+1-64) (`privacy.encrypted.protocol.arithmetic.truncate`), exceeds `MAX_RERUN_PROBABILITY`.

The logits are bounded too (`RangePlan.output_bits`). The label head compares only their differences,
which are checked like every comparison, so labels stay exact even where the logits themselves would
not fit; released logits must fit a signed 64-bit integer, so a release policy that allows logits is
refused (`RangePlan.check_logits_release`, `LogitsOutOfRange`) when they need more than `LOGITS_BITS`.

The parties use the recorded bits as the public parameters of each truncation and comparison; the
client refuses inputs outside the bounds before it shares them (`InputBounds.check`).

What the servers check (`InputBounds.input_check`, one of `INPUT_CHECKS`): their check of an input
(`protocol.input_check`) accepts d = x - lo in [0, 2^k) with one comparison of k bits, and [0, m] for any other
span m with two. So by default ("widened") the analysis also runs over the declared bounds widened outward to the
narrowest such window, the same 2^k grid values for every feature (k the bits of the widest declared span: the
check has one width), centred on each feature's declared bounds (`InputBounds.widened`), provided that multiplies
no feature's declared grid values (hi - lo + 1) by more than two (uniform spans always pass; a feature with fewer
than half the window's values, as with spans of different bit lengths or a constant feature beside one wider than a
grid step, does not); if the analysis proves that window safe too (no headroom exceeded, re-run probability within
the limit, logits no wider than the declared bounds allow), the parties check the window
(`RangePlan.checked_bounds`) and run on its plan; otherwise they check the declared bounds exactly
(`RangePlan.fallback` says why). The client still refuses inputs outside the declared bounds; a client that
bypasses it gets, for inputs within the window, the model's exact output on them. "exact" checks the declared
bounds as they are; "half-open" checks [lo, hi) (`InputBounds.half_open`).

The plan is public: it is in every party's bundle and in what the parties tell clients. Besides the
input bounds it reveals, per layer, the bit length of the largest value the layer can produce over the
box: about log2 of the largest weighted sum, a few bits about the weights' magnitudes per layer. Where the
window falls back, `RangePlan.fallback` says which limit it exceeds (and the layer or feature), not the window's
bits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy import validation
from privacy.encrypted.model.intervals import IntervalBackend, RangeOp, bits_needed, box
from privacy.encrypted.model.layers import evaluate, label
from privacy.encrypted.model.ring import FixedPoint, as_ring, as_signed

HEADROOM_BITS = 61
"""Largest bit length of any value at a truncation or comparison (see the module docstring)."""
LOGITS_BITS = 63
"""Largest bit length of released logits: [-2^63, 2^63) is what a 64-bit ring element reads back as."""
MAX_RERUN_PROBABILITY = 2.0**-10
"""Largest accepted probability, per example, that a query is re-run because of a truncation draw."""
WIDENED, EXACT, HALF_OPEN = "widened", "exact", "half-open"
INPUT_CHECKS = (WIDENED, EXACT, HALF_OPEN)
"""What the servers check (`InputBounds.input_check`; module docstring), the default first."""


class ModelRangeError(ValueError):
    """The model's values, for the declared input bounds, could leave the ring's headroom."""


class LogitsOutOfRange(ModelRangeError):
    """The model's logits could wrap the ring, so they may not be released (labels still can be)."""


class InputOutOfBounds(ValueError):
    """An input lies outside the bounds the model was shared with (refused before it is shared)."""


def _compact(a: np.ndarray):
    return float(a.flat[0]) if a.size and np.all(a == a.flat[0]) else a.tolist()


def _extent(a: np.ndarray) -> str:
    """Per-feature bounds in one line: their smallest and largest value."""
    return f"{float(a.min())!r} to {float(a.max())!r} per feature"


def _precision(frac_bits) -> int | None:
    """The inputs' fractional bits as an int in [0, 24] (None: the model's); ValueError otherwise."""
    if frac_bits is None:
        return None
    return validation.integer("the inputs' fractional bits", frac_bits, minimum=0, maximum=24)


@dataclasses.dataclass(frozen=True)
class InputBounds:
    """Per-feature bounds lo <= x <= hi on one example (float64 arrays of the model's input shape).

    Attributes:
        frac_bits: the inputs' precision: clients send inputs rounded to multiples of 2^-frac_bits, at
            most the model's fractional bits, and the parties scale them to the model's format
            (`to_model`) after checking them (None: the model's). The servers' input check costs in
            proportion to the bits of the encoded span (`protocol.input_check`), so inputs of coarse
            precision (8 bits for pixel values p / 255) are checked at about half the cost.
        calibrated: the bounds are calibration data's extremes (`from_data`): sharing widens them outward
            to the inputs' grid (every calibration example stays inside), where declared bounds are narrowed
            inward (`encoded`).
        input_check: what the servers check (`INPUT_CHECKS`, module docstring): "widened" (default) the declared
            bounds widened outward to a window one comparison checks, where the analysis proves it safe (else
            exact), "exact" the declared bounds, "half-open" [lo, hi) (`half_open`).
        half_open: (input_check "half-open") declared bounds checked as [lo, hi): the top grid value is dropped
            (`encoded`), so a client gives an input at hi as hi - 2^-bits (moved by at most 2^-bits there,
            2^-(bits+1) elsewhere).
            Allowed only where it halves the input check: when every feature's encoded span hi - lo is the same
            power of two 2^j >= 2 (as for [0, 1] or [-1, 1]: 2^j + 1 grid values need two comparisons, the 2^j
            left need one of j bits, `protocol.input_check`). Kept as the grid values (`on_grid`), and written
            (`to_dict`) as the bounds the parties check, so code that predates it checks the same ones.
    """

    lo: np.ndarray
    hi: np.ndarray
    frac_bits: int | None = None
    calibrated: bool = False
    input_check: str = WIDENED

    @property
    def half_open(self) -> bool:
        return self.input_check == HALF_OPEN

    @classmethod
    def declared(
        cls,
        lo,
        hi,
        input_shape: tuple,
        *,
        frac_bits: int | None = None,
        input_check: str | None = None,
        half_open: bool = False,
    ) -> "InputBounds":
        """Bounds from scalars or arrays broadcastable to `input_shape`, checked by the servers as `input_check`
        says (default "widened"; `half_open=True` is the same as input_check="half-open").

        Raises:
            ValueError: if a bound is not finite, lo > hi somewhere, the shapes do not fit, frac_bits is
                not an integer in [0, 24], input_check is not one of `INPUT_CHECKS`, half_open is not a bool
                or contradicts input_check, or (frac_bits given) a bound is not a multiple of 2^-frac_bits: the
                parties check the encoded bounds, so these are exactly the bounds inputs are held to.
        """
        input_check = _input_check(input_check, half_open)
        try:
            lo, hi = (np.broadcast_to(np.asarray(v, dtype=np.float64), tuple(input_shape)).copy() for v in (lo, hi))
        except (ValueError, TypeError) as err:
            raise ValueError(f"input bounds do not fit the input shape {tuple(input_shape)}: {err}") from None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("input bounds must be finite numbers")
        if np.any(lo > hi):
            raise ValueError(f"input bounds have lo > hi at {np.count_nonzero(lo > hi)} feature(s)")
        frac_bits = _precision(frac_bits)
        if frac_bits is not None:  # the parties check the encoded bounds: they must be the declared ones
            step = 2.0**frac_bits
            off = (np.rint(lo * step) != lo * step) | (np.rint(hi * step) != hi * step)
            if np.any(off):
                first = tuple(int(i) for i in np.argwhere(off)[0])
                raise ValueError(
                    f"input bounds must be multiples of 2^-{frac_bits} (the inputs' precision); "
                    f"{np.count_nonzero(off)} feature(s) are not (first: feature {first}, bounds "
                    f"[{lo[first]:g}, {hi[first]:g}])"
                )
        return cls(lo, hi, frac_bits, input_check=input_check)

    @classmethod
    def from_data(
        cls, x, input_shape: tuple, *, frac_bits: int | None = None, input_check: str | None = None
    ) -> "InputBounds":
        """Per-feature minimum and maximum of calibration examples x, shape (n,) + input_shape (widened
        outward to multiples of 2^-frac_bits when the inputs' precision is given), checked as `input_check`
        says ("widened" or "exact": half-open would narrow them)."""
        if _input_check(input_check, False) == HALF_OPEN:
            raise ValueError("calibration bounds are widened outward, never narrowed: they cannot be half-open")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != len(input_shape) + 1 or x.shape[1:] != tuple(input_shape) or not len(x):
            raise ValueError(f"calibration data has shape {x.shape}, expected (n,) + {tuple(input_shape)} with n >= 1")
        lo, hi = x.min(axis=0), x.max(axis=0)
        step = 2.0 ** _precision(frac_bits) if frac_bits is not None else None
        if step is not None:  # widened outward to the inputs' grid
            lo, hi = np.floor(lo * step) / step, np.ceil(hi * step) / step
        bounds = cls.declared(lo, hi, input_shape, frac_bits=frac_bits, input_check=input_check)
        return dataclasses.replace(bounds, calibrated=True)

    def precision(self, fixed: FixedPoint) -> int:
        """The fractional bits inputs are encoded with for a model of format `fixed` (ValueError if finer)."""
        if self.frac_bits is None:
            return fixed.frac_bits
        if self.frac_bits > fixed.frac_bits:
            raise ValueError(
                f"the inputs' precision ({self.frac_bits} fractional bits) exceeds the model's ({fixed.frac_bits})"
            )
        return self.frac_bits

    def encode(self, x, fixed: FixedPoint) -> np.ndarray:
        """Inputs as ring elements at the inputs' precision (what clients share and the parties check): the
        nearest multiple of 2^-bits, except that a value within the bounds whose nearest multiple lies past
        a bound off that grid takes the bound's grid value inside the bounds (`encoded`)."""
        x = np.asarray(x, dtype=np.float64)
        encoded = fixed.encode(x, what="input", frac_bits=self.precision(fixed))
        lo, hi = (as_signed(b) for b in self.encoded(fixed))
        inside = (x >= self.lo) & (x <= self.hi)
        return np.where(inside, as_ring(np.clip(as_signed(encoded), lo, hi)), encoded)

    def encoded(self, fixed: FixedPoint) -> tuple[np.ndarray, np.ndarray]:
        """The bounds as ring elements at the inputs' precision, declared ones rounded inward to its grid (lo
        up, hi down, then one step lower if `half_open`): the parties accept exactly the multiples of 2^-bits
        within them, none past them (calibrated ones are widened outward).

        Raises:
            ValueError: if a bound exceeds what the ring holds at that precision (naming its magnitude),
                some feature's bounds hold no multiple of 2^-bits (naming the feature, its bounds and the grid
                values on either side), or half-open bounds' spans are not one power of two of at least 2
                steps (naming a feature whose span differs) or a bound is more than 2^53 steps from 0 (the bundle
                writes the checked top as a float64, exact only up to there).
        """
        bits = self.precision(fixed)
        for what, bound in (("lower input bound", self.lo), ("upper input bound", self.hi)):
            fixed.encode(bound, what=what, frac_bits=bits)  # its magnitude first: scaled, a huge bound overflows
        step = float(1 << bits)
        if self.calibrated:  # widened outward: every calibration example stays inside
            lo, hi = np.floor(self.lo * step), np.ceil(self.hi * step)
        else:
            lo, hi = np.ceil(self.lo * step), np.floor(self.hi * step)
        if np.any(lo > hi):
            first = tuple(int(i) for i in np.argwhere(lo > hi)[0])
            below, above, lo_v, hi_v = (
                float(v) for v in (hi[first] / step, lo[first] / step, self.lo[first], self.hi[first])
            )
            raise ValueError(
                f"input bounds [{lo_v!r}, {hi_v!r}] of feature {first} hold no multiple of 2^-{bits} (the inputs' "
                f"precision; the nearest are {below!r} and {above!r})"
            )
        lo = fixed.encode(lo / step, what="lower input bound", frac_bits=bits)
        hi = fixed.encode(hi / step, what="upper input bound", frac_bits=bits)
        if self.half_open:  # in the ring: exact for any span (hi - lo < 2^63 at `max_abs`)
            self._check_half_open(as_signed(lo), as_signed(hi), bits)
            hi = hi - hi.dtype.type(1)
        return lo, hi

    def _check_half_open(self, lo: np.ndarray, hi: np.ndarray, bits: int) -> None:
        """Refuses half-open bounds (grid values `lo`, `hi` in steps of 2^-bits) where dropping the top grid value
        would not leave one comparison, or where a float64 could not hold the checked top (`to_dict`)."""
        spans = hi - lo
        top = int(spans.max())
        largest = int(max(np.abs(lo).max(), np.abs(hi).max()))
        if not self.calibrated and top >= 2 and top & (top - 1) == 0 and np.all(spans == top) and largest <= 2**53:
            return
        if largest > 2**53:
            raise ValueError(
                f"half-open input bounds are written with their checked top (hi - 2^-{bits}) as a float: a bound lies "
                f"{largest} steps of 2^-{bits} from 0, more than the 53 bits a float holds exactly; declare the "
                f"bounds without half-open, or at a coarser precision"
            )
        if self.calibrated:
            why = "calibration bounds are widened outward, never narrowed"
        elif np.all(spans == top):
            why = f"every feature spans {top} steps of 2^-{bits}"
        else:
            first = tuple(int(i) for i in np.argwhere(spans != top)[0])
            why = f"feature {first} spans {spans[first]} steps of 2^-{bits}, others up to {top}"
        raise ValueError(
            "half-open input bounds need every feature's span to be the same power of two of at least 2 steps of "
            f"the inputs' grid (as [0, 1] or [-1, 1]), where dropping the top value halves the input check: {why}"
        )

    def on_grid(self, fixed: FixedPoint) -> "InputBounds":
        """Calibrated and half-open bounds as the grid values they are checked from (what a bundle keeps; half-
        open ones keep their top value, with the inputs' precision made explicit); other declared ones as
        declared (their inputs take the bound's grid value, `encode`)."""
        if not (self.calibrated or self.half_open):
            return self
        bits = self.precision(fixed)
        lo, hi = self.encoded(fixed)
        if self.half_open:
            lo, hi = (as_signed(b) * 2.0**-bits for b in (lo, hi + hi.dtype.type(1)))
            return InputBounds(lo, hi, bits, input_check=HALF_OPEN)
        return InputBounds(*(as_signed(b) * 2.0**-bits for b in (lo, hi)), self.frac_bits, input_check=self.input_check)

    def widened(self, fixed: FixedPoint) -> "InputBounds | None":
        """The window the servers check with input_check "widened": per feature the 2^k grid values centred on its
        encoded bounds [lo, hi] (the lower half of the extra values below lo, rounded down), k the bits of the
        widest span (`protocol.input_check.bound_bits`; one comparison of k bits checks lo' <= x < lo' + 2^k), as
        exact bounds on the grid; None where the bounds already are such a window (nothing to widen).

        Raises:
            ValueError: if the window would hold more than twice some feature's declared grid values (hi - lo + 1;
                as with spans of different bit lengths, or a constant feature beside one wider than a grid step),
                naming the narrowest feature (its `public` reason, for the plan's fallback, without the counts); if
                the window exceeds what the ring holds at the inputs' precision, or a bound of it lies more than
                2^53 steps from 0 (the bundle writes it as a float64).
        """
        bits = self.precision(fixed)
        lo, hi = (as_signed(b).astype(object) for b in self.encoded(fixed))  # exact Python integers
        spans = hi - lo
        k = max(int(spans.max()).bit_length(), 1)
        narrowest = min(range(spans.size), key=lambda i: spans.flat[i])  # widened the most
        if 1 << k > 2 * (spans.flat[narrowest] + 1):  # at most twice any feature's declared grid values
            at = tuple(int(i) for i in np.unravel_index(narrowest, spans.shape))
            raise _refusal(
                ValueError(
                    f"the widened bounds would give feature {at} 2^{k} grid values of 2^-{bits}, more than twice the "
                    f"{spans.flat[narrowest] + 1} declared for it: declare equal spans to keep the widened check"
                ),
                f"feature {at} would hold more than twice the grid values declared for it (declared spans differ "
                f"too much; equal spans keep the widened check)",
            )
        if all(span == (1 << k) - 1 for span in spans.flat):
            return None
        lo = lo - ((1 << k) - 1 - spans) // 2
        hi = lo + (1 << k) - 1
        if max(max(abs(int(v)) for v in b.flat) for b in (lo, hi)) > 2**53:
            raise ValueError(f"the widened bounds lie more than 2^53 steps of 2^-{bits} from 0")
        lo, hi = (np.asarray(b, dtype=np.float64) * 2.0**-bits for b in (lo, hi))
        for what, bound in (("lower widened bound", lo), ("upper widened bound", hi)):
            fixed.encode(bound, what=what, frac_bits=bits)
        return InputBounds(lo, hi, bits, input_check=EXACT)

    def to_model(self, encoded_x: np.ndarray, fixed: FixedPoint) -> np.ndarray:
        """Ring elements (or one component of their shares) at the inputs' precision in the model's format:
        times 2^(f - frac_bits), exact in the ring."""
        return encoded_x << encoded_x.dtype.type(fixed.frac_bits - self.precision(fixed))

    def check(self, encoded_x: np.ndarray, fixed: FixedPoint) -> None:
        """Refuses inputs (batch,) + shape encoded by `encode` outside the bounds.

        Raises:
            InputOutOfBounds: naming how many values are out and where the first one is (not its value).
        """
        lo, hi = (as_signed(b) for b in self.encoded(fixed))
        x = as_signed(encoded_x)
        outside = (x < lo) | (x > hi)
        if np.any(outside):
            first = np.argwhere(outside)[0]
            feature = tuple(int(i) for i in first[1:])
            close = ")" if self.half_open else "]"
            raise InputOutOfBounds(
                f"{np.count_nonzero(outside)} input value(s) lie outside the bounds the model was shared with "
                f"(first: example {first[0]}, feature {feature}, bounds [{self.lo[feature]:g}, "
                f"{self.hi[feature]:g}{close}); refused before sharing"
            )

    def to_dict(self) -> dict:
        """lo, hi and frac_bits (if given); half-open bounds (`on_grid`) with hi as checked, hi - 2^-frac_bits:
        code that predates them reads the bounds the parties check. (input_check "widened" / "exact" is not
        written: the range plan records the bounds the servers check, `RangePlan.checked_bounds`.)"""
        if self.half_open:
            if self.frac_bits is None:
                raise ValueError("half-open bounds are written on their grid (`on_grid`)")
            top = self.hi - 2.0**-self.frac_bits
            return {"lo": _compact(self.lo), "hi": _compact(top), "frac_bits": self.frac_bits, "half_open": True}
        data = {"lo": _compact(self.lo), "hi": _compact(self.hi)}
        return data if self.frac_bits is None else dict(data, frac_bits=self.frac_bits)

    @classmethod
    def from_dict(cls, data: dict, input_shape: tuple) -> "InputBounds":
        """Bounds written by `to_dict`, as checked by the servers: half-open, else exactly."""
        half_open, frac_bits, hi = data.get("half_open", False), data.get("frac_bits"), data["hi"]
        if half_open is True:
            if frac_bits is None:
                raise ValueError("half-open input bounds without the inputs' precision")
            hi = np.asarray(hi, dtype=np.float64) + 2.0 ** -_precision(frac_bits)
        check = EXACT if half_open is False else None
        return cls.declared(data["lo"], hi, input_shape, frac_bits=frac_bits, input_check=check, half_open=half_open)


def _input_check(input_check, half_open) -> str:
    """One of `INPUT_CHECKS` from input_check (None: the default) and the shorthand half_open; ValueError else."""
    if not isinstance(half_open, bool):
        raise ValueError(f"half_open must be True or False, not {half_open!r}")
    if input_check is not None and input_check not in INPUT_CHECKS:
        raise ValueError(f"input_check must be one of {', '.join(INPUT_CHECKS)}, not {input_check!r}")
    if half_open and input_check not in (None, HALF_OPEN):
        raise ValueError(f"half_open (input_check {HALF_OPEN!r}) contradicts input_check {input_check!r}")
    return HALF_OPEN if half_open else input_check or WIDENED


@dataclasses.dataclass(frozen=True)
class RangePlan:
    """The public result of `analyse`.

    Attributes:
        input_bounds: what clients may send.
        ops: every truncation and comparison of one prediction, in execution order, with its bits.
        label_start: index in `ops` where the label head (argmax or sign) begins.
        output_bits: |logit| < 2^output_bits in the logits' fixed-point units.
        rerun_probability: per example, the probability that a query is re-run (a truncation's
            randomness in its failure window; independent of the data).
        checked_bounds: the bounds the servers check where they are not `input_bounds` (input_check "widened":
            `InputBounds.widened`, which `ops` and the other bits were proven for); None: `input_bounds`.
        fallback: why input_check "widened" fell back to checking `input_bounds` exactly (None if it did not): which
            limit the window exceeds, without the window's bit counts (public, like the plan).
    """

    input_bounds: InputBounds
    ops: tuple
    label_start: int
    output_bits: int
    rerun_probability: float
    checked_bounds: InputBounds | None = None
    fallback: str | None = None

    @property
    def server_bounds(self) -> InputBounds:
        """The bounds the servers check (`checked_bounds`, else `input_bounds`)."""
        return self.checked_bounds if self.checked_bounds is not None else self.input_bounds

    def describe_check(self) -> str:
        """One line saying which bounds the servers check, and why (for share-model's output and the gate)."""
        bounds = self.server_bounds
        lo, hi = (_compact(b) if np.all(b == b.flat[0]) else _extent(b) for b in (bounds.lo, bounds.hi))
        close = ")" if bounds.half_open else "]"
        if self.checked_bounds is not None:
            return f"the servers check the declared input bounds widened to [{lo}, {hi}] (one comparison per value)"
        if self.fallback is not None:
            return f"the servers check the declared input bounds [{lo}, {hi}] exactly: {self.fallback}"
        return f"the servers check the declared input bounds [{lo}, {hi}{close}"

    def check_logits_release(self) -> None:
        """Refuses a release policy that allows logits when they could leave [-2^63, 2^63).

        Raises:
            LogitsOutOfRange: naming the bits the logits need and the setting to change.
        """
        if self.output_bits > LOGITS_BITS:
            where = (
                "the declared input bounds" if self.checked_bounds is None else "the widened bounds the servers check"
            )
            raise LogitsOutOfRange(
                f"for {where} the logits can need {self.output_bits} bits, more than the "
                f"{LOGITS_BITS} a 64-bit ring holds, so released logits could wrap: release labels only "
                f"(allow_logits=False, no --allow-logits), declare tighter input bounds or rescale the model"
            )

    def ops_for(self, output: str) -> tuple:
        """The operations of a prediction revealing 'logits' or 'label'."""
        return self.ops if output == "label" else self.ops[: self.label_start]

    def to_dict(self) -> dict:
        """The public plan; "checked_bounds" / "input_check_fallback" only where set (readers that predate them
        have the servers check "input_bounds" exactly, a subset of the checked bounds)."""
        data = {
            "input_bounds": self.input_bounds.to_dict(),
            "label_start": self.label_start,
            "output_bits": self.output_bits,
            "rerun_probability": self.rerun_probability,
            "ops": [[op.layer, op.kind, op.bits, op.elements] for op in self.ops],
        }
        if self.checked_bounds is not None:
            data["checked_bounds"] = self.checked_bounds.to_dict()
        if self.fallback is not None:
            data["input_check_fallback"] = self.fallback
        return data

    @classmethod
    def from_dict(cls, data: dict, input_shape: tuple) -> "RangePlan":
        """A plan written by `to_dict` (without "checked_bounds", as before it: the servers check "input_bounds")."""
        checked, fallback = data.get("checked_bounds"), data.get("input_check_fallback")
        if fallback is not None and not isinstance(fallback, str):
            raise ValueError(f"input_check_fallback must be a string, not {fallback!r}")
        return cls(
            InputBounds.from_dict(data["input_bounds"], input_shape),
            tuple(RangeOp(str(a), str(b), int(c), int(d)) for a, b, c, d in data["ops"]),
            int(data["label_start"]),
            int(data["output_bits"]),
            float(data["rerun_probability"]),
            None if checked is None else InputBounds.from_dict(checked, input_shape),
            fallback,
        )


def truncation_bits(op: RangeOp, fixed: FixedPoint) -> int:
    """The offset exponent a truncation uses: its recorded bits, at least the shift."""
    return max(op.bits, fixed.frac_bits)


def analyse(architecture, encoded: dict, bounds: InputBounds, fixed: FixedPoint) -> RangePlan:
    """Proves bounds for every truncation and comparison of the model over the input box, and (input_check
    "widened") over the box the servers check instead, falling back to the declared one (module docstring).

    Args:
        architecture: the public model description.
        encoded: the model owner's encoded weights (`ModelPlan.encode`).

    Raises:
        ModelRangeError: naming the layer whose values could leave the headroom, or the layer that
            contributes most to a re-run probability above `MAX_RERUN_PROBABILITY`, for the declared bounds.
    """
    plan = _analyse(architecture, encoded, bounds, fixed)
    if bounds.input_check != WIDENED:
        return plan
    try:
        window = bounds.widened(fixed)
        if window is None:
            return plan
        wide = _analyse(architecture, encoded, window, fixed)
    except ValueError as err:  # public, so without the window's bit counts (`_refusal`)
        why = getattr(err, "public", None)
        if why is None:  # `InputBounds.widened`: the ring or the bundle's floats
            why = "they exceed what the ring, or a float64 in the bundle, holds at the inputs' precision"
        return dataclasses.replace(plan, fallback=f"over the widened bounds {why}")
    if wide.output_bits > LOGITS_BITS >= plan.output_bits:
        return dataclasses.replace(
            plan, fallback=f"over the widened bounds the logits could need more than {LOGITS_BITS} bits"
        )
    return dataclasses.replace(wide, input_bounds=plan.input_bounds, checked_bounds=wide.input_bounds)


def _refusal(err: ValueError, public: str) -> ValueError:
    """`err` (a refusal naming bit counts or grid values, for the model owner) with `public`: the reason without
    them, which a fallback records in the public plan (the window's bits would reveal more about the weights than
    the plan does)."""
    err.public = public
    return err


def _analyse(architecture, encoded: dict, bounds: InputBounds, fixed: FixedPoint) -> RangePlan:
    backend = IntervalBackend(fixed)
    try:
        bounds = bounds.on_grid(fixed)
        lo, hi = (bounds.to_model(b, fixed) for b in bounds.encoded(fixed))
    except ValueError as err:
        raise ModelRangeError(str(err)) from None
    logits = evaluate(architecture, encoded, box(lo, hi), backend, fixed)
    label_start = len(backend.ops)
    label(backend, logits)
    ops = tuple(backend.ops)
    for op in ops:
        if op.bits > HEADROOM_BITS:
            what = "before truncation" if op.kind == "trunc" else "at a comparison"
            raise _refusal(
                ModelRangeError(
                    f"layer {op.layer!r}: for the declared input bounds its values {what} can need {op.bits} bits, "
                    f"more than the {HEADROOM_BITS} the 64-bit ring leaves room for; declare tighter input bounds, "
                    f"use fewer fractional bits or rescale the model"
                ),
                f"the values of layer {op.layer!r} could leave the ring's headroom",
            )
    per_layer: dict[str, float] = {}
    for op in ops:
        if op.kind == "trunc":
            per_layer[op.layer] = per_layer.get(op.layer, 0.0) + op.elements * 2.0 ** (
                truncation_bits(op, fixed) + 1 - 64
            )
    rerun = sum(per_layer.values())
    if rerun > MAX_RERUN_PROBABILITY:
        worst = max(per_layer, key=per_layer.get)
        raise _refusal(
            ModelRangeError(
                f"for the declared input bounds a query would have to be re-run with probability {rerun:.2g} per "
                f"example (limit {MAX_RERUN_PROBABILITY:.2g}); layer {worst!r} contributes {per_layer[worst]:.2g}: "
                f"declare tighter input bounds or rescale the model"
            ),
            "a query's re-run probability would exceed the limit",
        )
    return RangePlan(bounds, ops, label_start, bits_needed(logits.lo, logits.hi), rerun)
