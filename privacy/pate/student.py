"""Self-training of the PATE student on the public queries the aggregator did not answer (no Keras here).

The student is first fitted on the answered queries and the aggregator's labels. In each of ``rounds`` rounds it
then labels every unanswered query with its own prediction, keeps those whose predicted probability is at least
``confidence`` (fixed before the run), and is fitted again, from its seeded initialisation, on the answered
queries with their released labels plus these pseudo-labelled ones. Answered queries keep the aggregator's labels.

Privacy: this is post-processing. Its inputs are the public queries' features, the aggregator's released output
(which queries it answered, and their labels) and the seed; no private record and no vote enters it. The
epsilon of a run is therefore the same with and without it, and no event is charged for it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from privacy import validation
from privacy.pate.votes import PateConfigurationError

DEFAULT_CONFIDENCE = 0.9
DEFAULT_ROUNDS = 2


@dataclasses.dataclass(frozen=True)
class SelfTraining:
    """Pseudo-labelling settings: ``confidence`` in (0, 1] (a predicted probability), ``rounds`` in 1..100."""

    confidence: float = DEFAULT_CONFIDENCE
    rounds: int = DEFAULT_ROUNDS

    def __post_init__(self):
        validation.probability("confidence", self.confidence, one=True, error=PateConfigurationError)
        validation.integer("rounds", self.rounds, minimum=1, maximum=100, error=PateConfigurationError)

    def to_json(self) -> dict:
        return {"method": "self-training", "confidence": float(self.confidence), "rounds": self.rounds}


def pseudo_labels(probabilities: np.ndarray, answered: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels): the unanswered queries whose largest predicted probability is >= ``confidence``, and
    their predicted classes. ``probabilities`` is (queries, classes); ``answered`` the aggregator's mask."""
    probabilities = np.asarray(probabilities)
    answered = np.asarray(answered, dtype=bool)
    if probabilities.ndim != 2 or answered.shape != (len(probabilities),):
        raise PateConfigurationError(f"probabilities {probabilities.shape} and answered {answered.shape} do not match")
    rows = np.flatnonzero(~answered & (probabilities.max(axis=1) >= confidence))
    return rows, np.argmax(probabilities[rows], axis=1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class StudentTraining:
    """What the student was trained on: ``self_training`` None for answered queries only; ``pseudo_labelled``
    the query rows pseudo-labelled in the last round (public queries only, never an answered one)."""

    self_training: SelfTraining | None
    answered: int
    pseudo_labelled: np.ndarray

    def to_json(self) -> dict:
        """Public facts for reports: which training ran, on how many released and pseudo labels."""
        method = self.self_training.to_json() if self.self_training else {"method": "supervised"}
        return {
            **method,
            "answered_labels": self.answered,
            "pseudo_labels": int(len(self.pseudo_labelled)),
            "privacy": "post-processing of the released labels and public queries: no privacy cost",
        }
