"""Lower bound from one training run by f-DP (Mahloujifar, Melis & Chaudhuri 2024, "Auditing f-Differential Privacy
in One Run", arXiv 2410.22235).

The game is that of `privacy.auditing.one_run`: m canaries, each included independently with probability 1/2; the
auditor makes r guesses ("in" / "out", abstaining on the rest), W of them right. A trade-off function f gives the
smallest type II error of any test at type I error x; its blow-up f_bar(x) = 1 - f(x) is the largest true positive
rate at false positive rate x. If training is f-DP with respect to each canary, the paper's analysis bounds the
tail of W: P[W >= v] < tau whenever this recursion (the paper's recursive bound with its cap at 1, as JAX-Privacy's
`auditing` evaluates it; ``f_bar_inv(y) = min {x : f_bar(x) >= y}``)

    rho = tau v / m,  eta = tau (r - v) / m
    for i = v - 1, ..., 0:  eta' = max(eta, f_bar_inv(rho));  rho = min(rho + i / (r - i) (eta' - eta), 1);  eta = eta'

ends with rho + eta > r / m (`rejects`). Observing v correct guesses then rejects f-DP at level tau. For a family
f_theta, weaker as theta grows, the bound is the largest theta on a grid of step `RESOLUTION` such that every grid
point up to it is rejected (`parameter_lower_bound`): P[bound > true theta] <= tau over the bits and the run's noise,
whatever the test does between grid points. Two families (`FAMILIES`):

* ``"gaussian"``: mu-GDP, f_bar_inv(y) = Phi(Phi^-1(y) - mu). Exact for the Gaussian mechanism and for DP-SGD with
  every row in every step (sampling probability 1: mu = sqrt(T) / sigma), where it is far tighter than counting bounds.
  The epsilon reported is that of mu-GDP at delta (`gdp_epsilon`): the run is not mu'-GDP for any mu' up to the
  bound. It refutes only claims that are GDP claims; a subsampled run is not mu-GDP for its epsilon's mu.
* ``"eps-delta"``: the trade-off of (eps, delta)-DP, f_bar_inv(y) = max(0, (y - delta) e^-eps,
  1 - delta - e^eps (1 - y)); the bound is on eps at the claim's delta. Sound for any (eps, delta) claim.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import optimize, special

from privacy import validation

FAMILIES = ("gaussian", "eps-delta")
RESOLUTION = 0.01
"""Grid step of the family's parameter (mu, or eps in nats): the bound is rounded down to a multiple of it."""
_CEILING = {"gaussian": 40.0, "eps-delta": 60.0}
"""No bound is reported above this (mu 40 is eps above 700; eps 60 is beyond float precision of e^-eps)."""
_CHUNK = 256


def rejects(m: int, r: int, v: int, f_bar_inv: Callable[[np.ndarray], np.ndarray], tau: float, size: int) -> np.ndarray:
    """Whether v correct guesses of r among m canaries reject each of `size` trade-off curves at level tau.

    Args:
      m, r, v: canaries, guesses and correct guesses, 0 <= v <= r <= m.
      f_bar_inv: maps an array of `size` true positive rates to the smallest false positive rate each curve
        allows for it (an array of `size`).
      tau: the test's level, in (0, 1).
      size: number of curves tested at once.

    Returns:
      Boolean array of `size`: True where the curve is rejected.
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got v={v}, r={r}, m={m}")
    rho = np.full(size, tau * v / m)
    eta = np.full(size, tau * (r - v) / m)
    for i in range(v - 1, -1, -1):
        eta_next = np.maximum(eta, f_bar_inv(rho))
        if np.array_equal(eta_next, eta):
            break  # nothing moved: nothing can move afterwards
        rho = np.minimum(rho + i / (r - i) * (eta_next - eta), 1.0)
        eta = eta_next
    return rho + eta > r / m


def blow_up_inverse(family: str, theta: np.ndarray, delta: float) -> Callable[[np.ndarray], np.ndarray]:
    """f_bar_inv of each member theta of `family` (mu for "gaussian", eps at `delta` for "eps-delta")."""
    if family == "gaussian":
        return lambda y: special.ndtr(special.ndtri(y) - theta)
    if family == "eps-delta":
        grow, shrink = np.exp(theta), np.exp(-theta)
        return lambda y: np.maximum(np.maximum((y - delta) * shrink, 1 - delta - grow * (1 - y)), 0.0)
    raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")


def parameter_lower_bound(m: int, r: int, v: int, *, family: str, delta: float, alpha: float) -> float:
    """Largest grid theta (step `RESOLUTION`) such that f_theta-DP is rejected at level alpha for every grid point
    up to it; 0.0 when even theta = 0 (perfect privacy) is not rejected.

    Args:
      m, r, v: canaries, guesses and correct guesses.
      family: one of `FAMILIES`.
      delta: the delta of the claim, in [0, 1) ("eps-delta" only; ignored by "gaussian").
      alpha: the test's level (1 - confidence), in (0, 1).
    """
    validation.choice("family", family, FAMILIES)
    validation.probability("alpha", alpha)
    validation.probability("delta", delta, zero=True)
    if r == 0 or v <= r / 2:
        return 0.0  # no better than a coin: no evidence against theta = 0
    start = 0
    while start * RESOLUTION < _CEILING[family]:
        grid = np.arange(start, start + _CHUNK) * RESOLUTION
        accepted = np.flatnonzero(~rejects(m, r, v, blow_up_inverse(family, grid, delta), alpha, grid.size))
        if accepted.size:
            return round(max(start + int(accepted[0]) - 1, 0) * RESOLUTION, 6)
        start += _CHUNK
    return _CEILING[family]


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP (Dong, Roth & Su 2022, Corollary 2.13)."""
    if mu == 0:
        return 0.0
    # In logs: e^eps overflows long before the product does.
    return float(
        np.exp(special.log_ndtr(-epsilon / mu + mu / 2)) - np.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
    )


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest eps >= 0 with mu-GDP implying (eps, delta)-DP, in nats (0.0 where delta(0) <= delta)."""
    validation.probability("delta", delta)
    if gdp_delta(mu, 0.0) <= delta:
        return 0.0
    high = 1.0
    while gdp_delta(mu, high) > delta:
        high *= 2
    return float(optimize.brentq(lambda eps: gdp_delta(mu, eps) - delta, 0.0, high, xtol=1e-9))


def epsilon_lower_bound(m: int, r: int, v: int, *, family: str, delta: float, alpha: float) -> float:
    """The bound on epsilon at `delta`, in nats, rounded down to 0.01: the "eps-delta" family's eps, or the epsilon
    of mu-GDP at the "gaussian" family's mu (see the module docstring for what each refutes)."""
    theta = parameter_lower_bound(m, r, v, family=family, delta=delta, alpha=alpha)
    if family == "eps-delta" or theta == 0:
        return theta
    return round(float(np.floor(gdp_epsilon(theta, delta) / RESOLUTION)) * RESOLUTION, 6)
