"""Federated averaging with local DP: each client clips its update to L2 norm C and adds Gaussian noise
N(0, (z C)^2 I) itself, before the update leaves it. Nobody has to be trusted, the server included.

Trust model (local): whatever the server, an eavesdropper or other clients see of one client's message, that
client's guarantee holds. Any two data sets of one client give clipped updates at most 2C apart (L2), so one
round is a Gaussian mechanism of sensitivity 2C: GaussianDpEvent(z / 2) in dp-accounting's terms. A client's
epsilon composes over the rounds it took part in (it sent a message), with no amplification by client sampling
(the server knows who sent); the run reports the largest over clients. The guarantee is per client and its unit
is the client's whole data set (every record it holds, and any change of it).

The price: every client's noise reaches the average. With m clients a round, the mean's noise std is
z C / sqrt(m), against z C / m when a trusted server adds noise once (`DifferentialPrivacyFixedClipping`):
sqrt(m) times more at equal z, and at the same epsilon local DP's z is larger too (sensitivity 2C, no
amplification by sampling).

Secure aggregation on top hides each noisy update from the server; the guarantee claimed stays the local one
above. The sum carries the noise of all its clients (variance m (z C)^2), which a distributed-DP analysis
(e.g. the distributed discrete Gaussian, Kairouz et al. 2021) could turn into a smaller epsilon for the sum: ppml
does not claim it (continuous noise, modular rounding and dropouts are not analysed).

Noise comes from the OS CSPRNG (`privacy.local.OsRandom.normal`, Box-Muller); there is no seeded option, since
a seed known to the server would let it remove the noise. Not hardened against floating-point attacks on the
Gaussian sampler (Mironov 2012): z below `MIN_LOCAL_NOISE_MULTIPLIER` is refused, where its truncation alone
would break the delta.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from federated.aggregation import Summand
from federated.strategies._dp_clipping_base import check_clipping_norm, clip_l2
from federated.strategies.fedavg import FedAvg
from federated.strategies.strategy import RoundContext, ServerState, Strategy
from federated.weights import flatten
from privacy import validation
from privacy.accounting import NOISE_MULTIPLIER_RANGE, AccountantKind, epsilon_of
from privacy.compared import compared
from privacy.local.randomness import OsRandom

PARTICIPATIONS = "ldp_participations"
"""Slot of `ServerState`: rounds each client (by population position) has sent an update in."""
TRUST_MODEL = "local"
MIN_LOCAL_NOISE_MULTIPLIER = 2.0
"""Smallest z accepted under local DP. The client's Box-Muller pairs (`privacy.local.OsRandom.normal`, the radius
from 64-bit words) never reach beyond 9.42 sigma, so a neighbour 2C = (2 / z) sigma away can release what the
other data set never does; that mass, outside the reported delta, is at most 3.4e-15 per round at z = 2 for up to
10^7 weights (`privacy.accounting.noise_cutoff.escape_bound`; 1.8e-12 at z = 1, 2e-2 at z = 0.3). With the 53-bit
uniforms used before (8.57 sigma) it was up to 4.1e-12 at z = 2."""


def local_round_event(noise_multiplier: float, rounds: int):
    """A client's dp-accounting event after ``rounds`` messages: SelfComposed(GaussianDpEvent(z / 2), rounds)."""
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier / 2), rounds)


