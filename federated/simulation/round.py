"""One round's plan and its client half, shared by every runner (so runners agree bit for bit).

All randomness of round t derives from (seed, t): client sampling, dropouts, each client's batch
shuffling and the server's noise. A resumed run therefore draws exactly what an uninterrupted one
would, from the seed and the round number alone; except, for a strategy with `secret_randomness`,
the client sample and the noise, which come from generators seeded afresh from the OS CSPRNG.

A client's own draws (its batch shuffling, secure aggregation's rounding) derive from its key, a hash
of its id (`client_keys`), never from its rank in the round or its position in the population: adding
or removing one client then changes no other client's draws, as client-level DP assumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
from typing import Callable

import numpy as np

from federated.client import ClientTrainer, ClientUpdate
from federated.streams import Stream
from federated.weights import num_parameters


def round_rng(seed: int, round_index: int, stream: Stream) -> np.random.Generator:
    """The generator of round ``round_index``'s draws of one kind (`federated.streams.Stream`)."""
    return np.random.default_rng([seed, round_index, int(stream)])


def client_keys(client_ids) -> np.ndarray:
    """[N] uint64 keys, each a hash (BLAKE2b) of one client id alone."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(c).encode(), digest_size=8).digest(), "big") for c in client_ids], np.uint64
    )


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """Who takes part in a round.

    Attributes:
      round: 1-based round index.
      positions: sorted population positions of the sampled clients; a client's rank is its index here.
      seeds: [len(positions), 2] int32 shuffling seeds, one row per rank (from the seed, the round
        and the client's key).
      dropped: ranks that drop out before reporting (simulated failures).
      chunk_size: clients trained together (one vectorized call, one Beam element); a power of two.
      client_keys: [len(positions)] uint64 key of each sampled client (`client_keys`).
      secret: the guarantee rests on this round's draws: the sample came from the OS CSPRNG, and
        per-client randomness an adversary could use (secure aggregation's rounding) must too.
    """

    round: int
    positions: np.ndarray
    seeds: np.ndarray
    dropped: frozenset
    chunk_size: int
    client_keys: np.ndarray
    secret: bool = False

    @classmethod
    def make(
        cls,
        *,
        seed: int,
        round_index: int,
        sampler,
        population: int,
        dropout_rate: float,
        chunk_size: int,
        client_keys: np.ndarray | None = None,
        secret_sampling: bool = False,
    ) -> "RoundPlan":
        """The round's plan from (seed, round); with ``secret_sampling`` the clients are sampled by a
        generator seeded from the OS CSPRNG instead.

        Args:
          client_keys: [population] uint64 keys of the clients (default: their positions, which
            identify clients only while the population is fixed).
        """
        keys = np.arange(population, dtype=np.uint64) if client_keys is None else np.asarray(client_keys, np.uint64)
        if keys.shape != (population,):
            raise ValueError(f"client_keys has shape {keys.shape}, expected ({population},)")
        sampling_rng = (
            np.random.default_rng(secrets.randbits(128))
            if secret_sampling
            else round_rng(seed, round_index, Stream.SAMPLING)
        )
        positions = np.asarray(sampler.sample(population, sampling_rng), np.int64)
        drops = round_rng(seed, round_index, Stream.DROPOUT).random(positions.size) < dropout_rate
        sampled = keys[positions]
        seeds = (
            np.array(
                [
                    np.random.SeedSequence([seed, round_index, int(Stream.CLIENT), int(k)]).generate_state(2)
                    for k in sampled
                ],
                np.uint32,
            ).reshape(-1, 2)
            >> 1
        )
        return cls(
            round_index,
            positions,
            seeds.astype(np.int32),
            frozenset(np.flatnonzero(drops).tolist()),
            chunk_size,
            sampled,
            bool(secret_sampling),
        )

    def chunks(self) -> list[list[int]]:
        """Ranks in consecutive, power-of-two aligned groups (complete `TreeSum` subtrees)."""
        ranks = list(range(self.positions.size))
        return [ranks[i : i + self.chunk_size] for i in range(0, len(ranks), self.chunk_size)]


@dataclasses.dataclass(frozen=True)
class ClientDiagnostic:
    """Per-client facts kept out of the aggregate (not covered by DP or secure aggregation)."""

    rank: int
    num_examples: int
    loss: float
    finite: bool
    reported: bool


_TRAINERS: dict = {}
_TRAINERS_LOCK = threading.Lock()


def trainer_for(model_fn: Callable, loss, execution: str) -> ClientTrainer:
    """A per-process cache: each (model_fn, loss, execution) is built and traced once per process."""
    key = (model_fn, repr(loss), execution)
    with _TRAINERS_LOCK:
        if key not in _TRAINERS:
            _TRAINERS[key] = ClientTrainer(model_fn, loss=loss, execution=execution)
        return _TRAINERS[key]


def train_chunk(trainer: ClientTrainer, data, strategy, state, plan: RoundPlan, ranks, aggregation, keys):
    """Trains the clients of ``ranks`` that did not drop out; returns (encoded contributions, diagnostics).

    A client whose update or loss is not finite is counted in the diagnostics. Without DP it does not
    report (as a real client would fail). Under DP every client reports: whether a round's secure
    aggregation meets its threshold must not turn on one client's data, since an abort discards every
    other client's contribution. The DP strategies' ``summand`` turns a non-finite update into a zero
    (counted as clipped) and clips any other, a finite update with a non-finite loss included.
    """
    live = [r for r in ranks if r not in plan.dropped]
    empty = [r for r in live if data.partition.indices[int(plan.positions[r])].size == 0]
    live = [r for r in live if r not in empty]
    clients = [(r, int(plan.positions[r])) for r in live]
    updates = trainer.train_clients(
        state.weights, data, clients, strategy.client, plan.seeds[live] if live else plan.seeds[:0]
    )
    if empty:  # a client without examples (keyed partitions) takes no step: a zero update of weight 0
        dimension = num_parameters(state.weights)
        updates += [ClientUpdate(np.zeros(dimension), num_examples=0, loss=0.0, position=r) for r in empty]
    encoded, diagnostics = [], []
    for update in updates:
        finite = update.finite and np.isfinite(update.loss)
        reports = finite or strategy.private
        diagnostics.append(ClientDiagnostic(update.position, update.num_examples, update.loss, finite, reports))
        if reports:
            encoded.append(aggregation.encode(update.position, strategy.summand(update, state), keys))
    return encoded, diagnostics
