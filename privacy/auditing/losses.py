"""Per-example losses for audits, computed in numpy from labels and predicted probabilities."""

from __future__ import annotations

import numpy as np

EPSILON_PROBABILITY = 1e-7
"""Probabilities are clipped to [p, 1 - p] before the log, as Keras does."""


def per_example_cross_entropy(labels, probabilities) -> np.ndarray:
    """Cross-entropy loss of each example, in nats.

    Args:
      labels: shape [N] (or [N, 1]) integer class labels.
      probabilities: shape [N] or [N, 1] for a binary model (probability of class 1), or [N, K]
        class probabilities for K >= 2 classes.

    Returns:
      Float64 array of shape [N].

    Raises:
      ValueError: if shapes disagree, a label is not a valid class, or a probability is outside
        [0, 1] or not finite.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probabilities, dtype=np.float64)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape [N], got {labels.shape}")
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels but {probs.shape[0]} predictions")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
        raise ValueError("probabilities must be finite and in [0, 1]")
    if not np.all(labels == np.round(labels)):
        raise ValueError("labels must be integer class indices")
    labels = labels.astype(np.int64)
    probs = np.clip(probs, EPSILON_PROBABILITY, 1 - EPSILON_PROBABILITY)
    if probs.ndim == 1:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"binary labels must be 0 or 1, got {sorted(set(labels.tolist()) - {0, 1})[:5]}")
        return -np.where(labels == 1, np.log(probs), np.log1p(-probs))
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape [N], [N, 1] or [N, K], got {probs.shape}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= probs.shape[1]:
        raise ValueError(f"labels must be in [0, {probs.shape[1]}), got range [{labels.min()}, {labels.max()}]")
    return -np.log(probs[np.arange(len(labels)), labels])
