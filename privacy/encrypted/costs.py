"""Per-layer communication cost of one prediction, summed over the three parties."""

from __future__ import annotations

import dataclasses

from privacy.encrypted.transport import CommStats


@dataclasses.dataclass(frozen=True)
class CostReport:
    """Rounds (identical on every party) and bytes sent between parties (all three summed), per layer.

    Client traffic (input and output shares) is counted separately in `client_bytes`.
    """

    layers: dict
    client_bytes: int = 0

    @classmethod
    def from_stats(cls, stats: list[CommStats], client_bytes: int = 0) -> "CostReport":
        layers = {}
        for name, cost in stats[0].layers.items():
            layers[name] = {"rounds": cost.rounds, "bytes": sum(s.layers[name].bytes_sent for s in stats)}
        return cls(layers, client_bytes)

    @property
    def rounds(self) -> int:
        return sum(v["rounds"] for v in self.layers.values())

    @property
    def bytes(self) -> int:
        return sum(v["bytes"] for v in self.layers.values())

    def to_dict(self) -> dict:
        return {"rounds": self.rounds, "bytes": self.bytes, "client_bytes": self.client_bytes, "layers": self.layers}
