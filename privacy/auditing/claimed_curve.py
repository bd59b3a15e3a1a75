"""The one-run f-DP test against the claimed DP-SGD mechanism's own trade-off curve (estimator ``"f-dp-claimed"``).

A DP-SGD claim (Poisson sampling with probability q, noise multiplier sigma, T steps, add/remove) has a privacy profile
delta(eps), here dp-accounting's pessimistic PLD (an upper bound on the true delta(eps), so a valid claim). A run
that is (eps, delta(eps))-DP for every eps is f-DP for f(x) = sup_eps max(0, 1 - delta(eps) - e^eps x,
e^-eps (1 - delta(eps) - x)) (Dong, Roth & Su 2022, Proposition 2.12); taking the sup over a finite set of eps
(`EPSILON_MULTIPLES` of the claim's own eps) gives a weaker curve, which the run therefore also satisfies. Its
blow-up inverse is the largest of the (eps, delta(eps)) curves' inverses (`f_dp_one_run.blow_up_inverse`), so the
recursion of `f_dp_one_run.rejects` tests it exactly as it tests one (eps, delta) curve: sound for any run whose
claim holds, subsampled or not, and far tighter than one (eps, delta) point for a subsampled Gaussian.

The bound: over the family sigma' (same q and T) on a grid fixed by the claim alone (`sigma_grid`), the smallest
sigma' whose curve the scores refute at level alpha, reported as eps(sigma') at the run's delta (PLD), rounded down
to 0.01. It is found by bisection, which is exact because rejection is monotone in sigma':
- the family is nested: a Poisson-sampled Gaussian with noise sigma'' > sigma' is a post-processing of the one
  with sigma' (add independent noise to each step's sum), so delta_{sigma''}(eps) <= delta_{sigma'}(eps) at every
  eps; every member's curve is taken at the same eps points (fixed by the claim), so the curves tested are nested
  too and the blow-up inverse grows with sigma';
- the recursion's rejection grows with the blow-up inverse g: eta_k = max(eta_0, g(rho_{k-1})) (rho and g are
  nondecreasing) and, summing by parts, rho_k = min(1, rho_0 + sum_j (c_j - c_{j+1}) (eta_j - eta_0) + c_k
  (eta_k - eta_0)) with c_j = i / (r - i) decreasing along the recursion, so a larger g gives larger eta and rho at
  every step, by induction, and so a larger rho + eta at the end.
Hence if the run is the claimed mechanism with sigma (or any mechanism that is f_sigma-DP), the bound exceeds
eps(sigma) only when some grid sigma' <= sigma is refuted, which implies the largest grid point <= sigma is refuted:
probability <= alpha (each curve tested is weaker than its member's exact curve: the run is f-DP for it). The
nesting uses the PLD profiles' monotonicity in sigma', true of the exact profiles; `test_claimed_curve` checks
dp-accounting's pessimistic ones on the grid.

What the number means: at the stated confidence the run is not the claimed mechanism with any grid sigma' at or
above the one reported (nor f-DP for its curve); its eps is that member's. It is not a lower bound on the (eps, delta)
of an arbitrary mechanism, whose curve may have another shape (the "f-dp" estimator gives that): a bound above the
claim refutes the claim, which is what the audits test.

Cost: one PLD per grid sigma' the bisection visits (about 10), cached per (q, sigma', T, delta, eps points).

Which claim: the test is sound only if the claim is one curve, fixed before the bits are drawn, that the map from the
canaries' inclusion bits to their scores satisfies for every flip of one bit whatever the other bits. Where the data
size N counts the included canaries (`ppml audit`, `run_dp_sgd_audit` without fixed_size), the claim a run reports is
q = B / N and T = epochs x max(1, round(N / B)) at the realised N = n + (included canaries): it depends on the bits,
and flipping one bit changes N, hence every other canary's q = B / N (and at a rounding edge T), so a neighbouring
pair of bit vectors differs by more than one Poisson-sampled example and no single subsampled-Gaussian curve (the
realised one or the one at the largest q = B / n) is one the run provably satisfies. "f-dp-claimed" is therefore
refused there (`dp_sgd_audit.estimator_for`). With a fixed size (`audit_mechanism`: an excluded canary stays as a
stand-in row that touches no canary's slot) N = n + m, q = B' / N and T do not depend on the bits, each canary's slot
sees exactly its own Poisson-sampled, clipped contribution plus the noise, and flipping its bit adds or removes that
contribution alone: the claim is a fixed curve and the test is sound."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np
from dp_accounting import dp_event
from dp_accounting.pld import privacy_loss_distribution

from privacy import validation
from privacy.accounting import Adjacency, DpSgdMechanism, accountants
from privacy.accounting.mechanism import PLD_MIN_STEP_NOISE
from privacy.auditing import f_dp_one_run

SIGMA_STEPS_PER_DOUBLING = 64
"""Grid of sigma': the claim's sigma times 2^(k / 64), from a factor 1/4 (not below `PLD_MIN_STEP_NOISE`) to 4. Its
bottom caps the bound (at eps(sigma / 4): a 4C clip's); lower sigma' would cost PLDs of seconds to minutes."""
_SIGMA_EXPONENTS = np.arange(-2 * SIGMA_STEPS_PER_DOUBLING, 2 * SIGMA_STEPS_PER_DOUBLING + 1)
EPSILON_MULTIPLES = np.linspace(0.0, 4.0, 33)
"""The eps points of every member's curve: these multiples of the claim's eps at the run's delta (1 included)."""
RESOLUTION = 0.01
"""The bound is rounded down to a multiple of this, in nats."""


@dataclasses.dataclass(frozen=True)
class SampledGaussianClaim:
    """The claim under test: T steps of the Gaussian mechanism with noise multiplier sigma (relative to one example's
    contribution), each example sampled with probability q, add/remove adjacency.

    Attributes:
      sampling_probability: q, in (0, 1].
      noise_multiplier: sigma > 0.
      steps: T >= 1.
    """

    sampling_probability: float
    noise_multiplier: float
    steps: int

    def __post_init__(self):
        validation.probability("sampling_probability", self.sampling_probability, one=True)
        validation.positive("noise_multiplier", self.noise_multiplier)
        validation.integer("steps", self.steps, minimum=1)

    @classmethod
    def of(cls, mechanism: DpSgdMechanism) -> "SampledGaussianClaim":
        """The claim of a ledger's mechanism; ValueError naming the setting where its accounting is not that of a
        Poisson-sampled Gaussian with add/remove adjacency (microbatches, truncation, user level, other sampling)."""
        event = mechanism.unit_event()
        if (
            mechanism.adjacency is not Adjacency.ADD_REMOVE
            or mechanism.max_examples_per_user is not None
            or not isinstance(event, dp_event.PoissonSampledDpEvent)
            or not isinstance(event.event, dp_event.GaussianDpEvent)
        ):
            raise ValueError(
                f"sampling: estimator f-dp-claimed tests the curve of a Poisson-sampled Gaussian with add/remove "
                f"adjacency at example level, got {mechanism.sampling.value} with {mechanism.adjacency.value}"
                f"{' at user level' if mechanism.max_examples_per_user is not None else ''}"
                f"{' (truncated batches)' if mechanism.truncated_batch_size is not None else ''}"
            )
        return cls(float(event.sampling_probability), float(event.event.noise_multiplier), mechanism.units())


def sigma_grid(claim: SampledGaussianClaim) -> np.ndarray:
    """The sigma' the bound may report, ascending; fixed by the claim alone (never by the scores)."""
    grid = claim.noise_multiplier * 2.0 ** (_SIGMA_EXPONENTS / SIGMA_STEPS_PER_DOUBLING)
    return grid[(grid >= PLD_MIN_STEP_NOISE) | (_SIGMA_EXPONENTS >= 0)]


def profile(claim: SampledGaussianClaim, sigma: float, delta: float) -> tuple[float, np.ndarray, np.ndarray]:
    """eps(sigma') at `delta`, and the points (eps_j, delta_{sigma'}(eps_j)) of the claim's family member sigma'
    (eps_j: `EPSILON_MULTIPLES` of the claim's own eps at `delta`)."""
    scale = _profile(claim.sampling_probability, claim.noise_multiplier, claim.steps, delta, 0.0)[0]
    return _profile(claim.sampling_probability, float(sigma), claim.steps, delta, scale)


@functools.lru_cache(maxsize=1024)
def _profile(q: float, sigma: float, steps: int, delta: float, scale: float) -> tuple[float, np.ndarray, np.ndarray]:
    """eps(sigma) at `delta`, and delta(eps) at `scale` x `EPSILON_MULTIPLES`, from dp-accounting's pessimistic PLD
    of T Poisson-sampled Gaussian steps (the same PLD `privacy.accounting`'s PLD accountant composes)."""
    pld = privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=sigma,
        sampling_prob=q,
        value_discretization_interval=accountants.PLD_VALUE_DISCRETIZATION_INTERVAL,
        pessimistic_estimate=True,
    ).self_compose(steps)
    epsilon = float(pld.get_epsilon_for_delta(delta))
    points = scale * EPSILON_MULTIPLES
    # one point at a time: dp-accounting's scalar delta is one numpy pass (the accountant's get_delta uses it); its
    # array form walks the grid in a Python loop, half of this function's CPU time
    deltas = [pld.get_delta_for_epsilon(float(point)) for point in points]
    return epsilon, points, np.asarray(deltas, dtype=np.float64)


