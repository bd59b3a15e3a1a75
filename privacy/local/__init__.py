"""Local differential privacy: each person randomizes their own value before it leaves their device, so no
trusted collector is needed (numpy only; no TensorFlow).

Mechanisms (one per module), each an epsilon-LDP `FrequencyOracle` with a per-person randomizer (OS CSPRNG by
default), an unbiased estimator, its exact variance and a confidence interval:

* `RandomizedResponse`: yes/no, the coin design (epsilon = ln 3 with two fair coins) or any epsilon.
* `GeneralizedRandomizedResponse`, `OptimizedUnaryEncoding`, `OptimizedLocalHashing`: k-ary frequency oracles
  (Wang et al. 2017).

The price of no trusted curator is noise: at the same epsilon, a count estimated from n local reports has a
standard error of order sqrt(n) / epsilon people, against order 1 / epsilon under central DP.
"""

from privacy.local.frequency_oracle import FrequencyEstimate, FrequencyOracle
from privacy.local.grr import GeneralizedRandomizedResponse
from privacy.local.olh import HashedReports, OptimizedLocalHashing
from privacy.local.oue import OptimizedUnaryEncoding
from privacy.local.randomized_response import SEED_COIN_EPSILON, RandomizedResponse
from privacy.local.randomness import OsRandom, resolve_random
from privacy.local.validation import MAX_DOMAIN, MAX_EPSILON
from privacy.validation import choice

MECHANISMS = {
    cls.name: cls
    for cls in (RandomizedResponse, GeneralizedRandomizedResponse, OptimizedUnaryEncoding, OptimizedLocalHashing)
}
"""Mechanisms by the name the CLI and reports use."""


def make_oracle(mechanism: str, epsilon: float, k: int) -> FrequencyOracle:
    """The oracle named ``mechanism`` (a key of `MECHANISMS`) at ``epsilon`` over k values (rr: k must be 2)."""
    choice("mechanism", mechanism, MECHANISMS)
    if mechanism == "rr":
        if k != 2:
            raise ValueError(f"mechanism 'rr' is for yes/no attributes (k = 2), got k = {k!r}")
        return RandomizedResponse(epsilon)
    return MECHANISMS[mechanism](epsilon, k)


__all__ = [
    "MAX_DOMAIN",
    "MAX_EPSILON",
    "MECHANISMS",
    "SEED_COIN_EPSILON",
    "FrequencyEstimate",
    "FrequencyOracle",
    "GeneralizedRandomizedResponse",
    "HashedReports",
    "OptimizedLocalHashing",
    "OptimizedUnaryEncoding",
    "OsRandom",
    "RandomizedResponse",
    "make_oracle",
    "resolve_random",
]
