"""The privacy report of a PATE aggregation: every epsilon with the analysis that gave it.

- ``guarantee``: what the report as a whole costs. Without a smoothed release it is the labels' data-independent
  epsilon (dp-accounting's RDP accountant over the Gaussian events of `privacy.pate.data_independent`; it depends
  on the teachers' noise, queries and answer cap only). With one, the report publishes a second data-dependent
  thing, so the guarantee composes the labels' RDP curve with the release's (Theorem 23, at the orders in
  (1, 1/(2b))); the labels' epsilon alone is reported beside it, named as such.
- ``smoothed_data_dependent``: the paper's data-dependent RDP released through smooth sensitivity
  (`privacy.pate.smooth_sensitivity`), made once per vote history: a noisy number that includes the release's
  own cost, a differentially private estimate of a tighter bound, reported beside the guarantee.

The unnoised data-dependent epsilon is never part of a report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant

from privacy import validation
from privacy.accounting import dp_accounting_version, event_to_json
from privacy.accounting.accountants import CheckedRdpAccountant, rdp_epsilon
from privacy.pate.aggregators import Aggregator, VoteHistory
from privacy.pate.data_independent import RELATION, data_independent_epsilon, pate_dp_event
from privacy.pate.smooth_sensitivity import SmoothedRdp, SmoothSensitivityRelease, gnss_rdp
from privacy.pate.votes import PateConfigurationError

DATA_INDEPENDENT = (
    "data-independent RDP (Papernot et al. 2018, Prop. 8), composed by dp_accounting.rdp.RdpAccountant "
    "over Gaussian events"
)
COMPOSED = (
    "the labels' data-independent RDP (Prop. 8, dp_accounting.rdp.RdpAccountant) composed with the "
    "smoothed release's RDP (GNSS, Thm 23) at orders in (1, 1/(2 beta))"
)
SMOOTHED = (
    "data-dependent RDP (Papernot et al. 2018, Thm 6 / Prop. 7) released through smooth sensitivity "
    "(GNSS, Thm 23; noisy, includes the release's cost; classic RDP-to-DP conversion)"
)
UNIT = (
    "add/remove one record of one teacher's partition (one teacher's votes change; one holder when partitioned "
    "by holder key); replacing a record can move it to another teacher, i.e. two teachers: twice the unit; the "
    "public unlabeled query set is assumed public"
)


def composition_orders(beta: float) -> np.ndarray:
    """RDP orders at which the labels and a smoothed release of smoothness ``beta`` are composed: dp-accounting's
    default orders and a grid of 200, all in (1, 1/(2 beta)), where Theorem 23 holds."""
    top = 1 / (2 * beta)
    grid = np.concatenate([rdp_privacy_accountant.DEFAULT_RDP_ORDERS, np.linspace(1, top, 202)[1:-1]])
    return np.unique(grid[(grid > 1) & (grid < top)])


def composed_epsilon(
    aggregator: Aggregator, queries: int, release: SmoothSensitivityRelease, delta: float, prior=()
) -> float:
    """Epsilon at ``delta`` of the labels together with one smoothed release made with ``release``'s settings
    (and the dp-accounting events ``prior``, e.g. a pipeline's push decision, composed first)."""
    orders = composition_orders(release.beta)
    accountant = CheckedRdpAccountant(orders=list(orders), neighboring_relation=RELATION)
    for event in prior:
        accountant.compose(event)
    accountant.compose(pate_dp_event(aggregator, queries))
    labels = np.asarray(accountant._rdp)
    rdp = labels + [gnss_rdp(release.beta, release.sigma_ss, o) for o in orders]
    return rdp_epsilon(orders, rdp, delta)[0]


@dataclasses.dataclass(frozen=True)
class PateReport:
    """Epsilons of one aggregation, each named by its analysis; ``epsilon`` is the guarantee of the whole report,
    ``labels_epsilon`` the labels' alone."""

    aggregator: dict[str, Any]
    teachers: int
    classes: int
    queries: int
    answered: int
    delta: float
    epsilon: float
    labels_epsilon: float
    smoothed: SmoothedRdp | None
    smoothed_refused: str | None
    event: dict[str, Any]

    @property
    def analysis(self) -> str:
        return COMPOSED if self.smoothed is not None else DATA_INDEPENDENT

    def to_json(self) -> dict[str, Any]:
        out = {
            "aggregator": self.aggregator,
            "teachers": self.teachers,
            "classes": self.classes,
            "queries": self.queries,
            "answered": self.answered,
            "delta": self.delta,
            "privacy_unit": UNIT,
            "guarantee": {
                "epsilon": self.epsilon,
                "analysis": self.analysis,
                "labels_epsilon": self.labels_epsilon,
                "labels_analysis": DATA_INDEPENDENT,
                "dp_event": self.event,
                "dp_accounting": dp_accounting_version(),
            },
        }
        if self.smoothed is not None:
            settings = self.smoothed.settings
            out["smoothed_data_dependent"] = {
                "epsilon": self.smoothed.epsilon(self.delta),
                "analysis": SMOOTHED,
                "order": settings.order,
                "beta": settings.beta,
                "sigma_ss": settings.sigma_ss,
                "noise": self.smoothed.noise,
            }
        elif self.smoothed_refused:
            out["smoothed_data_dependent"] = {"refused": self.smoothed_refused}
        return out

    def lines(self) -> list[str]:
        """The report as text lines."""
        name = self.aggregator["mechanism"]
        out = [
            f"PATE {name}: {self.teachers} teachers, {self.classes} classes, {self.queries} queries, "
            f"{self.answered} answered",
            f"privacy unit: {UNIT}",
            f"guarantee: epsilon = {self.epsilon:.4f} at delta = {self.delta:g}  [{self.analysis}]",
        ]
        if self.smoothed is not None:
            s = self.smoothed.settings
            out += [
                f"labels only: epsilon = {self.labels_epsilon:.4f} at delta = {self.delta:g}  [{DATA_INDEPENDENT}]",
                f"smoothed data-dependent: epsilon = {self.smoothed.epsilon(self.delta):.4f} at delta = "
                f"{self.delta:g} (order {s.order:g}, beta {s.beta:g}, sigma_ss {s.sigma_ss:g})  [{SMOOTHED}]",
            ]
        elif self.smoothed_refused:
            out.append(f"smoothed data-dependent: not released ({self.smoothed_refused})")
        return out


def analyze(
    history: VoteHistory, delta: float, *, smoothed: SmoothedRdp | None = None, smoothed_refused: str | None = None
) -> PateReport:
    """The report of ``history``, with its one smoothed release (`SmoothSensitivityRelease.release`) if made,
    or why none was."""
    validation.probability("delta", delta, error=PateConfigurationError)
    queries = len(history.votes)
    aggregator = history.aggregator
    labels = data_independent_epsilon(aggregator, queries, delta)
    epsilon = labels if smoothed is None else composed_epsilon(aggregator, queries, smoothed.settings, delta)
    return PateReport(
        aggregator=aggregator.to_json(),
        teachers=history.num_teachers,
        classes=int(history.votes.shape[1]),
        queries=queries,
        answered=history.num_answered,
        delta=delta,
        epsilon=epsilon,
        labels_epsilon=labels,
        smoothed=smoothed,
        smoothed_refused=smoothed_refused,
        event=event_to_json(pate_dp_event(aggregator, queries)),
    )


def release_or_refusal(
    release: SmoothSensitivityRelease, history: VoteHistory
) -> tuple[SmoothedRdp | None, str | None]:
    """(the one smoothed release of ``history``, None), or (None, why it was refused)."""
    try:
        return release.release(history), None
    except PateConfigurationError as err:
        return None, str(err)
