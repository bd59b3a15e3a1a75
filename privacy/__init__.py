"""ppml.privacy: differential privacy for TensorFlow models.

`privacy.accounting` (no TensorFlow import) accounts DP-SGD and federated rounds with dp-accounting.
`privacy.keras` trains Keras models with DP-SGD; `privacy.auditing` measures empirical leakage;
`privacy.encrypted` runs secret-shared inference. The names below are re-exported lazily: `import privacy`
imports nothing heavy (neither TensorFlow nor dp-accounting) until a name is used.
"""

import importlib

_EXPORTS = {
    "privacy.accounting": (
        "AccountantKind",
        "Adjacency",
        "DpSgdMechanism",
        "PrivacyBudget",
        "PrivacyReport",
        "Sampling",
        "UnsupportedAccounting",
        "calibrate_noise_multiplier",
        "compute_dp_sgd_privacy",
        "compute_epsilon",
        "dp_sgd_report",
        "max_epochs",
    ),
    "privacy.auditing": ("MembershipAudit", "loss_threshold_audit", "per_example_cross_entropy"),
    "privacy.keras": (
        "DPConfigurationError",
        "DPGradientDescentGaussianOptimizer",
        "DPKerasAdagradOptimizer",
        "DPKerasAdamOptimizer",
        "DPKerasSGDOptimizer",
        "DPModel",
        "DPSequential",
        "PrivacyBudgetCallback",
        "PrivacyBudgetExceeded",
        "fixed_size_batches",
        "make_private",
        "poisson_batches",
        "privacy_budget",
        "private_training",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    """Imports the owning submodule only when one of its names is used."""
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'privacy' has no attribute {name!r}")
