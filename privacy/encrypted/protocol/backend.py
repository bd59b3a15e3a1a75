"""One party's side of a private prediction: the layers of `privacy.encrypted.model.layers` on shares.

`predict_share` is everything a server does for one request: check the client's input shares against
the bounds the model was proven for (`RangePlan.server_bounds`: the declared bounds, or by default those
widened to a one-comparison window; `input_check`, riding on the first rounds), evaluate the architecture on
its shares of the input and of the weights, with the public bounds of the model's `RangePlan` as the
parameters of each truncation and comparison, then hand the client a re-randomized share of the output
(the predicted label, or the logits where the model owner allows them). Nothing is ever opened to a
server but the input check's counts. If the input check failed, the party sends no output share, only
the reason; for an example in which a truncation's randomness fell into its failure window
(`Party.rerun`), it withholds that example's share and asks for a re-run of it.

Values are kept in whichever form costs no communication (`AShare`, `Terms`, a `Pending` share whose
round has not run, or an exact truncation's `Exact` split), so that a comparison's first message rides
on the round that produced its operand and linear maps of gated values need no re-sharing round.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from privacy import validation
from privacy.encrypted.model.layers import evaluate, label
from privacy.encrypted.model.ranges import truncation_bits
from privacy.encrypted.model.ring import DTYPE, FixedPoint
from privacy.encrypted.protocol import comparison
from privacy.encrypted.protocol.arithmetic import (
    HELPER,
    Pending,
    add_public,
    add_public_terms,
    matmul_local,
    open_terms,
    public_share,
    reshare,
    reshare_pair,
)
from privacy.encrypted.protocol.comparison import Comparison, Split
from privacy.encrypted.protocol.input_check import InputCheck
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, Terms
from privacy.encrypted.protocol.truncation import Exact, Truncation

OUTPUTS = ("label", "logits")
"""What a client may ask for; the first is the default. Logits only where the model owner allows them
(`PartyModel.allow_logits`)."""


class OutputNotAllowed(ValueError):
    """The client asked for logits, which the model owner did not allow (only labels are released)."""


@dataclasses.dataclass(frozen=True)
class Value:
    """A backend value: the party's data and whether it carries 2f fractional bits (`wide`)."""

    data: object
    wide: bool = False

    @property
    def shape(self) -> tuple:
        return self.data.shape


