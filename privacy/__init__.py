"""ppml.privacy: differential privacy for TensorFlow models.

`privacy.accounting` (no TensorFlow import) accounts DP-SGD and federated rounds with dp-accounting.
"""

from privacy.accounting import (AccountantKind, Adjacency, DpSgdMechanism, PrivacyBudget, PrivacyReport,
                                Sampling, UnsupportedAccounting, calibrate_noise_multiplier, compute_epsilon,
                                dp_sgd_report, max_epochs)

__all__ = [
    "AccountantKind", "Adjacency", "DpSgdMechanism", "PrivacyBudget", "PrivacyReport", "Sampling",
    "UnsupportedAccounting", "calibrate_noise_multiplier", "compute_epsilon", "dp_sgd_report", "max_epochs",
]
