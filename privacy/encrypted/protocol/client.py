"""The client's side of a private prediction: check and share the input, reconstruct the output.

The client checks its input against the public input bounds the model was shared with (inputs
outside them are refused before anything is shared; the parties check again and release nothing for
them, `privacy.encrypted.protocol.input_check`), encodes it in fixed point, splits it into replicated
shares (one pair per party) and later combines the three output shares it gets back. It alone sees the
result, and it gets nothing else: no intermediate value, no per-neuron signal. If parties report that a
truncation's randomness fell into its failure window for some examples (an event independent of all
data), they withhold those examples' shares and the client runs those examples again with fresh
randomness; a result outside the model's proven output range, or a label that is not one-hot, is
rejected (`ResultRejected`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from privacy import validation
from privacy.encrypted.model.ranges import RangePlan
from privacy.encrypted.model.ring import DTYPE, FixedPoint, as_signed
from privacy.encrypted.protocol.shares import reconstruct, share


class ResultRejected(RuntimeError):
    """No acceptable result: every attempt was asked to re-run, or the output left its proven range."""


class InputRefused(ResultRejected):
    """The parties' input check failed: the shares were out of bounds or inconsistent; nothing was released."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A reconstructed private prediction.

    Attributes:
        outputs: (batch, units) model outputs with the output activation applied by the client
            (probabilities for softmax/sigmoid models); None when only labels were requested.
        logits: (batch, units) pre-activation outputs; None when only labels were requested.
        labels: (batch,) predicted class (argmax of the logits, or logit > 0 for a single unit).
        attempts: how many runs it took (more than 1 after re-runs of some examples).
    """

    outputs: np.ndarray | None
    logits: np.ndarray | None
    labels: np.ndarray
    attempts: int = 1


def encode_input(x, input_shape: tuple, fixed: FixedPoint, ranges: RangePlan | None = None) -> np.ndarray:
    """Checks the shape (and the bounds of `ranges`) of a batch of inputs and encodes it (at the inputs'
    precision, `InputBounds.encode`, when `ranges` is given; else in the model's format).

    Raises:
        ValueError: naming the expected and the actual shape, or the encoding problem.
        InputOutOfBounds: if `ranges` is given and a value lies outside its input bounds.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != tuple(input_shape) or x.ndim != len(input_shape) + 1:
        raise ValueError(f"input has shape {x.shape}, expected (batch,) + {tuple(input_shape)}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    if ranges is None:
        return fixed.encode(x, what="input")
    encoded = ranges.input_bounds.encode(x, fixed)
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


def check_output_range(integers: np.ndarray, ranges: RangePlan) -> None:
    """Rejects reconstructed logits outside the model's proven output range.

    Raises:
        ResultRejected: if some |logit| >= 2^output_bits (in the logits' fixed-point units).
    """
    limit = 2**ranges.output_bits
    if np.any((integers < -limit) | (integers >= limit)):
        raise ResultRejected(
            "the reconstructed output lies outside the model's proven output range; "
            "result discarded (a party deviated from the protocol or the data was corrupted)"
        )


def _labels(result: np.ndarray, combine: str) -> np.ndarray:
    """Labels from the opened label head: a one-hot vector per example (argmax), a bit, or an index."""
    if result.ndim == 2:
        if np.any(result > 1) or np.any(result.sum(axis=1) != 1):
            raise ResultRejected(
                "the revealed label is not one-hot; result discarded (a party deviated from the "
                "protocol or the data was corrupted)"
            )
        return result.argmax(axis=1).astype(np.int64)
    return (result if combine == "xor" else as_signed(result)).astype(np.int64)


def reconstruct_prediction(
    shares: list, *, output: str, output_activation: str, ranges: RangePlan
) -> tuple[Prediction, np.ndarray]:
    """Combines the three parties' `OutputShare`s, checks the proven output range, decodes.

    Returns:
        The prediction, and per example whether some party withheld it (those rows are not valid).

    Raises:
        InputRefused: if the parties' input check failed.
        ResultRejected: if a logit lies outside the model's proven output range or a label is not one-hot.
    """
    reasons = [s.refused for s in shares if s.refused is not None]
    if reasons or any(s.values is None for s in shares):
        raise InputRefused(f"the parties refused the input: {reasons[0] if reasons else 'no output share'}")
    values = [np.asarray(s.values, dtype=DTYPE) for s in shares]
    withheld = np.zeros(len(values[0]), dtype=bool)
    for s in shares:
        if s.rerun is not None:
            withheld |= np.asarray(s.rerun, dtype=bool)
    combine = shares[0].combine
    result = (values[0] ^ values[1] ^ values[2]) if combine == "xor" else reconstruct(values)
    keep = ~withheld
    if output == "label":
        labels = np.zeros(len(result), dtype=np.int64)
        labels[keep] = _labels(result[keep], combine)
        return Prediction(None, None, labels), withheld
    integers = as_signed(result)
    check_output_range(integers[keep], ranges)
    logits = integers.astype(np.float64) / float(1 << shares[0].frac_bits)
    labels = (integers[..., 0] > 0).astype(np.int64) if logits.shape[-1] == 1 else integers.argmax(axis=-1)
    return Prediction(_activate(logits, output_activation), logits, labels), withheld


def predict_with_retries(
    run: Callable[[np.ndarray], list],
    batch: int,
    *,
    retries: int,
    output: str,
    output_activation: str,
    ranges: RangePlan,
) -> Prediction:
    """Reconstructs ``run(rows)``'s prediction, running the examples some party withheld again (fresh shares,
    fresh randomness), up to `retries` times.

    Args:
        run: one private prediction of the examples at indices `rows` from freshly shared input; returns
            the three `OutputShare`s.
        batch: the number of examples.
        retries: runs after the first one before giving up.

    Raises:
        ResultRejected: if an example was still withheld after 1 + `retries` runs.
    """
    validation.integer("retries", retries, minimum=0)
    rows, merged = np.arange(batch), None
    for attempt in range(retries + 1):
        prediction, withheld = reconstruct_prediction(
            run(rows), output=output, output_activation=output_activation, ranges=ranges
        )
        if merged is None:
            merged = prediction
        else:
            for field in ("outputs", "logits", "labels"):
                if getattr(merged, field) is not None:
                    getattr(merged, field)[rows[~withheld]] = getattr(prediction, field)[~withheld]
        rows = rows[withheld]
        if not len(rows):
            return dataclasses.replace(merged, attempts=attempt + 1)
    raise ResultRejected(
        f"{len(rows)} example(s) were withheld in all {retries + 1} attempts (a truncation's "
        f"randomness fell into its failure window, probability {ranges.rerun_probability:.2g} per "
        f"example, independent of the data); try again"
    )
