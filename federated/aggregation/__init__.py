"""Aggregation: client contributions (`Summand`), their reproducible sum (`TreeSum`), and secure
aggregation (`aggregation.secure`)."""

from federated.aggregation.summand import Summand
from federated.aggregation.tree_sum import TreeSum
from federated.aggregation.plain import PlainAggregation

__all__ = ["PlainAggregation", "Summand", "TreeSum"]
