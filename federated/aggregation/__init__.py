"""Aggregation: client contributions (`Summand`), their reproducible sum (`TreeSum`), and secure
aggregation (`aggregation.secure`)."""

from federated.aggregation.plain import PlainAggregation
from federated.aggregation.secure import SecureAggregation
from federated.aggregation.summand import Summand
from federated.aggregation.tree_sum import TreeSum

__all__ = ["PlainAggregation", "SecureAggregation", "Summand", "TreeSum"]
