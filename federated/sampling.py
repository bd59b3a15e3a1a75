"""Client sampling per round: a uniform fixed-size sample, or Poisson sampling.

The sampler also says how a client-level DP guarantee is accounted: Poisson sampling under
add/remove-one-client adjacency, a fixed-size uniform sample under replace-one-client adjacency
(dp-accounting's sampled-without-replacement RDP analysis; the sample size reveals N otherwise).
"""

from __future__ import annotations

import abc
import dataclasses

import numpy as np

from federated.renamed import old_attribute, take_old_keyword
from privacy import validation
from privacy.accounting import Adjacency, Sampling


class ClientSampler(abc.ABC):
    """Chooses the clients of a round from a population of N."""

    @abc.abstractmethod
    def sample(self, population: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted positions (0..N-1) of the sampled clients."""

    @abc.abstractmethod
    def expected_clients(self, population: int) -> float:
        """E[number sampled]: the public denominator of DP-FedAvg."""

    @abc.abstractmethod
    def most_clients(self, population: int) -> int:
        """The most clients a round can sample (what secure aggregation's modulus must hold)."""

    @property
    @abc.abstractmethod
    def accounting(self) -> tuple[Sampling, Adjacency]:
        """(sampling scheme, adjacency) a client-level DP guarantee is accounted under."""

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class UniformSampler(ClientSampler):
    """m = max(1, round(fraction * N)) clients drawn uniformly without replacement each round.

    Args:
      fraction: C in (0, 1], McMahan et al.'s client fraction (1.0: every client every round).
    """

    fraction: float
    name = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "fraction", validation.probability("fraction", self.fraction, one=True))

    def clients_per_round(self, population: int) -> int:
        return max(1, int(round(self.fraction * population)))

    def sample(self, population, rng):
        m = self.clients_per_round(population)
        return np.sort(rng.choice(population, size=m, replace=False))

    def expected_clients(self, population):
        return float(self.clients_per_round(population))

    def most_clients(self, population):
        return self.clients_per_round(population)

    @property
    def accounting(self):
        return Sampling.FIXED, Adjacency.REPLACE_ONE


@dataclasses.dataclass(frozen=True)
class PoissonSampler(ClientSampler):
    """Each client joins each round independently with probability q (rounds may be empty).

    Args:
      sampling_probability: q in (0, 1].
      probability: the old name of ``sampling_probability``, kept for one release (keyword and attribute, a
        DeprecationWarning; both keywords at once are refused).
    """

    sampling_probability: float | None = None
    probability: dataclasses.InitVar[float | None] = None
    name = "poisson"

    def __post_init__(self, probability):
        take_old_keyword(self, "sampling_probability", "probability", probability, default=None)
        object.__setattr__(
            self,
            "sampling_probability",
            validation.probability("sampling_probability", self.sampling_probability, one=True),
        )

    def sample(self, population, rng):
        return np.flatnonzero(rng.random(population) < self.sampling_probability)

    def expected_clients(self, population):
        return self.sampling_probability * population

    def most_clients(self, population):
        return population

    @property
    def accounting(self):
        return Sampling.POISSON, Adjacency.ADD_REMOVE


old_attribute(PoissonSampler, "probability", "sampling_probability")


def check_public_population(sampler: ClientSampler, *, population_from_data: bool) -> None:
    """Refuses client-level DP whose adjacency would have to hide N, the number of clients.

    A private run releases N: the round's sample sizes, the update's scale (the noisy sum over the
    expected q N), the calibrated z and the default delta depend on it. N is public when it is a setting
    (a keyed partition of N clients), or when the adjacency holds it fixed (uniform sampling: one client
    replaced). With one client per user N is counted from the data, and Poisson sampling's add/remove
    adjacency is a user more or less: the released N alone would tell the neighbours apart.

    Raises:
      ValueError: for add/remove adjacency over a population counted from the data.
    """
    if population_from_data and sampler.accounting[1] is Adjacency.ADD_REMOVE:
        raise ValueError(
            f"with one client per user, N is the number of users in the data, which a private run "
            f"releases (sample sizes, delta, the update's scale) and {sampler.name} sampling's "
            f"add/remove adjacency (a user more or less) would change: use uniform sampling "
            f"(replace-one user adjacency, N fixed)"
        )
