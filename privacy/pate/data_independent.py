"""The data-independent guarantee of GNMax and Confident-GNMax, through dp-accounting.

When one teacher's partition changes, that teacher may move its vote from one class to another: the vote
histogram changes by -1 and +1 in two classes, an L2 change of sqrt(2). GNMax adds N(0, sigma^2) to every
count and releases the argmax (post-processing), so one query is a Gaussian mechanism with noise multiplier
sigma / sqrt(2), i.e. (alpha, alpha / sigma^2)-RDP (the paper's Proposition 8). Confident-GNMax's selection
step adds N(0, sigma1^2) to the maximum count, which moves by at most 1: noise multiplier sigma1,
(alpha, alpha / (2 sigma1^2))-RDP; every query pays it, answered or not.

The GNMax step is charged for the answered queries, up to ``max_answered`` when the aggregator declares a
cap: the answered set depends on earlier outputs only, and an RDP filter with a budget fixed in advance
(Feldman & Zrnic 2021, "Individual Privacy Accounting via a Renyi Filter") covers such adaptively chosen
steps. Without a cap the bound charges every query (the worst case a filter fixed in advance allows).
"""

from __future__ import annotations

import math

import numpy as np
from dp_accounting import dp_event

from privacy import validation
from privacy.accounting import AccountantKind, NeighboringRelation, epsilon_of
from privacy.pate.aggregators import Aggregator, ConfidentGNMax, GNMax
from privacy.pate.votes import PateConfigurationError

VOTE_SENSITIVITY = math.sqrt(2.0)
"""L2 change of one query's vote histogram when one teacher changes its vote."""

RELATION = NeighboringRelation.REPLACE_ONE
"""At the vote level a neighbour is always a replaced vote (one teacher's partition changed)."""


def gnmax_query_event(sigma: float) -> dp_event.GaussianDpEvent:
    """One GNMax answer: Gaussian mechanism on the histogram, noise multiplier sigma / sqrt(2)."""
    return dp_event.GaussianDpEvent(noise_multiplier=sigma / VOTE_SENSITIVITY)


def selection_event(sigma1: float) -> dp_event.GaussianDpEvent:
    """One Confident-GNMax selection step: Gaussian noise on the maximum count (sensitivity 1)."""
    return dp_event.GaussianDpEvent(noise_multiplier=sigma1)


def charged_answers(aggregator: Aggregator, queries: int) -> int:
    """How many GNMax steps the data-independent guarantee charges for ``queries`` queries."""
    if isinstance(aggregator, ConfidentGNMax) and aggregator.max_answered is not None:
        return min(queries, aggregator.max_answered)
    return queries


def pate_dp_event(aggregator: Aggregator, queries: int) -> dp_event.DpEvent:
    """The dp-accounting event of ``queries`` queries to ``aggregator`` (see the module docstring)."""
    validation.integer("queries", queries, minimum=1, error=PateConfigurationError)
    if isinstance(aggregator, GNMax):
        return dp_event.SelfComposedDpEvent(gnmax_query_event(aggregator.sigma), queries)
    if isinstance(aggregator, ConfidentGNMax):
        return dp_event.ComposedDpEvent(
            [
                dp_event.SelfComposedDpEvent(selection_event(aggregator.sigma1), queries),
                dp_event.SelfComposedDpEvent(
                    gnmax_query_event(aggregator.sigma2), charged_answers(aggregator, queries)
                ),
            ]
        )
    raise TypeError(f"not a PATE aggregator: {aggregator!r}")


def data_independent_epsilon(aggregator: Aggregator, queries: int, delta: float) -> float:
    """Epsilon at ``delta`` from dp-accounting's RDP accountant: the guarantee, per teacher.

    Raises PateConfigurationError where the noise is so small that no finite epsilon holds.
    """
    validation.probability("delta", delta, error=PateConfigurationError)
    with np.errstate(divide="ignore", over="ignore"):  # a tiny sigma: infinite RDP, refused below
        epsilon = epsilon_of(
            pate_dp_event(aggregator, queries), target_delta=delta, accountant=AccountantKind.RDP, relation=RELATION
        )
    if not math.isfinite(epsilon):
        raise PateConfigurationError(
            f"the noise of {aggregator.to_json()} is too small for any finite epsilon over {queries} queries"
        )
    return epsilon