class SecureBackend:
    """The backend interface of `privacy.encrypted.model.layers` on one party's shares.

    Args:
        party: this party in this session.
        fixed: the fixed-point format.
        ops: the public range plan's operations for this prediction, consumed in order.
    """

    def __init__(self, party: Party, fixed: FixedPoint, ops: tuple):
        self.party, self.fixed = party, fixed
        self._ops, self._layer = list(ops), "input"
        self._helpers = 0

    def _helper(self) -> int:
        """The helper of the next truncation or split: taking turns spreads the pair's heavier work."""
        self._helpers += 1
        return (HELPER + self._helpers - 1) % NUM_PARTIES

    @contextlib.contextmanager
    def layer(self, name):
        previous, self._layer = self._layer, name
        try:
            with self.party.channel.stats.layer(name):
                yield
        finally:
            self._layer = previous

    def _next(self, kind: str):
        op = self._ops.pop(0) if self._ops else None
        if op is None or op.kind != kind or op.layer != self._layer:
            raise RuntimeError(f"the model's range plan has {op} where layer {self._layer!r} needs a {kind!r}")
        return op

    def finish(self) -> None:
        if self._ops:
            raise RuntimeError(f"the model's range plan has {len(self._ops)} operations this prediction did not use")

    # -- conversions (local, or one round) ---------------------------------------------------
    def _pending(self, t: Terms, rnd=None) -> Pending:
        if t.zero is not None:
            return reshare_pair(self.party, t, rnd)
        return reshare(self.party, t, helper=self._helper(), rnd=rnd)

    def _share(self, x: Value) -> AShare:
        d = x.data
        if isinstance(d, AShare):
            return d
        return (d if isinstance(d, Pending) else self._pending(self._terms(x))).value()

    def _terms(self, x: Value) -> Terms:
        d = x.data
        if isinstance(d, Terms):
            return d
        return d.terms() if isinstance(d, Exact) else Terms.of_share(self._share(x))

    def _open_round(self, x: Value) -> Pending:
        d = x.data
        if isinstance(d, Pending) and not d.rnd.done:
            return d
        if isinstance(d, (Terms, Exact)):
            return self._pending(self._terms(x))
        return Pending.of_share(self.party, self._share(x), self._helper())

    # -- the backend interface ---------------------------------------------------------------
    @staticmethod
    def shape(x: Value) -> tuple:
        return x.shape

    @staticmethod
    def map(x: Value, fn) -> Value:
        d = x.data
        if isinstance(d, Exact):
            return Value(d.map(fn), x.wide)
        if isinstance(d, Pending):
            return Value(d.then(lambda s: s.map(fn), fn(np.zeros(d.shape, dtype=np.uint8)).shape), x.wide)
        return Value(d.map(fn), x.wide)

    def narrow(self, x: Value) -> Value:
        if not x.wide:
            return x
        bits = truncation_bits(self._next("trunc"), self.fixed)
        return Value(
            Exact(
                Truncation(
                    self.party, self._terms(x), shift=self.fixed.frac_bits, bound_bits=bits, helper=self._helper()
                )
            )
        )

    def linear(self, x: Value, encoded) -> Value:
        product = matmul_local(self._share(x), encoded.kernel)
        return Value(Terms(product.term + encoded.bias.a), wide=True)

    def add_public(self, x: Value, c) -> Value:
        c = np.asarray(c, dtype=DTYPE) << DTYPE(self.fixed.frac_bits if x.wide else 0)
        d, p = x.data, self.party
        if isinstance(d, Exact):
            return Value(d.add_public(c), x.wide)
        if isinstance(d, AShare):
            return Value(add_public(p, d, c), x.wide)
        if isinstance(d, Terms):
            return Value(add_public_terms(p, d, c), x.wide)
        return Value(d.then(lambda s: add_public(p, s, c), np.broadcast_shapes(d.shape, c.shape)), x.wide)

    def dot_public(self, x: Value, c) -> Value:
        summed = self._terms(self.narrow(x)).times_public(c).map(lambda t: t.sum(axis=-1, dtype=DTYPE))
        return self.narrow(Value(summed, wide=True))

    def _combine(self, x: Value, y: Value, sign: int) -> Value:
        dx, dy = x.data, y.data
        if isinstance(dx, AShare) and isinstance(dy, AShare):
            return Value(dx + dy if sign > 0 else dx - dy, x.wide)
        if isinstance(dx, Pending) and isinstance(dy, AShare):
            return Value(dx.then(lambda s: s + dy if sign > 0 else s - dy, dx.shape), x.wide)
        tx, ty = self._terms(x), self._terms(y)
        return Value(tx + ty if sign > 0 else tx - ty, x.wide)

    def add(self, x: Value, y: Value) -> Value:
        return self._combine(x, y, 1)

    def sub(self, x: Value, y: Value) -> Value:
        return self._combine(x, y, -1)

    def concat(self, xs: list) -> Value:
        if all(isinstance(x.data, AShare) for x in xs):
            return Value(
                AShare(
                    np.concatenate([x.data.a for x in xs], axis=-1), np.concatenate([x.data.b for x in xs], axis=-1)
                ),
                xs[0].wide,
            )
        terms = [self._terms(x) for x in xs]
        zero = terms[0].zero if all(t.zero == terms[0].zero for t in terms) else None
        return Value(Terms(np.concatenate([t.term for t in terms], axis=-1), zero), xs[0].wide)

    def constant(self, c) -> Value:
        return Value(public_share(self.party, np.array(c, dtype=np.int64).view(DTYPE)))

    def gate(self, x: Value, values: list, strict: bool = False) -> list:
        """values * [x >= 0]; for a ReLU of an exact truncation (`fused`), the sign of y' = S + W and the
        carry share their rounds (`privacy.encrypted.protocol.truncation`); the range plan records y''s bits."""
        p, bits = self.party, self._next("cmp").bits
        if fused(x, values, strict):
            exact = x.data
            sign = Comparison(p, exact.split(), bits)
            rnd = p.round()
            sign.send(rnd)
            exact.trunc.send_carry(rnd)
            rnd.run()
            parts = exact.gate_parts()
            return [
                Value(t, v.wide)
                for t, v in zip(comparison.gate(p, sign.bit(), [parts] * len(values)), values, strict=True)
            ]
        operand = self._open_round(x)
        prepared = []
        for v in values:
            if v is x:
                prepared.append(operand)
            elif isinstance(v.data, (Terms, Exact)):
                prepared.append(self._pending(self._terms(v), operand.rnd))
            else:
                prepared.append(v.data)
        bit = comparison.compare(p, Split.of_share(p, operand), bits, strict=strict)
        shares = [v.value() if isinstance(v, Pending) else v for v in prepared]
        return [Value(t, v.wide) for t, v in zip(comparison.gate(p, bit, shares), values, strict=True)]

    def bit(self, x: Value, strict: bool = False) -> Value:
        bits = self._next("cmp").bits
        return Value(
            comparison.compare(self.party, Split.of_share(self.party, self._open_round(x)), bits, strict=strict)
        )

    def open(self, x: Value) -> tuple[np.ndarray, str]:
        """This party's share of `x` for the client, and how shares combine ('add' or 'xor')."""
        if isinstance(x.data, comparison.Bit):
            return comparison.open_bit(self.party, x.data), "xor"
        return open_terms(self.party, self._terms(x)), "add"


