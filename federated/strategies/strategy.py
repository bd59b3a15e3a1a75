"""The strategy interface: what clients run, what each contributes, and how the server steps.

A round (see `federated.simulation`) is: sample clients -> each runs ``strategy.client`` locally and
returns a `ClientUpdate` -> ``strategy.summand`` turns it into a `Summand` (on the client, before
any secure aggregation) -> the runner sums the summands -> ``strategy.aggregate`` finishes the
round on the server. Strategies hold no mutable state: everything that changes lives in
`ServerState`, which is what a checkpoint saves.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import numpy as np

from federated.aggregation import Summand
from federated.client import ClientConfig, ClientUpdate
from federated.sampling import ClientSampler
from federated.weights import flatten, unflatten
from privacy.accounting import PrivacyBudget


@dataclasses.dataclass(frozen=True)
class ServerState:
    """Everything the server carries between rounds.

    Attributes:
      round: rounds completed.
      weights: float32 model weights (``model.trainable_variables`` order).
      slots: server-optimizer state, flat float64 vectors by name.
      scalars: other numbers (e.g. the adaptive clipping norm).
      budget: privacy spent so far (DP strategies only).
    """

    round: int
    weights: list
    slots: dict = dataclasses.field(default_factory=dict)
    scalars: dict = dataclasses.field(default_factory=dict)
    budget: PrivacyBudget | None = None

    def replace(self, **changes) -> "ServerState":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RoundContext:
    """Public facts about the round being run.

    Attributes:
      round: 1-based index of this round.
      population: N, the number of clients.
      sampler: how this round's clients were drawn.
      total_rounds: rounds planned for the run.
      rng: the server's random generator for this round (seeded per round).
      rounding_bound: how far (L2) the aggregation's encoding may move one client's contribution
        (secure aggregation's quantization and its float64 dequantization of the sum); DP noise covers clipping norm
        plus this.
      participants: population positions of the clients whose contribution is in this round's sum (set when
        the round has run, before `Strategy.aggregate`; per-client accounting under local DP).
    """

    round: int
    population: int
    sampler: ClientSampler
    total_rounds: int
    rng: np.random.Generator
    rounding_bound: float = 0.0
    participants: tuple = ()


class Strategy(abc.ABC):
    """A federated algorithm. Subclasses set ``client`` and implement `summand` and `aggregate`."""

    client: ClientConfig
    weighted: bool = True

    def initialize(self, weights: list, ctx: RoundContext) -> ServerState:
        """The state before round 1."""
        weights = [np.asarray(w, np.float32) for w in weights]
        return ServerState(round=0, weights=weights, slots=self.initial_slots(flatten(weights).size))

    def initial_slots(self, dimension: int) -> dict[str, np.ndarray]:
        return {}

    @abc.abstractmethod
    def summand(self, update: ClientUpdate, state: ServerState) -> Summand:
        """A client's contribution to the round's sum (runs on the client)."""

    @abc.abstractmethod
    def aggregate(
        self, state: ServerState, total: Summand | None, ctx: RoundContext
    ) -> tuple[ServerState, dict[str, Any]]:
        """Finishes a round from the summed contributions (None: no client contributed).

        Returns the next state (``round`` incremented) and round metrics.
        """

    @property
    def private(self) -> bool:
        """True when the released outputs carry a DP guarantee (then client diagnostics are not recorded)."""
        return False

    unclipped_range = 8.0
    """`secure_aggregation_range` per example of the largest client (weighted) or in all (unweighted)."""

    def secure_aggregation_range(self, max_client_size: int) -> float:
        """A coordinate range r for `SecureAggregation`'s clipping: `unclipped_range` x the largest client
        for weighted averaging (a client sends n_k * delta_k), else `unclipped_range` (a heuristic for
        unclipped updates; rounds that exceed it clip coordinates, which each round's aggregation report
        counts)."""
        return self.unclipped_range * (max_client_size if self.weighted else 1)

    @property
    def secret_randomness(self) -> bool:
        """True when the draws the guarantee rests on (noise, client sampling) must come from the OS
        CSPRNG instead of the simulation seed, which is recorded and would let anyone replay them."""
        return False

    def stop_reason(self, state: ServerState, ctx: RoundContext) -> str | None:
        """Why the run must stop before this round, or None."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Name and settings, for histories and checkpoints."""
        return {"name": type(self).__name__, "client": dataclasses.asdict(self.client), "weighted": self.weighted}

    @staticmethod
    def step_weights(state: ServerState, step: np.ndarray, **slots) -> ServerState:
        """Adds ``step`` (flat float64) to the weights; returns the next state with ``slots`` updated."""
        new = flatten(state.weights) + step
        return state.replace(
            round=state.round + 1, weights=unflatten(new, state.weights, np.float32), slots={**state.slots, **slots}
        )
