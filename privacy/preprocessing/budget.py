"""The preprocessing part of an artifact's budget, and each mechanism's share of it.

All preprocessing mechanisms are Gaussian releases, and Gaussian mechanisms compose exactly: releases
with noise multipliers m_i together are one Gaussian release with multiplier (sum_i m_i^-2)^-1/2. So
the budget fixes one noise multiplier m for the whole preprocessing (the smallest whose epsilon,
alone, is at most ``epsilon`` at ``delta``), and a mechanism with share w gets m / sqrt(w): shares
that sum to 1 spend exactly the preprocessing budget. What the artifact reports is always recomputed
from the events actually recorded, never from the shares.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import dp_accounting
from dp_accounting import dp_event

from privacy import validation
from privacy.accounting import AccountantKind, Adjacency, make_accountant


@dataclasses.dataclass(frozen=True)
class PreprocessingBudget:
    """(epsilon, delta) for all preprocessing mechanisms together, under one adjacency.

    Attributes:
      epsilon: the preprocessing's epsilon when accounted alone (> 0).
      delta: the delta it is calibrated at, in (0, 1).
      adjacency: which datasets are neighbours: add-remove (the record count is noised too) or
        replace-one (the count is public and released exactly).
      accountant: the accountant that calibrates the noise ('rdp' or 'pld').
    """

    epsilon: float
    delta: float
    adjacency: Adjacency = Adjacency.ADD_REMOVE
    accountant: AccountantKind = AccountantKind.RDP

    def __post_init__(self):
        object.__setattr__(self, "epsilon", validation.positive("preprocessing epsilon", self.epsilon))
        object.__setattr__(self, "delta", validation.probability("preprocessing delta", self.delta))
        object.__setattr__(self, "adjacency", Adjacency(self.adjacency))
        object.__setattr__(self, "accountant", AccountantKind(self.accountant))

    @functools.cached_property
    def noise_multiplier(self) -> float:
        """m: the Gaussian noise multiplier of all preprocessing releases together."""
        return dp_accounting.calibrate_dp_mechanism(
            lambda: make_accountant(self.accountant),
            dp_event.GaussianDpEvent,
            self.epsilon,
            self.delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
            tol=1e-6,
        )

    def noise_multiplier_for(self, share: float) -> float:
        """m / sqrt(share): the noise multiplier of a mechanism that spends ``share`` of the budget."""
        check_share(share)
        return self.noise_multiplier / math.sqrt(share)


def check_share(share) -> float:
    """A share in (0, 1]; else ValueError naming the value."""
    return float(validation.probability("share", share, one=True, note="a fraction of the preprocessing budget"))
