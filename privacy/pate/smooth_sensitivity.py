"""Release of the data-dependent RDP through smooth sensitivity (Papernot et al. 2018, Section 4.3 and
Appendix C): the GNSS mechanism.

The data-dependent RDP at a fixed order alpha, beta(D), is itself a function of the private votes. It is
released as beta(D) + SS_b(D) * N(0, sigma_ss^2), where SS_b(D) = max_d e^(-b d) LS(D, d) is the b-smooth
sensitivity built from upper bounds LS(D, d) on the local sensitivity of beta at distance d (Algorithms 3-5
for GNMax; a table over the maximum vote for the selection step). That release is itself
(alpha, alpha e^(2b) / sigma_ss^2 + (b alpha - ln(1 - 2 alpha b) / 2) / (alpha - 1))-RDP for
1 < alpha < 1 / (2b) (the paper's Theorem 23), and that cost is added. The order, b and sigma_ss are fixed
before the votes are seen; neither SS_b(D) nor the unnoised beta(D) is ever returned to the caller. The release is
a float64 sum with continuous noise, not hardened against floating-point attacks (Mironov 2012): unlike the
preprocessing releases it is not snapped to a grid, whose spacing would have to follow the data-dependent SS_b(D).

Algorithm 3's bound on the local sensitivity is correct under two monotonicity conditions on beta
(the paper's C5 and C6); `check_conditions` verifies them numerically on a dense grid and the release is
refused where they fail.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from privacy import validation
from privacy.compared import compared
from privacy.pate import data_dependent as dd
from privacy.pate.aggregators import ConfidentGNMax, VoteHistory
from privacy.pate.votes import PateConfigurationError
from privacy.preprocessing.noise import NoiseSource

_CONDITION_GRID = 4000
"""Points of the log-q grid on which conditions C5 and C6 are checked."""

_LOWEST_LOG_Q = -700.0
"""Lower end of that grid: e^-700 is about the smallest normal float64 the bounds can be evaluated at."""


@functools.lru_cache(maxsize=256)
def log_q0(sigma: float, order: float) -> float:
    """ln q0: above q0 the data-independent bound alpha / sigma^2 is the smaller one (below it, Theorem 6)."""

    def gap(log_q):
        return dd.theorem6_rdp(log_q, sigma, order) - dd.rdp_gnmax_independent(sigma, order)

    upper = min(-((1 + 1 / sigma) ** 2), -(((order - 0.99) / sigma) ** 2), -1 / sigma**2)
    if not dd.theorem6_applies(upper, sigma, order):
        raise PateConfigurationError(f"Theorem 6 does not apply at sigma={sigma:g}, order={order:g}")
    if gap(upper) < 0:
        return upper
    lower = 2 * upper
    while gap(lower) > 0:
        if lower < -1e4:
            raise PateConfigurationError(f"no data-dependent range for sigma={sigma:g} at order={order:g}")
        lower *= 1.5
    return float(scipy.optimize.brentq(gap, lower, upper))


def _log_bound(log_q: float, sigma: float, num_classes: int, shift: float) -> float:
    """ln of q's bound after one teacher changes its vote: shift=-1/sigma gives b_U, +1/sigma gives b_L."""
    m1 = num_classes - 1
    value = m1 / 2 * scipy.special.erfc(scipy.special.erfcinv(2 * math.exp(log_q) / m1) + shift)
    return math.log(min(1.0, value)) if value > 0 else -math.inf


def log_q1(sigma: float, order: float, num_classes: int) -> float:
    """ln q1 = ln b_L(q0): between q1 and q0 the local sensitivity is on its plateau."""
    return _log_bound(log_q0(sigma, order), sigma, num_classes, 1 / sigma)


