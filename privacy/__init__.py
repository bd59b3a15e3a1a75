"""ppml.privacy: differential privacy for TensorFlow models.

`privacy.accounting` (no TensorFlow import) accounts DP-SGD and federated rounds with dp-accounting.
`privacy.keras` trains Keras models with DP-SGD; its public names are re-exported here lazily, so
`import privacy` never imports TensorFlow.
"""

import importlib

from privacy.accounting import (AccountantKind, Adjacency, DpSgdMechanism, PrivacyBudget, PrivacyReport,
                                Sampling, UnsupportedAccounting, calibrate_noise_multiplier, compute_epsilon,
                                dp_sgd_report, max_epochs)

__all__ = [
    "AccountantKind", "Adjacency", "DpSgdMechanism", "PrivacyBudget", "PrivacyReport", "Sampling",
    "UnsupportedAccounting", "calibrate_noise_multiplier", "compute_epsilon", "dp_sgd_report", "max_epochs",
]

_KERAS_NAMES = (
    "DPConfigurationError", "DPKerasAdagradOptimizer", "DPKerasAdamOptimizer", "DPKerasSGDOptimizer", "DPModel",
    "DPSequential", "PrivacyBudgetCallback", "PrivacyBudgetExceeded", "fixed_size_batches", "make_private",
    "poisson_batches", "privacy_budget", "private_training",
)
__all__ += list(_KERAS_NAMES)


def __getattr__(name):
    """Imports `privacy.keras` (and so TensorFlow) only when one of its names is used."""
    if name in _KERAS_NAMES:
        return getattr(importlib.import_module("privacy.keras"), name)
    raise AttributeError(f"module 'privacy' has no attribute {name!r}")
