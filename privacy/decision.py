"""The push decision as a differentially private release: a noisy accuracy on a held-out split.

Whether a model is pushed depends on its accuracy on held-out records, which are private too. So the
decision is a release: the number of correct predictions c and the number of rows m each get Gaussian
noise of standard deviation ``std``, are rounded to integers (post-processing: no low-order bits of a
float draw are published) and only the noisy accuracy c~ / m~ is compared with the threshold.

Sensitivity: one record added, removed or replaced moves c by at most 1 and m by at most 1, so the pair
has L2 sensitivity sqrt(2) (sqrt(2) K for a privacy unit holding up to K records). The release is one
dp-accounting ``GaussianDpEvent`` with noise multiplier std / (sqrt(2) K); trainers reserve it in their
ledger (its noise is fixed before training) and compose it with their other events.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dp_accounting import dp_event

from privacy import validation
from privacy.accounting import AccountantKind, UnsupportedAccounting, epsilon_of
from privacy.preprocessing.noise import NoiseSource

MECHANISM = "noisy-accuracy"
SENSITIVITY = math.sqrt(2.0)
"""L2 sensitivity of (correct predictions, rows) to one record."""


class DecisionError(ValueError):
    """A push-decision setting or record is invalid."""


@dataclasses.dataclass(frozen=True)
class DecisionRelease:
    """What the decision published: the noisy counts and the noisy accuracy (in [0, 1])."""

    correct: int
    rows: int
    accuracy: float
    seeded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NoisyAccuracy:
    """Gaussian noise of ``std`` on each of (correct predictions, rows), for privacy units of up to
    ``group_size`` held-out records."""

    std: float
    group_size: int = 1

    def __post_init__(self):
        object.__setattr__(
            self, "std", validation.positive("the push decision's noise std", self.std, error=DecisionError)
        )
        object.__setattr__(
            self,
            "group_size",
            validation.integer("the push decision's group_size", self.group_size, minimum=1, error=DecisionError),
        )

    @classmethod
    def calibrate(cls, epsilon: float, delta: float, group_size: int = 1) -> "NoisyAccuracy":
        """The least noise (within 0.1%) whose release alone spends at most ``epsilon`` at ``delta`` (PLD); for
        epsilons past what PLD's grid guard lets it compose (thousands), the least noise it composes."""
        validation.positive("the push decision's epsilon", epsilon, error=DecisionError)
        validation.probability("the push decision's delta", delta, error=DecisionError)

        def spent(sigma: float) -> float:  # inf where PLD is not asked (its grid guard): more noise is tried
            try:
                return epsilon_of(dp_event.GaussianDpEvent(sigma), target_delta=delta, accountant=AccountantKind.PLD)
            except UnsupportedAccounting:
                return math.inf

        low, high = 1e-2, 1.0
        while spent(high) > epsilon:
            low, high = high, high * 2
            if high > 1e6:
                raise DecisionError(f"no noise reaches epsilon {epsilon:g} at delta {delta:g}")
        while high / low > 1.001:
            middle = math.sqrt(low * high)
            low, high = (low, middle) if spent(middle) <= epsilon else (middle, high)
        return cls(std=high * SENSITIVITY * group_size, group_size=group_size)

    @property
    def noise_multiplier(self) -> float:
        """std / L2 sensitivity (of a privacy unit's ``group_size`` records)."""
        return self.std / (SENSITIVITY * self.group_size)

    def event(self, group_size: int | None = None) -> dp_event.GaussianDpEvent:
        """The release's event for units of ``group_size`` records (default: this decision's)."""
        return dp_event.GaussianDpEvent(self.std / (SENSITIVITY * (group_size or self.group_size)))

    def release(self, correct: int, rows: int, source: NoiseSource | None = None) -> DecisionRelease:
        """The noisy counts of ``correct`` predictions out of ``rows`` held-out rows, and their ratio.

        Raises:
          DecisionError: for counts that are not integers with 0 <= correct <= rows.
        """
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (correct, rows)) or not (
            0 <= correct <= rows
        ):
            raise DecisionError(f"the decision needs integer counts 0 <= correct <= rows, got {correct!r}, {rows!r}")
        source = source or NoiseSource(stream=MECHANISM)
        noise = source.normal(self.std, 2)
        noisy_correct, noisy_rows = int(round(correct + noise[0])), int(round(rows + noise[1]))
        accuracy = min(1.0, max(0.0, noisy_correct / max(noisy_rows, 1)))
        return DecisionRelease(correct=noisy_correct, rows=noisy_rows, accuracy=accuracy, seeded=source.seeded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": MECHANISM,
            "std": self.std,
            "group_size": self.group_size,
            "sensitivity": f"L2 sqrt(2) x {self.group_size}: one record moves the correct count and the row "
            f"count by at most 1 each",
            "noise_multiplier": self.noise_multiplier,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NoisyAccuracy":
        try:
            if data["mechanism"] != MECHANISM:
                raise DecisionError(f"unknown push-decision mechanism {data['mechanism']!r}")
            return cls(std=float(data["std"]), group_size=int(data.get("group_size", 1)))
        except (KeyError, TypeError) as err:
            raise DecisionError(f"malformed push-decision record: {err}") from None


__all__ = ["DecisionError", "DecisionRelease", "MECHANISM", "NoisyAccuracy", "SENSITIVITY"]