def curve_blow_up_inverse(epsilons: np.ndarray, deltas: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """f_bar_inv of the curve sup_j f_(eps_j, delta_j): the largest of the points' inverses (a y of shape [1])."""
    points = f_dp_one_run.blow_up_inverse("eps-delta", epsilons, deltas)
    return lambda y: np.max(points(y), keepdims=True)


def refutes(m: int, r: int, v: int, claim: SampledGaussianClaim, sigma: float, *, delta: float, alpha: float) -> bool:
    """Whether v correct of r guesses among m canaries refute, at level alpha, the curve of the claim with sigma'."""
    _, epsilons, deltas = profile(claim, sigma, delta)
    return bool(f_dp_one_run.rejects(m, r, v, curve_blow_up_inverse(epsilons, deltas), alpha, 1)[0])


def epsilon_lower_bound(
    m: int, counts: Sequence[tuple[int, int]], *, claim: SampledGaussianClaim, delta: float, alpha: float
) -> tuple[float, int]:
    """The bound from several guess counts at once (a Bonferroni audit's pairs, each at level alpha): eps at `delta`
    (PLD, nats, rounded down to `RESOLUTION`) of the smallest grid sigma' whose curve one of the (r, v) in `counts`
    refutes at level alpha, and the index in `counts` of the first that does; (0.0, 0) when none refutes even the
    largest grid sigma' (4 sigma). "Some count refutes sigma'" is monotone in sigma' as each one is (module
    docstring), so one bisection finds the largest of the counts' bounds. The bound is above the claim's own eps
    only if the claim's curve is refuted."""
    validation.probability("alpha", alpha)
    validation.probability("delta", delta)
    useful = [index for index, (r, v) in enumerate(counts) if r > 0 and v > r / 2]  # others refute nothing

    def refuter(sigma: float) -> int | None:
        for index in useful:
            if refutes(m, *counts[index], claim, sigma, delta=delta, alpha=alpha):
                return index
        return None

    grid = sigma_grid(claim)
    if refuter(grid[-1]) is None:
        return 0.0, 0
    low, high = -1, grid.size - 1  # high is refuted; low is not (or below the grid)
    while high - low > 1:
        middle = (low + high) // 2
        if refuter(grid[middle]) is None:
            low = middle
        else:
            high = middle
    epsilon = profile(claim, grid[high], delta)[0]
    return round(float(np.floor(epsilon / RESOLUTION)) * RESOLUTION, 6), refuter(grid[high])
