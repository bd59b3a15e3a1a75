"""The privacy report of a PATE aggregation: every epsilon with the analysis that gave it.

- ``data_independent``: the guarantee. dp-accounting's RDP accountant over the Gaussian events of
  `privacy.pate.data_independent`; it depends on (teachers' noise, queries, answer cap) only.
- ``smoothed_data_dependent``: the paper's data-dependent RDP released through smooth sensitivity
  (`privacy.pate.smooth_sensitivity`): a noisy number that includes the release's own cost. It is a
  differentially private estimate of a tighter bound, reported beside the guarantee, never instead of it.

The unnoised data-dependent epsilon is never part of a report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from privacy.accounting import dp_accounting_version, event_to_json
from privacy.pate.aggregators import VoteHistory
from privacy.pate.data_independent import data_independent_epsilon, pate_dp_event
from privacy.pate.smooth_sensitivity import SmoothedEpsilon, SmoothSensitivityRelease
from privacy.pate.votes import PateConfigurationError

DATA_INDEPENDENT = ("data-independent RDP (Papernot et al. 2018, Prop. 8), composed by dp_accounting.rdp.RdpAccountant "
                    "over Gaussian events")
SMOOTHED = ("data-dependent RDP (Papernot et al. 2018, Thm 6 / Prop. 7) released through smooth sensitivity "
            "(GNSS, Thm 23; noisy, includes the release's cost; classic RDP-to-DP conversion)")
UNIT = ("one teacher's partition (so one record, or one holder when partitioned by holder key); the public "
        "unlabeled query set is assumed public")


@dataclasses.dataclass(frozen=True)
class PateReport:
    """Epsilons of one aggregation, each named by its analysis; ``epsilon`` is the guarantee."""

    aggregator: dict[str, Any]
    teachers: int
    classes: int
    queries: int
    answered: int
    delta: float
    epsilon: float
    smoothed: SmoothedEpsilon | None
    smoothed_refused: str | None
    event: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        out = {"aggregator": self.aggregator, "teachers": self.teachers, "classes": self.classes,
               "queries": self.queries, "answered": self.answered, "delta": self.delta, "privacy_unit": UNIT,
               "guarantee": {"epsilon": self.epsilon, "analysis": DATA_INDEPENDENT, "dp_event": self.event,
                             "dp_accounting": dp_accounting_version()}}
        if self.smoothed is not None:
            settings = self.smoothed.settings
            out["smoothed_data_dependent"] = {
                "epsilon": self.smoothed.epsilon, "analysis": SMOOTHED, "order": settings.order,
                "beta": settings.beta, "sigma_ss": settings.sigma_ss, "noise": self.smoothed.noise}
        elif self.smoothed_refused:
            out["smoothed_data_dependent"] = {"refused": self.smoothed_refused}
        return out

    def lines(self) -> list[str]:
        """The report as text lines."""
        name = self.aggregator["mechanism"]
        out = [f"PATE {name}: {self.teachers} teachers, {self.classes} classes, {self.queries} queries, "
               f"{self.answered} answered",
               f"privacy unit: {UNIT}",
               f"guarantee: epsilon = {self.epsilon:.4f} at delta = {self.delta:g}  [{DATA_INDEPENDENT}]"]
        if self.smoothed is not None:
            s = self.smoothed.settings
            out.append(f"smoothed data-dependent: epsilon = {self.smoothed.epsilon:.4f} at delta = {self.delta:g} "
                       f"(order {s.order:g}, beta {s.beta:g}, sigma_ss {s.sigma_ss:g})  [{SMOOTHED}]")
        elif self.smoothed_refused:
            out.append(f"smoothed data-dependent: not released ({self.smoothed_refused})")
        return out


def analyze(history: VoteHistory, delta: float, *, release: SmoothSensitivityRelease | None = None,
            seed: int | None = None) -> PateReport:
    """The report of ``history``; with ``release``, also its smoothed data-dependent epsilon (``seed``: tests)."""
    if not 0 < delta < 1:
        raise PateConfigurationError(f"delta must be in (0, 1), got {delta!r}")
    queries = len(history.votes)
    aggregator = history.aggregator
    smoothed, refused = None, None
    if release is not None:
        try:
            smoothed = release.release(history, delta, seed=seed)
        except PateConfigurationError as err:
            refused = str(err)
    return PateReport(aggregator=aggregator.to_json(), teachers=history.num_teachers,
                      classes=int(history.votes.shape[1]), queries=queries, answered=history.num_answered,
                      delta=delta, epsilon=data_independent_epsilon(aggregator, queries, delta), smoothed=smoothed,
                      smoothed_refused=refused, event=event_to_json(pate_dp_event(aggregator, queries)))

