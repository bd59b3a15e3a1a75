"""Partitioners: seeded, serialisable ways to split one dataset among simulated clients.

One rule per module; each returns a `Partition` that prints (`summary()`) and saves (`save()`) its
per-client sizes and label histograms.
"""

from __future__ import annotations

from typing import Any, Mapping

from federated.partitioners.base import Partitioner
from federated.partitioners.dirichlet import DirichletPartitioner
from federated.partitioners.iid import IidPartitioner
from federated.partitioners.keyed import KeyedPartitioner, content_keys, keyed_hold_out, record_keys
from federated.partitioners.natural import NaturalPartitioner
from federated.partitioners.partition import Partition
from federated.partitioners.quantity_skew import QuantitySkewPartitioner
from federated.partitioners.shards import ShardPartitioner

PARTITIONERS: dict[str, type[Partitioner]] = {
    cls.name: cls
    for cls in (
        IidPartitioner,
        DirichletPartitioner,
        ShardPartitioner,
        QuantitySkewPartitioner,
        NaturalPartitioner,
        KeyedPartitioner,
    )
}


def partitioner_from_dict(spec: Mapping[str, Any]) -> Partitioner:
    """Rebuilds a partitioner from ``Partitioner.to_dict()``."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in PARTITIONERS:
        raise ValueError(f"unknown partitioner {name!r}; known: {', '.join(PARTITIONERS)}")
    try:
        return PARTITIONERS[name](**spec)
    except TypeError as err:
        raise ValueError(f"bad settings for the {name} partitioner: {err}") from None


__all__ = [
    "DirichletPartitioner",
    "IidPartitioner",
    "KeyedPartitioner",
    "NaturalPartitioner",
    "PARTITIONERS",
    "Partition",
    "Partitioner",
    "QuantitySkewPartitioner",
    "ShardPartitioner",
    "content_keys",
    "keyed_hold_out",
    "partitioner_from_dict",
    "record_keys",
]
