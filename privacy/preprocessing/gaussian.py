"""The Gaussian release every preprocessing mechanism is built on, and its dp-accounting event.

A mechanism sums bounded per-record contributions into a few blocks (a record count, a sum, a
histogram, ...) and adds independent Gaussian noise of standard deviation ``noise_std`` to every
coordinate of a block. If one record moves block i by at most ``sensitivity_i`` in L2 norm, the whole
release is the Gaussian mechanism with noise multiplier 1 / sqrt(sum_i (sensitivity_i / noise_std_i)^2)
(Dwork & Roth 2014, Thm A.1 in its Renyi form: the blocks' divergences add). That is what
`dp_event` records, so the release composes exactly, in dp-accounting's RDP and PLD accountants, with
everything else the artifact spent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from dp_accounting import dp_event

from privacy import validation


@dataclasses.dataclass(frozen=True)
class Component:
    """One noised block of a release.

    Attributes:
      name: e.g. 'count', 'sum'.
      sensitivity: the most one record (added, removed or replaced, per the mechanism's adjacency)
        moves the block, in L2 norm.
      noise_std: standard deviation of the Gaussian noise on each of its coordinates (0: exact).
    """

    name: str
    sensitivity: float
    noise_std: float

    def __post_init__(self):
        for field in ("sensitivity", "noise_std"):
            value = getattr(self, field)
            validation.number(f"component {self.name!r}: {field}", value, low=0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def allocate(
    sensitivities: Mapping[str, float], weights: Mapping[str, float], noise_multiplier: float
) -> tuple[Component, ...]:
    """Noise for each block so that the release's noise multiplier is ``noise_multiplier``.

    Block i gets noise_std_i = noise_multiplier * sensitivity_i / sqrt(w_i), where the weights w_i of the
    blocks that a record can move (sensitivity > 0) are renormalised to sum to 1: block i then carries
    the fraction w_i of the release's privacy loss. Blocks no record can move get no noise.
    """
    validation.positive("noise_multiplier", noise_multiplier)
    moved = {name: weights[name] for name, s in sensitivities.items() if s > 0}
    total = sum(moved.values())
    if not moved or total <= 0 or any(w <= 0 for w in moved.values()):
        raise ValueError(f"weights must be > 0 for every block a record can move, got {dict(weights)}")
    return tuple(
        Component(name, float(s), noise_multiplier * s / math.sqrt(moved[name] / total) if s > 0 else 0.0)
        for name, s in sensitivities.items()
    )


def noise_multiplier_of(components) -> float:
    """The release's noise multiplier (inf when no record moves anything, 0 when a moved block is exact)."""
    loss = 0.0
    for c in components:
        if c.sensitivity > 0:
            if c.noise_std == 0:
                return 0.0
            loss += (c.sensitivity / c.noise_std) ** 2
    return math.inf if loss == 0 else 1 / math.sqrt(loss)


def gaussian_event(noise_multiplier: float) -> dp_event.DpEvent:
    """The dp-accounting event of a Gaussian release (sensitivity folded into the noise multiplier).

    Accounted under dp-accounting's ADD_OR_REMOVE_ONE relation, or by its RDP accountant under
    REPLACE_ONE, a `GaussianDpEvent(m)` is a mean shift of 1/m standard deviations, which is what the
    folded form means; dp-accounting's PLD accountant reads it under REPLACE_ONE as twice that shift, an
    over-count (never an under-count). A release no record can move is a `NoOpDpEvent`; one with an
    exact block is `NonPrivateDpEvent` (infinite epsilon).
    """
    if noise_multiplier == math.inf:
        return dp_event.NoOpDpEvent()
    if noise_multiplier == 0:
        return dp_event.NonPrivateDpEvent()
    return dp_event.GaussianDpEvent(noise_multiplier)