def fused(x: Value, values: list, strict: bool) -> bool:
    """Whether `gate` compares y' instead of y: a non-strict gate of an exact truncation's result by itself
    (the interval analysis makes the same choice, `privacy.encrypted.model.intervals`)."""
    return isinstance(x.data, Exact) and not strict and all(v is x for v in values)


@dataclasses.dataclass(frozen=True)
class OutputShare:
    """What one party sends the client.

    Attributes:
        values: this party's share of the output, (batch, ...); None if the input check failed.
        combine: 'add' (sum the three shares mod 2^64) or 'xor'.
        frac_bits: fractional bits of the reconstructed integers (0 for labels).
        rerun: per example, whether this party withheld it (its share is zero there) because a
            truncation draw fell into its failure window: run those examples again. None: none withheld.
        refused: why the parties release nothing for this input (the input check failed), or None.
    """

    values: np.ndarray | None
    combine: str
    frac_bits: int
    rerun: np.ndarray | None = None
    refused: str | None = None


def predict_share(party: Party, model, x: AShare, output: str = OUTPUTS[0], *, check_input: bool = True) -> OutputShare:
    """Checks the input, runs the model on shares and returns this party's share of the result for the client.

    Args:
        party: this party in this session.
        model: this party's `PartyModel` (architecture, fixed point, range plan, weight shares, policy).
        x: this party's share of the input at the inputs' precision (`InputBounds.encode`), shape (batch,) +
            architecture.input_shape.
        output: 'label' (argmax as a one-hot vector, or [logit > 0] for one logit) or 'logits' (the last
            layer's values, if the model owner allows them).
        check_input: False skips the input check (`input_check`); only to measure its cost (benchmarks): an
            unchecked input out of bounds or shared inconsistently can expose weights. All three parties must
            agree, or their messages do not match.

    Raises:
        OutputNotAllowed: for 'logits' when the model's policy allows labels only.
    """
    validation.choice("output", output, OUTPUTS)
    if output == "logits" and not model.allow_logits:
        raise OutputNotAllowed(
            "the model owner allows only labels to be revealed (share-model --allow-logits allows logits)"
        )
    bounds = model.ranges.server_bounds
    check = InputCheck(party, x, model.checked_bounds) if check_input else None
    x = AShare(bounds.to_model(x.a, model.fixed), bounds.to_model(x.b, model.fixed))  # local: times 2^(f - f_in)
    backend = SecureBackend(party, model.fixed, model.ranges.ops_for(output))
    y = evaluate(model.architecture, model.weights, Value(x), backend, model.fixed)
    frac_bits = (2 if y.wide else 1) * model.fixed.frac_bits
    if output == "label":
        y, frac_bits = label(backend, y), 0
    with backend.layer("output"):
        values, combine = backend.open(y)
        party.finish_riders()
    backend.finish()
    refused = check.refused() if check is not None else None
    if refused is not None:
        return OutputShare(None, combine, frac_bits, refused=refused)
    if party.rerun is not None and party.rerun.any():
        values = np.where(party.rerun.reshape((-1,) + (1,) * (values.ndim - 1)), DTYPE(0), values)
        return OutputShare(values, combine, frac_bits, rerun=party.rerun)
    return OutputShare(values, combine, frac_bits)
