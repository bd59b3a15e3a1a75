"""Client-level DP-FedAvg [McMahan et al. 2018, arXiv 1710.06963], as a wrapper around a FedAvg-family strategy.

Each client's update is clipped to L2 norm C where it is formed (before any secure aggregation; `clip_l2`, on the
grid its sum is exact on: `on_sum_grid`); the server adds Gaussian noise N(0, (z C')^2 I) once to the sum, where
C' = C plus how far secure aggregation's quantization, and its float64 dequantization of the sum, may move one clipped
update (`RoundContext.rounding_bound`; 0 without it), so z stays the noise multiplier of the actual sensitivity,
and divides by the expected (public) number of sampled clients, then lets the wrapped strategy take its
server-optimizer step. Clients count equally: a weighted average would give one client sensitivity n_k C.

Every round is accounted with `privacy.accounting.PrivacyBudget`; the event is built by
`DpSgdMechanism` with clients in the role of examples:

* Poisson client sampling (probability q), add/remove-one-client adjacency:
  PoissonSampledDpEvent(q, GaussianDpEvent(z)) per round (RDP and PLD).
* Uniform fixed-size sampling (m of N), replace-one-client adjacency (m reveals N otherwise):
  SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z / 2)) per round (RDP only).

The guarantee covers the sequence of server states (model, clipping norm). Two noise sources:

* ``seeded_noise=False`` (default): each round's noise comes from `privacy.keras.noise.GaussianNoise`
  with ``secure=True``: a Philox generator whose 192-bit state is drawn from the OS CSPRNG
  (`os.urandom`) for that round; the round's client sample and secure aggregation's rounding are
  drawn from the CSPRNG too (`secret_randomness`), since sampling amplification assumes nobody knows
  who was sampled. Not reproducible by design.
* ``seeded_noise=True`` (research only): the round's numpy generator, derived from the simulation
  seed and the round. Runs are reproducible (checkpoint/resume, Beam vs in-process), but anyone who
  knows the seed can subtract the noise and replay the sample: the epsilon then describes the
  mechanism, and the guarantee does not hold for a released model.

Neither is hardened against floating-point attacks on the Gaussian sampler.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from federated.aggregation import Summand
from federated.strategies.fedavg import FedAvg
from federated.strategies.strategy import RoundContext, ServerState, Strategy
from federated.weights import flatten
from privacy import validation
from privacy.accounting import NOISE_MULTIPLIER_RANGE, AccountantKind, DpSgdMechanism, PrivacyBudget, noise_cutoff
from privacy.compared import compared

MAX_NOISE_STDDEV = 1e12
"""Largest noise std z x C a round may add to the summed updates. The float32 model then stays finite
(a 40-sigma draw is 4e13, far below float32's 3.4e38, with room for the forward pass); no meaningful update
norm needs more."""
MAX_CLIPPING_NORM = MAX_NOISE_STDDEV / NOISE_MULTIPLIER_RANGE[1]
"""Largest clipping norm C (initial C for adaptive clipping): 1e6, so that z x C stays within
`MAX_NOISE_STDDEV` for every noise multiplier ppml accounts."""
MIN_CLIPPING_NORM = 2.0**-900
"""Smallest clipping norm C (adaptive C is floored there): far below any update a float32 model can apply, and far
enough above float64's subnormals that `clip_l2`'s margin and `on_sum_grid`'s step (2^-24 C) keep their precision (at
C = 5e-323 the step was 0, every summand NaN, and the clipped norm 1.04 C)."""


def check_clipping_norm(clipping_norm) -> float:
    """``clipping_norm`` as a float in [`MIN_CLIPPING_NORM`, `MAX_CLIPPING_NORM`]; raises ValueError naming it
    otherwise."""
    return float(
        validation.number(
            "clipping_norm",
            clipping_norm,
            low=MIN_CLIPPING_NORM,
            high=MAX_CLIPPING_NORM,
            note="beyond it the noise z x C can overflow the float32 model; below it float64 loses the clip's bits",
        )
    )


def clip_l2(vector: np.ndarray, clipping_norm: float) -> tuple[np.ndarray, float]:
    """(``vector`` scaled to L2 norm at most C, its norm as computed) for a finite float64 vector.

    The released vector's exact norm is at most C, float64's rounding included: the norm is taken of the vector
    scaled by a power of two (no square over- or underflows, as ``np.linalg.norm``'s did: a vector of 1e-190s had
    norm 0 and was let through whole, one of 1e160s norm inf and was zeroed), and the vector is clipped to
    C (1 - (2d + 8) 2^-53), which covers the rounding of the d squares' sum in any order (the sum alone
    undercounted by 4e-12 at d = 1e7), of the square root, of the division and of each product.
    """
    largest = float(np.max(np.abs(vector), initial=0.0))
    if largest == 0:
        return vector.astype(np.float64), 0.0
    exponent = math.frexp(largest)[1]
    scaled = np.ldexp(vector, -exponent)  # largest coordinate in [1/2, 1)
    length = float(np.linalg.norm(scaled))
    with np.errstate(over="ignore"):
        norm = float(np.ldexp(length, exponent))  # inf beyond float64's range
    target = clipping_norm * (1 - (2 * vector.size + 8) * 2.0**-53)
    if norm <= target:
        return vector * 1.0, norm
    return scaled * (target / length), norm  # = vector * target / norm, without overflow


SUM_BITS = 24
"""A clipped update's coordinates are cut toward zero to multiples of g = 2^(e - 1 - SUM_BITS), C < 2^e (`on_sum_grid`):
float64 then adds such vectors exactly, in any order, while a round has at most 2^(52 - SUM_BITS) = 2.7e8 clients,
so a plain (unquantized) sum moves by exactly the one client's vector. Unrounded float sums are not bounded by C: with
the running sum just below a power of two, one client changes how each later client's addition rounds (Casacuberta
et al. 2022): 1 + 4.8e-7 C among 2^17 clients of one coordinate, growing as m^2 2^-53."""
MAX_SUM_CLIENTS = 1 << (52 - SUM_BITS)
"""Most clients a central-DP round may sum (its population: a round samples at most all of them). A coordinate is
k g with |k| < 2^(SUM_BITS + 1), so partial sums of at most 2^(52 - SUM_BITS) of them stay below 2^53 g: exact."""


def on_sum_grid(vector: np.ndarray, clipping_norm: float) -> np.ndarray:
    """``vector`` cut toward zero to multiples of the power of two g of `SUM_BITS` (no coordinate grows: the norm
    stays at most C; each moves by less than g, under 2^-24 C)."""
    step = math.ldexp(1.0, math.frexp(clipping_norm)[1] - 1 - SUM_BITS)
    return np.trunc(vector / step) * step


class DpClippingBase(Strategy):
    """Shared by `DifferentialPrivacyFixedClipping` and `DifferentialPrivacyAdaptiveClipping`.

    Class attribute ``range_headroom``: how far past the initial clipping norm C_0 update
    coordinates may go (1 for fixed clipping; adaptive clipping's C moves).

    Args:
      strategy: the wrapped FedAvg-family strategy; must be unweighted.
      noise_multiplier: z > 0, the noise std in units of the clipping norm, for the whole round
        (adaptive clipping splits it between the update and the clipped count).
      target_delta: delta of the reported (epsilon, delta).
      max_epsilon: stop before a round that would take epsilon above this (None: never stop).
      accountant: "rdp" or "pld", the accountant of per-round epsilon and of ``max_epsilon``.
      seeded_noise: draw the noise (and the client sample) from the simulation seed, reproducibly, for
        research only; False (default): from the OS CSPRNG (see the module docstring).
    """

    range_headroom = 1.0

    def __init__(
        self,
        strategy: FedAvg,
        *,
        noise_multiplier: float,
        target_delta: float,
        max_epsilon: float | None = None,
        accountant: str = "rdp",
        seeded_noise: bool = False,
    ):
        if not isinstance(strategy, FedAvg):
            raise TypeError(f"DP wraps a FedAvg-family strategy, got {type(strategy).__name__}")
        if strategy.weighted:
            raise ValueError(
                "client-level DP needs clients weighted equally (each moves the sum by at most C); "
                "wrap a strategy built with weighted=False"
            )
        validation.positive("noise_multiplier", noise_multiplier)
        validation.probability("target_delta", target_delta)
        if max_epsilon is not None:
            validation.positive("max_epsilon", max_epsilon, note="or None for no limit")
        self.inner = strategy
        self.client = strategy.client
        self.weighted = False
        self.noise_multiplier = float(noise_multiplier)
        self.target_delta = float(target_delta)
        self.max_epsilon = None if max_epsilon is None else float(max_epsilon)
        self.accountant = AccountantKind(accountant)
        if not isinstance(seeded_noise, bool):
            raise ValueError(f"seeded_noise must be True or False, got {seeded_noise!r}")
        self.seeded_noise = seeded_noise

    # --- to be specialised ----------------------------------------------------------------------
    def initial_clipping_norm(self) -> float:
        raise NotImplementedError

    def secure_aggregation_range(self, max_client_size: int = 1) -> float:
        """A clipped update's coordinates lie in [-C, C]: r = C_0 x `range_headroom` (rounds whose C
        outgrows it clip coordinates, which only shrinks the update: the noise still covers it)."""
        return self.initial_clipping_norm() * self.range_headroom

    def update_noise_multiplier(self, ctx: RoundContext) -> float:
        """The share of z spent on the update sum (all of it for fixed clipping)."""
        return self.noise_multiplier

    def next_clipping_norm(
        self, clipping_norm: float, total: Summand | None, ctx: RoundContext
    ) -> tuple[float, dict[str, Any]]:
        """The clipping norm of the next round (fixed: unchanged) and metrics."""
        return clipping_norm, {}

    def clip_counts(self, norm: float, clipping_norm: float) -> np.ndarray:
        """Integers a client adds to the count part of its summand (fixed clipping: none)."""
        return np.zeros(0, np.int64)

    # --- the strategy ---------------------------------------------------------------------------
    @property
    def private(self) -> bool:
        return True

    @property
    def secret_randomness(self) -> bool:
        return not self.seeded_noise

    def mechanism(self, ctx: RoundContext) -> DpSgdMechanism:
        """The DP-SGD mechanism with clients as examples and rounds as steps."""
        sampling, adjacency = ctx.sampler.accounting
        return DpSgdMechanism(
            dataset_size=ctx.population,
            batch_size=ctx.sampler.expected_clients(ctx.population),
            noise_multiplier=self.noise_multiplier,
            steps=max(1, ctx.total_rounds),
            sampling=sampling,
            adjacency=adjacency,
        )

    def initialize(self, weights, ctx):
        if ctx.population > MAX_SUM_CLIENTS:
            raise ValueError(
                f"a central DP run sums at most {MAX_SUM_CLIENTS} clients a round exactly, got a population of "
                f"{ctx.population}"
            )
        reason = self.mechanism(ctx).unsupported_reason(self.accountant.value)
        if reason:  # epsilon is reported every round: refuse before any training
            raise ValueError(f"accountant={self.accountant.value!r} cannot account this run: {reason}")
        state = self.inner.initialize(weights, ctx)
        self.update_noise_multiplier(ctx)  # validates the split before anything runs
        budget = PrivacyBudget.for_mechanism(self.mechanism(ctx), self.target_delta)
        return state.replace(scalars={**state.scalars, "clipping_norm": self.initial_clipping_norm()}, budget=budget)

    def summand(self, update, state):
        """The update clipped to L2 norm C (`clip_l2`) on the grid its sum is exact on (`on_sum_grid`); a non-finite
        update becomes zero and counts as clipped (the client still reports: see
        `federated.simulation.round.train_chunk`). A client without examples adds nothing, counts included: N is
        public, so the neighbour that takes a client's data out is that client emptied, and it must look like the
        client removed (add/remove adjacency)."""
        clipping_norm = state.scalars["clipping_norm"]
        if update.num_examples == 0:
            return Summand(
                vector=np.zeros_like(update.delta), counts=np.zeros_like(self.clip_counts(0.0, clipping_norm))
            )
        if not update.finite:
            return Summand(vector=np.zeros_like(update.delta), counts=self.clip_counts(math.inf, clipping_norm))
        clipped, norm = clip_l2(update.delta, clipping_norm)
        return Summand(vector=on_sum_grid(clipped, clipping_norm), counts=self.clip_counts(norm, clipping_norm))

    def aggregate(self, state: ServerState, total, ctx):
        clipping_norm = state.scalars["clipping_norm"]
        dimension = flatten(state.weights).size
        stddev = self.update_noise_multiplier(ctx) * (clipping_norm + ctx.rounding_bound)
        summed = total.vector if total is not None else np.zeros(dimension)
        noisy_mean = (summed + self.gaussian(ctx, stddev, dimension)) / ctx.sampler.expected_clients(ctx.population)
        new = self.inner.apply(state, noisy_mean)
        next_norm, metrics = self.next_clipping_norm(clipping_norm, total, ctx)
        budget = state.budget
        budget.advance_to(new.round, self.mechanism(ctx).unit_event())
        new = new.replace(scalars={**new.scalars, "clipping_norm": next_norm}, budget=budget)
        metrics = {
            "clipping_norm": clipping_norm,
            "noise_stddev": stddev,
            **metrics,
            f"epsilon_{self.accountant.value}": budget.epsilon(self.accountant),
        }
        return new, metrics

    def noise_draws(self, weights) -> noise_cutoff.NoiseDraws | None:
        """What `gaussian` draws for ``weights`` (cut-off radius, Box-Muller pairs per round), for the ledger
        (`privacy.accounting.noise_cutoff`): ppml's float64 sampler over the flattened weights, plus one pair for
        adaptive clipping's noisy count; None for seeded noise (numpy's, cut at 13.7 per coordinate)."""
        if self.seeded_noise:
            return None
        return noise_cutoff.NoiseDraws(
            radius=noise_cutoff.sampler_radius("float64"), pairs=(flatten(weights).size + 1) // 2 + 1
        )

    def gaussian(self, ctx: RoundContext, stddev: float, size: int) -> np.ndarray:
        """``size`` independent N(0, stddev^2) draws (float64) from this strategy's noise source."""
        if self.seeded_noise:
            return ctx.rng.normal(0.0, stddev, size=size)
        import tensorflow as tf

        from privacy.keras.noise import GaussianNoise

        noise = GaussianNoise(secure=True)
        noise.build()  # a fresh state from os.urandom for every draw
        return noise.add([tf.zeros([size], tf.float64)], stddev)[0].numpy()

    def stop_reason(self, state, ctx):
        if self.max_epsilon is None:
            return None
        upcoming = state.budget.epsilon_after(self.mechanism(ctx).unit_event(), 1, self.accountant)
        if upcoming > self.max_epsilon:
            shown, bound = compared(upcoming, self.max_epsilon)
            return f"round {ctx.round} would raise epsilon ({self.accountant.value}) to {shown} > max_epsilon={bound}"
        return None

    def to_dict(self):
        return {
            "name": type(self).__name__,
            "strategy": self.inner.to_dict(),
            "noise_multiplier": self.noise_multiplier,
            "target_delta": self.target_delta,
            "max_epsilon": self.max_epsilon,
            "accountant": self.accountant.value,
            "seeded_noise": self.seeded_noise,
        }
