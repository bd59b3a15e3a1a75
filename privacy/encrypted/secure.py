"""One party's side of a private prediction: the layers of `privacy.encrypted.layers` on shares.

`predict_share` is everything a server does for one request: evaluate the architecture on its shares
of the input and of the weights, then hand the client a re-randomized 3-out-of-3 share of the output
(logits, or only the predicted label) and of the overflow monitor's words. Nothing is ever opened to
a server.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy.encrypted import arithmetic, comparison
from privacy.encrypted.layers import evaluate
from privacy.encrypted.party import Party
from privacy.encrypted.plan import Architecture
from privacy.encrypted.ring import DTYPE, FixedPoint
from privacy.encrypted.shares import AShare

OUTPUTS = ("logits", "label")


class SecureBackend:
    """The backend interface of `privacy.encrypted.layers` on one party's replicated shares."""

    def __init__(self, party: Party, fixed: FixedPoint):
        self.party, self.fixed = party, fixed

    def layer(self, name):
        return self.party.channel.stats.layer(name)

    @staticmethod
    def shape(x: AShare) -> tuple:
        return x.shape

    @staticmethod
    def map(x: AShare, fn) -> AShare:
        return x.map(fn)

    def linear(self, x: AShare, encoded) -> AShare:
        """x @ W + b on shares: local products, one reshare round, one truncation round."""
        z = arithmetic.matmul_local(x, encoded.kernel) + encoded.bias.a
        return arithmetic.truncate(self.party, arithmetic.reshare(self.party, z), self.fixed.frac_bits)

    def add_public(self, x: AShare, c) -> AShare:
        return arithmetic.add_public(self.party, x, c)

    def dot_public(self, x: AShare, c) -> AShare:
        summed = x.times_public(c).map(lambda comp: comp.sum(axis=-1, dtype=DTYPE))
        return arithmetic.truncate(self.party, summed, self.fixed.frac_bits)

    def relu(self, x: AShare) -> AShare:
        return comparison.relu(self.party, x)

    def maximum(self, x: AShare) -> AShare:
        return comparison.maximum(self.party, x)


@dataclasses.dataclass(frozen=True)
class OutputShare:
    """What one party sends the client: 3-out-of-3 shares of the output and of the monitor words."""

    values: np.ndarray
    overflow: np.ndarray


def predict_share(party: Party, architecture: Architecture, weights: dict, x: AShare, fixed: FixedPoint,
                  output: str = "logits") -> OutputShare:
    """Runs the model on shares and returns this party's share of the result for the client.

    Args:
        party: this party in this session.
        architecture: the public model description.
        weights: this party's shares, ``{layer: EncodedLayer(kernel=AShare, bias=AShare)}``.
        x: this party's share of the fixed-point input, shape (batch,) + architecture.input_shape.
        fixed: the fixed-point encoding the model was shared with.
        output: 'logits' (the last layer's values) or 'label' (argmax, or [logit > 0] for one logit).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    backend = SecureBackend(party, fixed)
    y = evaluate(architecture, weights, x, backend, fixed)
    if output == "label":
        with backend.layer("label"):
            if y.shape[-1] == 1:
                bit = comparison.positive(party, y.map(lambda c: c[..., 0]))
                y = comparison.bit_to_arith(party, bit)
            else:
                y = comparison.argmax(party, y)
    monitor = party.overflow_words
    words = (np.concatenate([w.a for w in monitor]) if monitor else np.zeros(0, dtype=DTYPE))
    return OutputShare(arithmetic.open_share(party, y), words ^ party.zero_share_xor(words.shape))