def local_epsilon(noise_multiplier: float, rounds: int, target_delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``target_delta`` of a client that has sent ``rounds`` updates with noise multiplier z."""
    if rounds == 0:
        return 0.0
    return epsilon_of(local_round_event(noise_multiplier, rounds), target_delta=target_delta, accountant=accountant)


def calibrate_local_noise_multiplier(
    target_epsilon: float, rounds: int, target_delta: float, accountant: str = "rdp", tolerance: float = 1e-4
) -> float:
    """Smallest z (to a relative ``tolerance``, rounded up) at which a client that sends in all ``rounds`` rounds
    stays within ``target_epsilon``; ValueError when no z in `NOISE_MULTIPLIER_RANGE` does."""
    low, high = MIN_LOCAL_NOISE_MULTIPLIER, NOISE_MULTIPLIER_RANGE[1]
    if local_epsilon(high, rounds, target_delta, accountant) > target_epsilon:
        raise ValueError(
            f"no noise multiplier up to {high:g} keeps a client within epsilon {target_epsilon:g} over {rounds} rounds"
        )
    if local_epsilon(low, rounds, target_delta, accountant) <= target_epsilon:
        return low
    while high / low > 1 + tolerance:
        middle = math.sqrt(low * high)
        if local_epsilon(middle, rounds, target_delta, accountant) <= target_epsilon:
            high = middle
        else:
            low = middle
    return high


class LocalDifferentialPrivacy(Strategy):
    """Local-DP FedAvg around an unweighted FedAvg-family strategy.

    Args:
      strategy: the wrapped strategy (its server optimizer steps on the mean of the noisy updates).
      clipping_norm: C > 0, the L2 bound of each client's update.
      noise_multiplier: z >= `MIN_LOCAL_NOISE_MULTIPLIER`: each client adds noise of std z C per coordinate.
      target_delta: delta of each client's (epsilon, delta).
      max_epsilon: stop before a round that could take some client's epsilon above this (None: never).
      accountant: "rdp" or "pld".
    """

    def __init__(
        self,
        strategy: FedAvg,
        *,
        clipping_norm: float,
        noise_multiplier: float,
        target_delta: float,
        max_epsilon: float | None = None,
        accountant: str = "rdp",
    ):
        if not isinstance(strategy, FedAvg):
            raise TypeError(f"local DP wraps a FedAvg-family strategy, got {type(strategy).__name__}")
        if strategy.weighted:
            raise ValueError(
                "local DP averages clients equally (a weight would reveal the client's size); "
                "wrap a strategy built with weighted=False"
            )
        low, high = MIN_LOCAL_NOISE_MULTIPLIER, NOISE_MULTIPLIER_RANGE[1]
        validation.number("noise_multiplier", noise_multiplier, low=low, high=high)
        validation.probability("target_delta", target_delta)
        if max_epsilon is not None:
            validation.positive("max_epsilon", max_epsilon, note="or None for no limit")
        self.inner = strategy
        self.client = strategy.client
        self.weighted = False
        self.clipping_norm = check_clipping_norm(clipping_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.target_delta = float(target_delta)
        self.max_epsilon = None if max_epsilon is None else float(max_epsilon)
        self.accountant = AccountantKind(accountant)
        self._epsilons: dict[int, float] = {}

    @property
    def private(self) -> bool:
        return True

    @property
    def secret_randomness(self) -> bool:
        return True

    @property
    def noise_stddev(self) -> float:
        """z C: the std of each coordinate of the noise one client adds."""
        return self.noise_multiplier * self.clipping_norm

    def secure_aggregation_range(self, max_client_size: int = 1) -> float:
        """A noisy update's coordinates lie within C + 6 z C but for a 1e-9 tail per coordinate (clipped there)."""
        return self.clipping_norm + 6 * self.noise_stddev

    def client_epsilon(self, rounds: int) -> float:
        """Epsilon at ``target_delta`` of a client that has sent ``rounds`` noisy updates."""
        rounds = int(rounds)
        if rounds not in self._epsilons:
            self._epsilons[rounds] = local_epsilon(
                self.noise_multiplier, rounds, self.target_delta, self.accountant.value
            )
        return self._epsilons[rounds]

    def initialize(self, weights, ctx):
        state = self.inner.initialize(weights, ctx)
        return state.replace(slots={**state.slots, PARTICIPATIONS: np.zeros(ctx.population)})

    def summand(self, update, state):
        """Runs on the client: the update clipped to C (`clip_l2`; a non-finite one becomes zero) plus the client's own
        Gaussian noise; the count part is 1 (one message)."""
        clipped = np.zeros_like(update.delta, dtype=np.float64)
        if update.finite:
            clipped = clip_l2(update.delta, self.clipping_norm)[0]
        noise = OsRandom().normal(0.0, self.noise_stddev, clipped.size)
        return Summand(vector=clipped + noise, counts=np.ones(1, np.int64))

    def aggregate(self, state: ServerState, total, ctx: RoundContext):
        participations = state.slots[PARTICIPATIONS].copy()
        participations[list(ctx.participants)] += 1
        messages = int(total.counts[0]) if total is not None else 0
        dimension = flatten(state.weights).size
        mean = total.vector / messages if messages else np.zeros(dimension)
        new = self.inner.apply(state, mean)
        new = new.replace(slots={**new.slots, PARTICIPATIONS: participations})
        most = int(participations.max()) if participations.size else 0
        return new, {
            "clipping_norm": self.clipping_norm,
            "noise_stddev_per_client": self.noise_stddev,
            "max_client_rounds": most,
            f"epsilon_{self.accountant.value}": self.client_epsilon(most),
        }

    def stop_reason(self, state, ctx):
        if self.max_epsilon is None:
            return None
        upcoming = self.client_epsilon(int(state.slots[PARTICIPATIONS].max(initial=0)) + 1)
        if upcoming > self.max_epsilon:
            shown, bound = compared(upcoming, self.max_epsilon)
            return (
                f"round {ctx.round} could raise a client's epsilon ({self.accountant.value}) to {shown} > "
                f"max_epsilon={bound}"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "trust_model": TRUST_MODEL,
            "strategy": self.inner.to_dict(),
            "clipping_norm": self.clipping_norm,
            "noise_multiplier": self.noise_multiplier,
            "target_delta": self.target_delta,
            "max_epsilon": self.max_epsilon,
            "accountant": self.accountant.value,
        }