def _beta(log_q: float, sigma: float, order: float) -> float:
    """The data-dependent RDP as Algorithm 3 needs it: Theorem 6 below q0, alpha / sigma^2 above."""
    if log_q == -math.inf:
        return 0.0
    if log_q >= log_q0(sigma, order):
        return dd.rdp_gnmax_independent(sigma, order)
    return dd.theorem6_rdp(log_q, sigma, order)


def _local_sensitivity_at(log_q: float, sigma: float, num_classes: int, order: float) -> float:
    """Algorithm 3: a bound on |beta(q) - beta(q')| over neighbours, given ln q."""
    if log_q1(sigma, order, num_classes) <= log_q <= log_q0(sigma, order):
        log_q = log_q1(sigma, order, num_classes)
    beta = _beta(log_q, sigma, order)
    up = _beta(_log_bound(log_q, sigma, num_classes, -1 / sigma), sigma, order)
    down = _beta(_log_bound(log_q, sigma, num_classes, 1 / sigma), sigma, order)
    return max(up - beta, beta - down)


def local_sensitivities_gnmax(votes, num_teachers: int, sigma: float, order: float) -> np.ndarray:
    """Bounds on the local sensitivity of GNMax's data-dependent RDP at distances d = 0 .. teachers - 1.

    Algorithms 4-5: moving d votes toward the plateau [q1, q0] gives the largest local sensitivity within
    distance d, since it is monotone on either side of the plateau (conditions C5-C6).
    """
    num_classes = len(votes)
    low, high = log_q1(sigma, order, num_classes), log_q0(sigma, order)
    result = np.full(num_teachers, _local_sensitivity_at(low, sigma, num_classes, order))
    log_q = dd.log_q_gnmax(votes, sigma)
    if low <= log_q <= high:
        return result
    counts = sorted((int(v) for v in votes), reverse=True)
    result[0] = _local_sensitivity_at(log_q, sigma, num_classes, order)
    widen = log_q > high  # widen the lead of the top class until q <= q0; else narrow it until q >= q1
    distance = 0
    while (log_q > high and counts[1] > 0) if widen else log_q < low:
        distance += 1
        counts[0] += 1 if widen else -1
        counts[1] -= 1 if widen else -1
        counts[1:] = sorted(counts[1:], reverse=True)
        log_q = dd.log_q_gnmax(np.asarray(counts), sigma)
        result[distance] = _local_sensitivity_at(log_q, sigma, num_classes, order)
    return result


@functools.lru_cache(maxsize=64)
def _selection_rdp_table(num_teachers: int, threshold: float, sigma1: float, order: float) -> np.ndarray:
    """Data-dependent RDP of the selection step for each maximum vote 0 .. teachers."""
    return np.array(
        [
            dd.rdp_selection(float(scipy.stats.norm.logsf(threshold - v, scale=sigma1)), sigma1, order)
            for v in range(num_teachers + 1)
        ]
    )


def local_sensitivities_selection(
    votes, num_teachers: int, threshold: float, sigma1: float, order: float
) -> np.ndarray:
    """Bounds on the local sensitivity of the selection step's RDP at distances d = 0 .. teachers - 1.

    The step depends on the votes through their maximum v only, which moves by at most 1 per changed teacher,
    so LS(d) = max over reachable |v - top| <= d of the largest one-step change of the table at v. This is a
    deliberate deviation from the paper's code (`compute_local_sensitivity_bounds_threshold`), which takes
    |v - top| = d exactly and 0 once every v is reachable: summed over queries, a neighbour at distance d
    moves each query's maximum by *at most* d, and without the running maximum the sum's smooth sensitivity
    is not b-smooth (S(x) <= e^b S(x') fails on neighbouring two-query histories).
    """
    table = _selection_rdp_table(num_teachers, threshold, sigma1, order)
    steps = np.abs(np.diff(table))  # steps[v] = |table[v + 1] - table[v]|
    at = np.maximum(np.concatenate([[-math.inf], steps]), np.concatenate([steps, [-math.inf]]))  # at[v], 0..T
    top = int(round(float(np.max(votes))))
    above = np.maximum.accumulate(at[top:])  # max of at over [top, top + d]
    below = np.maximum.accumulate(at[top::-1])  # max of at over [top - d, top]
    return np.maximum(_padded(above, num_teachers), _padded(below, num_teachers))


