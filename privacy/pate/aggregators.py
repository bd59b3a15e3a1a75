"""The noisy aggregators of PATE (Papernot et al. 2018, Section 4): GNMax and Confident-GNMax.

GNMax answers every query with argmax_j (n_j + N(0, sigma^2)). Confident-GNMax first checks, with
noise, that the teachers agree: it answers only if max_j n_j + N(0, sigma1^2) >= threshold, and then
answers with GNMax at sigma2. Unanswered queries release that they were not answered, so they still pay
for the selection step. Noise comes from `privacy.preprocessing.noise.NoiseSource` (CSPRNG-keyed unless
a seed is given, which only tests should do).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

import numpy as np

from privacy import validation
from privacy.pate.votes import MAX_NOISE, PateConfigurationError, check_noise, check_votes
from privacy.preprocessing.noise import NoiseSource

UNANSWERED = -1
"""The label of a query Confident-GNMax did not answer."""


@dataclasses.dataclass(frozen=True)
class GNMax:
    """Gaussian NoisyMax: every query gets argmax_j (n_j + N(0, sigma^2)); sigma in votes."""

    sigma: float

    name = "gnmax"

    def __post_init__(self):
        object.__setattr__(self, "sigma", check_noise("sigma", self.sigma))

    def aggregate(self, votes, *, seed: int | None = None) -> "VoteHistory":
        votes = check_votes(votes)
        noise = NoiseSource(seed, stream="pate-gnmax")
        labels = _noisy_argmax(votes, self.sigma, noise)
        return VoteHistory(self, votes, np.ones(len(votes), dtype=bool), labels, noise.description)

    def to_json(self) -> dict[str, Any]:
        return {"mechanism": self.name, "sigma": self.sigma}


@dataclasses.dataclass(frozen=True)
class ConfidentGNMax:
    """Confident-GNMax: answer iff max_j n_j + N(0, sigma1^2) >= threshold, then GNMax with sigma2.

    ``max_answered`` (default: no cap) stops answering once that many queries were answered; it is fixed
    before any vote is seen, and the data-independent guarantee charges the GNMax step that many times.
    """

    threshold: float
    sigma1: float
    sigma2: float
    max_answered: int | None = None

    name = "confident_gnmax"

    def __post_init__(self):
        threshold = self.threshold
        threshold = validation.number(
            "threshold", threshold, low=0, high=MAX_NOISE, note="votes", error=PateConfigurationError
        )
        object.__setattr__(self, "threshold", float(threshold))
        object.__setattr__(self, "sigma1", check_noise("sigma1", self.sigma1))
        object.__setattr__(self, "sigma2", check_noise("sigma2", self.sigma2))
        cap = self.max_answered
        if cap is not None:
            validation.integer("max_answered", cap, minimum=1, note="or None", error=PateConfigurationError)

    def aggregate(self, votes, *, seed: int | None = None) -> "VoteHistory":
        votes = check_votes(votes)
        noise = NoiseSource(seed, stream="pate-confident-gnmax")
        noisy_max = votes.max(axis=1) + noise.normal(self.sigma1, size=len(votes))
        answered = noisy_max >= self.threshold
        if self.max_answered is not None:
            answered &= np.cumsum(answered) <= self.max_answered
        labels = np.full(len(votes), UNANSWERED, dtype=np.int64)
        labels[answered] = _noisy_argmax(votes[answered], self.sigma2, noise)
        return VoteHistory(self, votes, answered, labels, noise.description)

    def to_json(self) -> dict[str, Any]:
        return {
            "mechanism": self.name,
            "threshold": self.threshold,
            "sigma1": self.sigma1,
            "sigma2": self.sigma2,
            "max_answered": self.max_answered,
        }


Aggregator = Union[GNMax, ConfidentGNMax]


def make_aggregator(data: dict[str, Any]) -> Aggregator:
    """The aggregator a ``to_json()`` dict describes; PateConfigurationError names what is wrong."""
    if not isinstance(data, dict):
        raise PateConfigurationError(f"aggregator must be an object, got {data!r}")
    fields = {k: v for k, v in data.items() if k != "mechanism"}
    kinds = {GNMax.name: GNMax, ConfidentGNMax.name: ConfidentGNMax}
    kind = kinds.get(data.get("mechanism"))
    if kind is None:
        raise PateConfigurationError(f"mechanism must be one of {sorted(kinds)}, got {data.get('mechanism')!r}")
    try:
        return kind(**fields)
    except TypeError as err:
        raise PateConfigurationError(f"bad settings for {kind.name}: {err}") from None


def _noisy_argmax(votes: np.ndarray, sigma: float, noise: NoiseSource) -> np.ndarray:
    if len(votes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.argmax(votes + noise.normal(sigma, size=votes.shape), axis=1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class VoteHistory:
    """What one aggregation ran: the private votes, which queries were answered, and the released labels.

    The votes are the teachers' private data: write a history only where the private data may go.
    """

    aggregator: Aggregator
    votes: np.ndarray
    answered: np.ndarray
    labels: np.ndarray
    noise: str

    def __post_init__(self):
        votes = check_votes(self.votes)
        answered = np.asarray(self.answered)
        labels = np.asarray(self.labels)
        if answered.shape != (len(votes),) or answered.dtype != bool:
            raise PateConfigurationError(
                f"answered must be {len(votes)} booleans, got {answered.shape} {answered.dtype}"
            )
        if labels.shape != (len(votes),):
            raise PateConfigurationError(f"labels must have {len(votes)} entries, got {labels.shape}")
        if isinstance(self.aggregator, GNMax) and not answered.all():
            raise PateConfigurationError("GNMax answers every query, but the history has unanswered ones")
        cap = getattr(self.aggregator, "max_answered", None)
        if cap is not None and answered.sum() > cap:
            raise PateConfigurationError(
                f"the history has {int(answered.sum())} answers, more than the cap max_answered={cap}"
            )
        object.__setattr__(self, "votes", votes)

    @property
    def num_teachers(self) -> int:
        return int(self.votes[0].sum())

    @property
    def num_answered(self) -> int:
        return int(self.answered.sum())

    def to_json(self) -> dict[str, Any]:
        return {
            "aggregator": self.aggregator.to_json(),
            "votes": self.votes.tolist(),
            "answered": self.answered.tolist(),
            "labels": self.labels.tolist(),
            "noise": self.noise,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VoteHistory":
        if not isinstance(data, dict) or not {"aggregator", "votes", "answered"} <= set(data):
            raise PateConfigurationError("a vote history needs 'aggregator', 'votes' and 'answered'")
        answered = data["answered"]
        if not isinstance(answered, list) or not all(isinstance(a, bool) for a in answered):
            raise PateConfigurationError("'answered' must be a list of true/false")
        labels = data.get("labels", [UNANSWERED] * len(answered))
        return cls(
            make_aggregator(data["aggregator"]),
            np.asarray(data["votes"]),
            np.asarray(answered, dtype=bool),
            np.asarray(labels),
            str(data.get("noise", "unknown")),
        )
