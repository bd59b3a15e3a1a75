"""How large dp-accounting's PLD grid for an event would be, checked before the PLD accountant composes it.

dp-accounting discretises each Gaussian or Laplace event's privacy loss on a grid of
`PLD_VALUE_DISCRETIZATION_INTERVAL`: a Gaussian of noise multiplier s (its tails cut where e^-50 of the mass
lies, about 10 s out; sensitivity 1, or 2 when a record is replaced) loses between +-(10 * 2 / s + 2^2 / s^2) / 2
at most, so its grid holds about (20 / s + 4 / s^2) / 1e-4 values (s = 0.1: 3 million, 6 s; s = 0.03: 18 million,
40 s; s = 1e-6: 1e16, more than any memory). A Laplace of scale b self-composed c times spans c * 2 / b.
`grid_reason` refuses events whose grid would exceed `PLD_MAX_GRID_VALUES`; the DP-SGD steps' own limits (number
of steps, epsilon) are `DpSgdMechanism.cost_reason`'s.
"""

from __future__ import annotations

import math

import dp_accounting
from dp_accounting import dp_event

NeighboringRelation = dp_accounting.NeighboringRelation

PLD_VALUE_DISCRETIZATION_INTERVAL = 1e-4
"""dp-accounting's default grid for privacy-loss values; results are pessimistic (upper bounds)."""
PLD_MAX_GRID_VALUES = 10**8
"""Most privacy-loss values PLD is asked to hold for one event (10^8 float64: 0.8 GB per array, minutes)."""
_TAIL_STDS = math.sqrt(2 * 50)  # dp-accounting cuts a Gaussian's tails where e^-50 of the mass lies


def grid_reason(event: dp_event.DpEvent, relation: NeighboringRelation) -> str | None:
    """Why dp-accounting's PLD accountant is not asked to compose ``event`` under ``relation`` (one of its
    Gaussian or Laplace events needs a grid of more than `PLD_MAX_GRID_VALUES` values), or None."""
    for leaf, count in _leaves(event, 1):
        if isinstance(leaf, dp_event.GaussianDpEvent) and leaf.noise_multiplier > 0:
            # dp-accounting composes count Gaussians as one of noise multiplier s / sqrt(count)
            values = gaussian_grid_values(leaf.noise_multiplier / math.sqrt(count), relation)
        elif isinstance(leaf, dp_event.LaplaceDpEvent) and leaf.noise_multiplier > 0:
            values = count * 2 / leaf.noise_multiplier / PLD_VALUE_DISCRETIZATION_INTERVAL
        else:
            continue
        if values > PLD_MAX_GRID_VALUES:
            return (
                f"PLD is not asked to compose a {type(leaf).__name__} of noise multiplier {leaf.noise_multiplier:.3g}"
                f"{f' x {count}' if count > 1 else ''}: its privacy-loss grid would hold about {values:.1e} values "
                f"(more than {PLD_MAX_GRID_VALUES:.0e}: gigabytes and minutes, the noise too small for its "
                f"discretisation)"
            )
    return None


def gaussian_grid_values(
    standard_deviation: float, relation: NeighboringRelation, interval: float = PLD_VALUE_DISCRETIZATION_INTERVAL
) -> float:
    """About how many values the PLD grid (of ``interval``) of a Gaussian of ``standard_deviation`` (sensitivity 1)
    holds."""
    shift = 2.0 if relation is NeighboringRelation.REPLACE_ONE else 1.0
    s = standard_deviation
    return (2 * _TAIL_STDS * shift / s + (shift / s) ** 2) / interval


def _leaves(event: dp_event.DpEvent, count: int):
    """(Gaussian or Laplace event, times dp-accounting composes it at once) in ``event``; a Poisson-sampled
    Gaussian's grid is at most its Gaussian's, composed step by step (count 1)."""
    if isinstance(event, dp_event.SelfComposedDpEvent):
        yield from _leaves(event.event, event.count * count)
    elif isinstance(event, dp_event.ComposedDpEvent):
        for part in event.events:
            yield from _leaves(part, count)
    elif isinstance(event, dp_event.PoissonSampledDpEvent):
        yield from _leaves(event.event, 1)
    elif isinstance(event, (dp_event.GaussianDpEvent, dp_event.LaplaceDpEvent)):
        yield event, count
