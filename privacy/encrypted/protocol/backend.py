"""One party's side of a private prediction: the layers of `privacy.encrypted.model.layers` on shares.

`predict_share` is everything a server does for one request: evaluate the architecture on its shares
of the input and of the weights, with the public bounds of the model's `RangePlan` as the parameters of
each truncation and comparison, then hand the client a re-randomized share of the output (logits, or
only the predicted label). Nothing is ever opened to a server. If a truncation's randomness fell into
its failure window (`Party.rerun`), the party sends no output share, only the request to re-run.

Values are kept in whichever form costs no communication (`AShare`, `Terms`, or a `Pending` share
whose round has not run), so that a comparison's first message rides on the round that produced its
operand and linear maps of gated values need no re-sharing round.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from privacy.encrypted.model.layers import evaluate, label
from privacy.encrypted.model.plan import Architecture
from privacy.encrypted.model.ranges import RangePlan, truncation_bits
from privacy.encrypted.model.ring import DTYPE, FixedPoint
from privacy.encrypted.protocol import comparison
from privacy.encrypted.protocol.arithmetic import (HELPER, Pending, add_public, add_public_terms, matmul_local,
                                                   open_terms, public_share, reshare_pair, truncate)
from privacy.encrypted.protocol.party import Party
from privacy.encrypted.protocol.shares import NUM_PARTIES, AShare, Terms

OUTPUTS = ("logits", "label")


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
        return truncate(self.party, t, shift=0, helper=self._helper(), rnd=rnd)

    def _share(self, x: Value) -> AShare:
        d = x.data
        if isinstance(d, AShare):
            return d
        return (d if isinstance(d, Pending) else self._pending(d)).value()

    def _terms(self, x: Value) -> Terms:
        return x.data if isinstance(x.data, Terms) else Terms.of_share(self._share(x))

    def _open_round(self, x: Value) -> Pending:
        d = x.data
        if isinstance(d, Pending) and not d.rnd.done:
            return d
        if isinstance(d, Terms):
            return self._pending(d)
        return Pending.of_share(self.party, self._share(x), self._helper())

    # -- the backend interface ---------------------------------------------------------------
    @staticmethod
    def shape(x: Value) -> tuple:
        return x.shape

    @staticmethod
    def map(x: Value, fn) -> Value:
        d = x.data
        if isinstance(d, Pending):
            return Value(d.then(lambda s: s.map(fn), fn(np.zeros(d.shape, dtype=np.uint8)).shape), x.wide)
        return Value(d.map(fn), x.wide)

    def narrow(self, x: Value) -> Value:
        if not x.wide:
            return x
        bits = truncation_bits(self._next("trunc"), self.fixed)
        return Value(truncate(self.party, self._terms(x), shift=self.fixed.frac_bits, bound_bits=bits,
                              helper=self._helper()))

    def linear(self, x: Value, encoded) -> Value:
        product = matmul_local(self._share(x), encoded.kernel)
        return Value(Terms(product.term + encoded.bias.a), wide=True)

    def add_public(self, x: Value, c) -> Value:
        c = np.asarray(c, dtype=DTYPE) << DTYPE(self.fixed.frac_bits if x.wide else 0)
        d, p = x.data, self.party
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
            return Value(AShare(np.concatenate([x.data.a for x in xs], axis=-1),
                                np.concatenate([x.data.b for x in xs], axis=-1)), xs[0].wide)
        terms = [self._terms(x) for x in xs]
        zero = terms[0].zero if all(t.zero == terms[0].zero for t in terms) else None
        return Value(Terms(np.concatenate([t.term for t in terms], axis=-1), zero), xs[0].wide)

    def constant(self, c) -> Value:
        return Value(public_share(self.party, np.array(c, dtype=np.int64).view(DTYPE)))

    def gate(self, x: Value, values: list, strict: bool = False) -> list:
        bits = self._next("cmp").bits
        operand = self._open_round(x)
        prepared = []
        for v in values:
            if v is x:
                prepared.append(operand)
            elif isinstance(v.data, Terms):
                prepared.append(self._pending(v.data, operand.rnd))
            else:
                prepared.append(v.data)
        bit = comparison.compare(self.party, operand, bits, strict=strict)
        shares = [v.value() if isinstance(v, Pending) else v for v in prepared]
        return [Value(t, v.wide) for t, v in zip(comparison.gate(self.party, bit, shares), values)]

    def bit(self, x: Value, strict: bool = False) -> Value:
        return Value(comparison.compare(self.party, self._open_round(x), self._next("cmp").bits, strict=strict))

    def open(self, x: Value) -> tuple[np.ndarray, str]:
        """This party's share of `x` for the client, and how shares combine ('add' or 'xor')."""
        if isinstance(x.data, comparison.Bit):
            return comparison.open_bit(self.party, x.data), "xor"
        return open_terms(self.party, self._terms(x)), "add"


@dataclasses.dataclass(frozen=True)
class OutputShare:
    """What one party sends the client.

    Attributes:
        values: this party's share of the output (None if it asks for a re-run).
        combine: 'add' (sum the three shares mod 2^64) or 'xor'.
        frac_bits: fractional bits of the reconstructed integers (0 for labels).
        rerun: the party saw a truncation draw in its failure window: run the query again.
    """

    values: np.ndarray | None
    combine: str
    frac_bits: int
    rerun: bool = False


def predict_share(party: Party, architecture: Architecture, weights: dict, x: AShare, fixed: FixedPoint,
                  ranges: RangePlan, output: str = "logits") -> OutputShare:
    """Runs the model on shares and returns this party's share of the result for the client.

    Args:
        party: this party in this session.
        architecture: the public model description.
        weights: this party's shares, ``{layer: EncodedLayer(kernel=AShare, bias=AShare)}``.
        x: this party's share of the fixed-point input, shape (batch,) + architecture.input_shape.
        fixed: the fixed-point encoding the model was shared with.
        ranges: the model's public range plan (the bits of every truncation and comparison).
        output: 'logits' (the last layer's values) or 'label' (argmax, or [logit > 0] for one logit).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    backend = SecureBackend(party, fixed, ranges.ops_for(output))
    y = evaluate(architecture, weights, Value(x), backend, fixed)
    frac_bits = (2 if y.wide else 1) * fixed.frac_bits
    if output == "label":
        y, frac_bits = label(backend, y), 0
    with backend.layer("output"):
        values, combine = backend.open(y)
    backend.finish()
    if party.rerun:
        return OutputShare(None, combine, frac_bits, rerun=True)
    return OutputShare(values, combine, frac_bits)
