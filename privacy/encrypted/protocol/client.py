"""The client's side of a private prediction: check and share the input, reconstruct the output.

The client checks its input against the public input bounds the model was shared with (inputs
outside them are refused before anything is shared: the parties' computation is only proven correct
inside them), encodes it in fixed point, splits it into replicated shares (one pair per party) and
later combines the three output shares it gets back. It alone sees the result, and it gets nothing
else: no intermediate value, no per-neuron signal. If a party reports that a truncation's randomness
fell into its failure window (an event independent of all data), that party withholds its share and
the client runs the query again with fresh randomness; a result outside the model's proven output
range is rejected too (`ResultRejected`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from privacy.encrypted.model.ranges import RangePlan
from privacy.encrypted.model.ring import DTYPE, FixedPoint, as_signed
from privacy.encrypted.protocol.shares import reconstruct, share


class ResultRejected(RuntimeError):
    """No acceptable result: every attempt was asked to re-run, or the output left its proven range."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A reconstructed private prediction.

    Attributes:
        outputs: (batch, units) model outputs with the output activation applied by the client
            (probabilities for softmax/sigmoid models); None when only labels were requested.
        logits: (batch, units) pre-activation outputs; None when only labels were requested.
        labels: (batch,) predicted class (argmax of the logits, or logit > 0 for a single unit).
        attempts: how many runs it took (more than 1 after re-runs).
    """

    outputs: np.ndarray | None
    logits: np.ndarray | None
    labels: np.ndarray
    attempts: int = 1


def encode_input(x, input_shape: tuple, fixed: FixedPoint, ranges: RangePlan | None = None) -> np.ndarray:
    """Checks the shape (and the bounds of `ranges`) of a batch of inputs and encodes it.

    Raises:
        ValueError: naming the expected and the actual shape, or the encoding problem.
        InputOutOfBounds: if `ranges` is given and a value lies outside its input bounds.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != tuple(input_shape) or x.ndim != len(input_shape) + 1:
        raise ValueError(f"input has shape {x.shape}, expected (batch,) + {tuple(input_shape)}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    encoded = fixed.encode(x, what="input")
    if ranges is not None:
        ranges.input_bounds.check(encoded, fixed)
    return encoded


def share_input(x, input_shape: tuple, fixed: FixedPoint, ranges: RangePlan | None = None) -> list:
    """Encoded, replicated shares of a batch of inputs; element i goes to party i."""
    return share(encode_input(x, input_shape, fixed, ranges))


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


class RerunRequested(Exception):
    """A party asked for the query to be run again (internal to `predict_with_retries`)."""


def check_output_range(integers: np.ndarray, ranges: RangePlan) -> None:
    """Rejects reconstructed logits outside the model's proven output range.

    Raises:
        ResultRejected: if some |logit| >= 2^output_bits (in the logits' fixed-point units).
    """
    limit = 2 ** ranges.output_bits
    if np.any((integers < -limit) | (integers >= limit)):
        raise ResultRejected("the reconstructed output lies outside the model's proven output range; "
                             "result discarded (a party deviated from the protocol or the data was corrupted)")


def reconstruct_prediction(shares: list, *, output: str, output_activation: str, ranges: RangePlan) -> Prediction:
    """Combines the three parties' `OutputShare`s, checks the proven output range, decodes.

    Raises:
        RerunRequested: if a party withheld its share and asked for a re-run.
        ResultRejected: if a logit lies outside the model's proven output range.
    """
    if any(s.rerun or s.values is None for s in shares):
        raise RerunRequested
    values = [np.asarray(s.values, dtype=DTYPE) for s in shares]
    result = (values[0] ^ values[1] ^ values[2]) if shares[0].combine == "xor" else reconstruct(values)
    if output == "label":
        return Prediction(None, None, as_signed(result).astype(np.int64))
    integers = as_signed(result)
    check_output_range(integers, ranges)
    logits = integers.astype(np.float64) / float(1 << shares[0].frac_bits)
    labels = (integers[..., 0] > 0).astype(np.int64) if logits.shape[-1] == 1 else integers.argmax(axis=-1)
    return Prediction(_activate(logits, output_activation), logits, labels)


def predict_with_retries(run: Callable[[], list], *, retries: int, output: str, output_activation: str,
                         ranges: RangePlan) -> Prediction:
    """Reconstructs ``run()``'s prediction, running it again (fresh shares, fresh randomness) on a re-run request.

    Args:
        run: one private prediction from freshly shared input; returns the three `OutputShare`s.
        retries: runs after the first one before giving up.

    Raises:
        ResultRejected: if all 1 + `retries` runs asked for a re-run.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    for attempt in range(retries + 1):
        try:
            prediction = reconstruct_prediction(run(), output=output, output_activation=output_activation,
                                                ranges=ranges)
        except RerunRequested:
            continue
        return dataclasses.replace(prediction, attempts=attempt + 1)
    raise ResultRejected(f"all {retries + 1} attempts were asked to re-run (a truncation's randomness fell into "
                         f"its failure window, probability {ranges.rerun_probability:.2g} per example, independent "
                         f"of the data); try again")
