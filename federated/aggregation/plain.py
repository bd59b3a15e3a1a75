"""Plain aggregation: the server receives each summand and adds them with a `TreeSum`."""

from __future__ import annotations

from federated.aggregation.summand import Summand
from federated.aggregation.tree_sum import TreeSum


class PlainAggregation:
    """The aggregation protocol every runner drives (see also `SecureAggregation`).

    ``open_round`` (server, before the clients) -> ``encode`` (each client) -> ``new_accumulator`` /
    ``accumulate`` / ``merge`` (the runner: a Beam CombineFn or a loop) -> ``finish`` (server).
    """

    name = "plain"
    can_abort = False
    data_dependent: tuple[str, ...] = ()
    """Entries of the round report that are exact facts of the clients' data (a private run leaves them out)."""

    def open_round(self, plan, seed: int) -> None:
        return None

    def encode(self, rank: int, summand: Summand, keys) -> tuple[int, Summand]:
        return rank, summand

    def new_accumulator(self) -> TreeSum:
        return TreeSum()

    def accumulate(self, accumulator: TreeSum, encoded) -> TreeSum:
        return accumulator.add(*encoded)

    def merge(self, accumulators) -> TreeSum:
        accumulators = list(accumulators)
        first = accumulators[0]
        for other in accumulators[1:]:
            first.merge(other)
        return first

    def finish(self, accumulator: TreeSum, reported, keys) -> tuple[Summand | None, dict]:
        return accumulator.result(), {}

    def rounding_bound(self, dimension: int, clients: int) -> float:
        """How far (L2) encoding may move one summand vector of ``dimension`` coordinates, in a sum of at most
        ``clients``: 0, exact (the DP strategies' summands lie on a grid their float sum is exact on)."""
        return 0.0

    def to_dict(self) -> dict:
        return {"name": self.name}