def _padded(values: np.ndarray, length: int) -> np.ndarray:
    """``values`` cut or extended with its last value to ``length``."""
    return np.concatenate([values[:length], np.full(max(0, length - len(values)), values[-1])])


def smooth_sensitivity(local_sensitivities: np.ndarray, beta: float) -> float:
    """max_d e^(-beta d) LS(d)."""
    return float(np.max(local_sensitivities * np.exp(-beta * np.arange(len(local_sensitivities)))))


def gnss_rdp(beta: float, sigma_ss: float, order: float) -> float:
    """RDP at ``order`` of releasing a value plus SS_beta * N(0, sigma_ss^2) (Theorem 23), 1 < order < 1/(2 beta)."""
    if not 1 < order < 1 / (2 * beta):
        shown, bound = compared(order, 1 / (2 * beta))
        raise PateConfigurationError(f"order must be in (1, 1/(2*beta)) = (1, {bound}), got {shown}")
    return order * math.exp(2 * beta) / sigma_ss**2 + (beta * order - 0.5 * math.log1p(-2 * order * beta)) / (order - 1)


def history_local_sensitivities(history: VoteHistory, order: float) -> np.ndarray:
    """Summed local-sensitivity bounds of `data_dependent.history_rdp` at distances 0 .. teachers - 1."""
    aggregator, teachers = history.aggregator, history.num_teachers
    confident = isinstance(aggregator, ConfidentGNMax)
    sigma = aggregator.sigma2 if confident else aggregator.sigma
    total = np.zeros(teachers)
    for votes, answered in zip(history.votes, history.answered, strict=True):
        if confident:
            total += local_sensitivities_selection(votes, teachers, aggregator.threshold, aggregator.sigma1, order)
        if answered:
            total += local_sensitivities_gnmax(votes, teachers, sigma, order)
    return total


@functools.lru_cache(maxsize=64)
def check_conditions(sigma: float, num_classes: int, order: float) -> tuple[bool, bool]:
    """(C5, C6): beta(q) is non-decreasing on (0, q0), and beta(b_U(q)) - beta(q) on (0, q1), checked on a
    dense grid of ln q from `_LOWEST_LOG_Q` (q still a normal float64) up (numerical, as the paper's own check
    is)."""
    top = log_q0(sigma, order)
    grid = -np.geomspace(-_LOWEST_LOG_Q, -top, _CONDITION_GRID)  # increasing ln q, ending at ln q0

    def non_decreasing(values):
        values = np.asarray(values)
        return bool(np.all(np.diff(values) >= -1e-12 * np.maximum(1.0, np.abs(values[1:]))))

    c5 = non_decreasing([dd.theorem6_rdp(x, sigma, order) for x in grid])
    if not c5:
        return False, False
    end = log_q1(sigma, order, num_classes)
    grid = -np.geomspace(-_LOWEST_LOG_Q, -end, _CONDITION_GRID)
    c6 = non_decreasing(
        [
            dd.theorem6_rdp(_log_bound(x, sigma, num_classes, -1 / sigma), sigma, order)
            - dd.theorem6_rdp(x, sigma, order)
            for x in grid
        ]
    )
    return c5, c6


