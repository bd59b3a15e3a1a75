"""The client's side of a private prediction: share the input, reconstruct and check the output.

The client encodes its input in fixed point, splits it into replicated shares (one pair per party)
and later sums the three output shares it gets back. It alone sees the result. It also reconstructs
the overflow monitor's words: any nonzero word means a probabilistic truncation failed somewhere (or
a value left the representable range), and the prediction is rejected with `OverflowDetected`
instead of returning a wrong answer; a fresh run uses fresh randomness and almost surely succeeds.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from privacy.encrypted.ring import FixedPoint
from privacy.encrypted.shares import reconstruct, reconstruct_xor, share


class OverflowDetected(RuntimeError):
    """The overflow monitor fired: the shared computation left its range; the result was discarded."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A reconstructed private prediction.

    Attributes:
        outputs: (batch, units) model outputs with the output activation applied by the client
            (probabilities for softmax/sigmoid models); None when only labels were requested.
        logits: (batch, units) pre-activation outputs; None when only labels were requested.
        labels: (batch,) predicted class (argmax of the logits, or logit > 0 for a single unit).
    """

    outputs: np.ndarray | None
    logits: np.ndarray | None
    labels: np.ndarray


def encode_input(x, input_shape: tuple, fixed: FixedPoint) -> np.ndarray:
    """Checks the shape of a batch of inputs and encodes it.

    Raises:
        ValueError: naming the expected and the actual shape, or the range problem.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != tuple(input_shape) or x.ndim != len(input_shape) + 1:
        raise ValueError(f"input has shape {x.shape}, expected (batch,) + {tuple(input_shape)}")
    if x.shape[0] == 0:
        raise ValueError("input batch is empty")
    return fixed.encode(x, what="input")


def share_input(x, input_shape: tuple, fixed: FixedPoint) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoded, replicated shares of a batch of inputs; element i goes to party i."""
    return share(encode_input(x, input_shape, fixed))


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "softmax":
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def reconstruct_prediction(values: list[np.ndarray], overflow: list[np.ndarray], *, output: str,
                           output_activation: str, fixed: FixedPoint) -> Prediction:
    """Sums the parties' output shares, checks the overflow monitor, decodes.

    Raises:
        OverflowDetected: if any monitor word is nonzero.
    """
    words = reconstruct_xor(overflow)
    if np.any(words):
        raise OverflowDetected(f"{int(np.count_nonzero(words))} compared value(s) left the representable range "
                               f"(a probabilistic truncation failed or activations are too large); result discarded")
    result = reconstruct(values)
    if output == "label":
        return Prediction(None, None, result.view(np.int64).astype(np.int64))
    logits = fixed.decode(result)
    if np.any(np.abs(logits) > fixed.max_abs):
        raise OverflowDetected("an output left the representable range (a probabilistic truncation failed); "
                               "result discarded")
    outputs = _activate(logits, output_activation)
    labels = (logits[..., 0] > 0).astype(np.int64) if logits.shape[-1] == 1 else logits.argmax(axis=-1)
    return Prediction(outputs, logits, labels)


def predict_with_retries(run: Callable[[], tuple[list[np.ndarray], list[np.ndarray]]], *, retries: int, output: str,
                         output_activation: str, fixed: FixedPoint) -> Prediction:
    """Reconstructs ``run()``'s prediction, running it again (with fresh randomness) if the overflow monitor fires.

    Args:
        run: one private prediction from freshly shared input; returns the parties' output shares and
            overflow words (see `reconstruct_prediction`).
        retries: runs after the first one before giving up.

    Raises:
        OverflowDetected: if all 1 + `retries` runs overflowed.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    for attempt in range(retries + 1):
        values, overflow = run()
        try:
            return reconstruct_prediction(values, overflow, output=output, output_activation=output_activation,
                                          fixed=fixed)
        except OverflowDetected:
            if attempt == retries:
                raise
