"""A sum of client contributions that is bitwise reproducible in any order and on any runner.

Floating-point addition is not associative, so a sum whose order depends on bundle splits and
merges (Beam) would differ in its last bits from a sequential one. `TreeSum` fixes the order: the
clients of a round are the leaves 0..m-1 of a binary tree, a node is formed as soon as both children
are present (left + right; IEEE addition is commutative), and the nodes left at the end are added
by position. The value therefore depends only on which leaves were added, never on when.
"""

from __future__ import annotations

from typing import Iterable

from federated.aggregation.summand import Summand


class TreeSum:
    """Accumulates `Summand`s keyed by leaf position; `merge` combines disjoint partial sums."""

    def __init__(self):
        self._nodes: dict[tuple[int, int], Summand] = {}  # (level, index) -> sum of its leaves
        self._leaves: set[int] = set()

    def add(self, position: int, summand: Summand) -> "TreeSum":
        """Adds the leaf at ``position`` (each position at most once)."""
        if position in self._leaves:
            raise ValueError(f"leaf {position} was added twice")
        self._leaves.add(int(position))
        self._insert(0, int(position), summand)
        return self

    def merge(self, other: "TreeSum") -> "TreeSum":
        """Adds a partial sum over other leaves (they must be disjoint from these)."""
        if self._leaves & other._leaves:
            raise ValueError(f"leaves {sorted(self._leaves & other._leaves)} were added twice")
        self._leaves |= other._leaves
        for (level, index), node in other._nodes.items():
            self._insert(level, index, node)
        return self

    def _insert(self, level: int, index: int, node: Summand) -> None:
        while True:
            sibling = self._nodes.pop((level, index ^ 1), None)
            if sibling is None:
                self._nodes[(level, index)] = node
                return
            node = node + sibling
            level, index = level + 1, index >> 1

    def result(self) -> Summand | None:
        """The total (None when nothing was added)."""
        ordered = sorted(self._nodes.items(), key=lambda item: (item[0][1] << item[0][0], item[0][0]))
        total = None
        for _, node in ordered:
            total = node if total is None else total + node
        return total

    def __len__(self) -> int:
        return len(self._nodes)

    @classmethod
    def of(cls, leaves: Iterable[tuple[int, Summand]]) -> "TreeSum":
        tree = cls()
        for position, summand in leaves:
            tree.add(position, summand)
        return tree