@dataclasses.dataclass(frozen=True)
class SmoothSensitivityRelease:
    """Settings of the GNSS release, fixed before the votes are seen: RDP order, smoothness b, noise sigma_ss.

    Defaults: order 20, b = 0.4 / order, sigma_ss = 10 (see the README's PATE section).
    """

    order: float = 20.0
    beta: float | None = None
    sigma_ss: float = 10.0

    def __post_init__(self):
        order = self.order
        validation.number(
            "smooth-sensitivity order", order, low=1, high=1e4, low_open=True, error=PateConfigurationError
        )
        beta = 0.4 / order if self.beta is None else self.beta
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1 / (2 * order):
            number = isinstance(beta, (int, float)) and not isinstance(beta, bool)
            shown, bound = compared(beta, 1 / (2 * order)) if number else (repr(beta), f"{1 / (2 * order):g}")
            raise PateConfigurationError(
                f"smooth-sensitivity beta must be in (0, 1/(2*order)) = (0, {bound}), got {shown}"
            )
        sigma_ss = self.sigma_ss
        validation.positive("smooth-sensitivity sigma_ss", sigma_ss, error=PateConfigurationError)
        object.__setattr__(self, "order", float(order))
        object.__setattr__(self, "beta", float(beta))
        object.__setattr__(self, "sigma_ss", float(sigma_ss))

    def release_cost(self) -> float:
        """RDP at `order` of the release itself (Theorem 23)."""
        return gnss_rdp(self.beta, self.sigma_ss, self.order)

    def to_json(self) -> dict[str, float]:
        return {"order": self.order, "beta": self.beta, "sigma_ss": self.sigma_ss}

    def release(self, history: VoteHistory, *, seed: int | None = None) -> "SmoothedRdp":
        """The one smoothed release of ``history``'s data-dependent RDP (noisy; includes the release's cost).

        Make it once per history and keep it (`ppml pate run` stores it in the vote history): every further
        call is a new release, and averaging them recovers the unsmoothed value.
        Raises PateConfigurationError where conditions C5-C6 fail for the GNMax noise at `order`.
        """
        aggregator = history.aggregator
        sigma = aggregator.sigma2 if isinstance(aggregator, ConfidentGNMax) else aggregator.sigma
        c5, c6 = check_conditions(sigma, history.votes.shape[1], self.order)
        if not (c5 and c6):
            raise PateConfigurationError(
                f"the smooth-sensitivity analysis does not hold at sigma={sigma:g}, order={self.order:g} "
                f"(condition {'C5' if not c5 else 'C6'} fails); only the data-independent epsilon is available"
            )
        rdp = dd.history_rdp(history, self.order)
        ss = smooth_sensitivity(history_local_sensitivities(history, self.order), self.beta)
        noise = NoiseSource(seed, stream="pate-smooth-sensitivity")
        noisy_rdp = rdp + ss * float(noise.normal(self.sigma_ss))
        return SmoothedRdp(settings=self, rdp=noisy_rdp + self.release_cost(), noise=noise.description)


@dataclasses.dataclass(frozen=True)
class SmoothedRdp:
    """The data-dependent RDP at ``settings.order`` released through smooth sensitivity: noisy, and includes
    the release's own cost. Its epsilon at any delta is post-processing of this one number."""

    settings: SmoothSensitivityRelease
    rdp: float
    noise: str

    def epsilon(self, delta: float) -> float:
        """Epsilon at ``delta`` by the classic RDP conversion at the release's order."""
        return dd.rdp_to_epsilon(self.rdp, self.settings.order, delta)

    def to_json(self) -> dict:
        return {**self.settings.to_json(), "rdp": self.rdp, "noise": self.noise}

    @classmethod
    def from_json(cls, data) -> "SmoothedRdp":
        """Raises PateConfigurationError naming what is wrong."""
        if not isinstance(data, dict) or not {"order", "sigma_ss", "rdp"} <= set(data):
            raise PateConfigurationError("a smoothed release needs 'order', 'beta', 'sigma_ss' and 'rdp'")
        rdp = data["rdp"]
        validation.number("the smoothed release's rdp", rdp, error=PateConfigurationError)
        settings = SmoothSensitivityRelease(order=data["order"], beta=data.get("beta"), sigma_ss=data["sigma_ss"])
        return cls(settings=settings, rdp=float(rdp), noise=str(data.get("noise", "unknown")))
