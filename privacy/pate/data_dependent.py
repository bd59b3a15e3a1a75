"""Data-dependent RDP of GNMax and of Confident-GNMax's selection step (Papernot et al. 2018, Section 4 and
Appendix B).

When the teachers agree, GNMax almost always returns the plurality class and a neighbour cannot change that
much: the RDP of one answer is bounded through q, an upper bound on Pr[answer != argmax] (Proposition 7),
by Theorem 6 with the orders mu1, mu2 of Proposition 10, whenever its conditions hold; otherwise by the
data-independent alpha / sigma^2. These numbers are functions of the private votes: they are released only
through `privacy.pate.smooth_sensitivity`, never as a guarantee by themselves.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import scipy.stats

from privacy import validation
from privacy.pate.aggregators import ConfidentGNMax, VoteHistory


def log_q_gnmax(votes: np.ndarray, sigma: float) -> float:
    """ln of an upper bound on Pr[GNMax(votes) != argmax votes] (Proposition 7, union bound).

    Class j beats the plurality class i* with probability Pr[N(0, 2 sigma^2) >= n_i* - n_j]; the bound is the
    sum over j != i*, capped at 1 - 1/m (m classes).
    """
    votes = np.asarray(votes, dtype=float)
    top = int(np.argmax(votes))
    gaps = votes[top] - np.delete(votes, top)
    log_q = scipy.special.logsumexp(scipy.stats.norm.logsf(gaps, scale=math.sqrt(2.0) * sigma))
    return float(min(log_q, math.log1p(-1.0 / len(votes))))


def rdp_gnmax_independent(sigma: float, order: float) -> float:
    """alpha / sigma^2: RDP of one GNMax answer at order alpha for any votes (Proposition 8)."""
    return order / sigma**2


def _mu(log_q: float, sigma: float) -> tuple[float, float]:
    """(mu1, mu2) of Proposition 10: mu2 = sigma sqrt(ln 1/q), mu1 = mu2 + 1."""
    mu2 = sigma * math.sqrt(-log_q)
    return mu2 + 1.0, mu2


def theorem6_applies(log_q: float, sigma: float, order: float) -> bool:
    """Whether Theorem 6's conditions hold at this q (with Proposition 10's mu1, mu2) for ``order``."""
    if log_q >= 0 or math.isinf(log_q):
        return False
    mu1, mu2 = _mu(log_q, sigma)
    if not (mu1 > order and mu2 > 1):
        return False
    eps2 = mu2 / sigma**2
    bound = (mu2 - 1) * eps2 - mu2 * (math.log1p(1 / (mu1 - 1)) + math.log1p(1 / (mu2 - 1)))
    return log_q <= bound and -log_q > eps2


def theorem6_rdp(log_q: float, sigma: float, order: float) -> float:
    """Theorem 6's bound at ``order``, without checking its conditions (see `theorem6_applies`).

    With eps_i = mu_i / sigma^2, A = (1 - q) / (1 - (q e^eps2)^((mu2 - 1) / mu2)), B = e^eps1 / q^(1 / (mu1 - 1)):
    RDP <= ln((1 - q) A^(alpha - 1) + q B^(alpha - 1)) / (alpha - 1).
    """
    mu1, mu2 = _mu(log_q, sigma)
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    log_1mq = math.log1p(-math.exp(log_q))
    log_a = log_1mq - math.log1p(-math.exp((log_q + eps2) * (1 - 1 / mu2)))
    log_b = eps1 - log_q / (mu1 - 1)
    return float(np.logaddexp(log_1mq + (order - 1) * log_a, log_q + (order - 1) * log_b) / (order - 1))


def rdp_gnmax(log_q: float, sigma: float, order: float) -> float:
    """Data-dependent RDP of one GNMax answer at ``order`` given ln q: Theorem 6 where it applies and is
    smaller, else alpha / sigma^2; 0 when the answer is certain (q = 0)."""
    validation.number("order", order, low=1, low_open=True)
    if log_q == -math.inf:
        return 0.0
    independent = rdp_gnmax_independent(sigma, order)
    if theorem6_applies(log_q, sigma, order):
        return min(independent, theorem6_rdp(log_q, sigma, order))
    return independent


def log_pr_answered(votes: np.ndarray, threshold: float, sigma1: float) -> float:
    """ln Pr[max_j n_j + N(0, sigma1^2) >= threshold]: the selection step answers."""
    return float(scipy.stats.norm.logsf(threshold - float(np.max(votes)), scale=sigma1))


def _log1mexp(x: float) -> float:
    """ln(1 - e^x) for x <= 0."""
    if x == 0:
        return -math.inf
    return math.log1p(-math.exp(x)) if x < -1 else math.log(-math.expm1(x))


def rdp_selection(log_pr_answer: float, sigma1: float, order: float) -> float:
    """Data-dependent RDP of one selection step at ``order``.

    The step is a two-outcome noisy comparison of a sensitivity-1 count: GNMax's analysis applies with noise
    sqrt(2) sigma1 (sensitivity 1 instead of 2 on the gap), q being the less likely outcome's probability.
    """
    log_q = min(log_pr_answer, _log1mexp(log_pr_answer))
    return rdp_gnmax(log_q, math.sqrt(2.0) * sigma1, order)


def rdp_selection_independent(sigma1: float, order: float) -> float:
    """alpha / (2 sigma1^2): RDP of one selection step for any votes."""
    return rdp_gnmax_independent(math.sqrt(2.0) * sigma1, order)


def history_rdp(history: VoteHistory, order: float) -> float:
    """Data-dependent RDP at ``order`` of a whole `VoteHistory`: the selection step of every query
    (Confident-GNMax) plus the GNMax step of every answered query."""
    aggregator = history.aggregator
    sigma = aggregator.sigma2 if isinstance(aggregator, ConfidentGNMax) else aggregator.sigma
    total = 0.0
    for votes, answered in zip(history.votes, history.answered, strict=True):
        if isinstance(aggregator, ConfidentGNMax):
            total += rdp_selection(
                log_pr_answered(votes, aggregator.threshold, aggregator.sigma1), aggregator.sigma1, order
            )
        if answered:
            total += rdp_gnmax(log_q_gnmax(votes, sigma), sigma, order)
    return total


def rdp_to_epsilon(rdp: float, order: float, delta: float) -> float:
    """The classic conversion the paper uses: eps = RDP + ln(1/delta) / (alpha - 1) (Mironov 2017, Prop. 3)."""
    return rdp + math.log(1 / delta) / (order - 1)
