"""Per-layer communication cost of one prediction, summed over the three parties."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Rounds (identical on every party) and bytes sent between parties (all three summed), per layer.

    Client traffic (input and output shares) is counted separately in `client_bytes`.
    """

    layers: dict
    client_bytes: int = 0

    @classmethod
    def from_parties(cls, per_party: list[dict], client_bytes: int = 0) -> "CostReport":
        """Combines the three parties' `CommStats.to_dict()`."""
        layers = {
            name: {"rounds": cost["rounds"], "bytes": sum(p[name]["bytes"] for p in per_party)}
            for name, cost in per_party[0].items()
        }
        return cls(layers, client_bytes)

    @property
    def rounds(self) -> int:
        return sum(v["rounds"] for v in self.layers.values())

    @property
    def bytes(self) -> int:
        return sum(v["bytes"] for v in self.layers.values())

    def to_dict(self) -> dict:
        return {"rounds": self.rounds, "bytes": self.bytes, "client_bytes": self.client_bytes, "layers": self.layers}
