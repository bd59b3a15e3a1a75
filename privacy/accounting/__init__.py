"""Privacy accounting for DP-SGD and federated rounds, on dp-accounting's RDP and PLD accountants.

Importing this package does not import TensorFlow.
"""

from privacy.accounting.accountants import (
    AccountantKind,
    GroupPrivacyAccountant,
    dp_accounting_version,
    epsilon_of,
    group_delta,
    make_accountant,
)
from privacy.accounting.budget import PrivacyBudget
from privacy.accounting.calibration import (
    CALIBRATED_RANGE,
    PaddingBelowPldFloor,
    PaddingNoiseTooSmall,
    calibrate_noise_multiplier,
    max_epochs,
    max_units,
)
from privacy.accounting.events import event_from_json, event_to_json
from privacy.accounting.mechanism import (
    MAX_STEPS,
    NOISE_MULTIPLIER_RANGE,
    SLACK,
    SLACK_TEXT,
    Adjacency,
    DpSgdMechanism,
    NeighboringRelation,
    Sampling,
    UnsupportedAccounting,
    resolve_adjacency,
    steps_for_epochs,
    steps_per_epoch,
)
from privacy.accounting.noise_cutoff import NoiseCutoff, NoiseCutoffError, NoiseDraws
from privacy.accounting.report import (
    DEFAULT_DELTA_RULE,
    MAX_PER_EPOCH_ROWS,
    PrivacyReport,
    compute_epsilon,
    default_delta,
    delta_below_one_over_n,
    delta_warning,
    dp_sgd_report,
)
from privacy.accounting.tf_privacy import compute_dp_sgd_privacy

__all__ = [
    "CALIBRATED_RANGE",
    "DEFAULT_DELTA_RULE",
    "MAX_PER_EPOCH_ROWS",
    "MAX_STEPS",
    "NOISE_MULTIPLIER_RANGE",
    "SLACK",
    "SLACK_TEXT",
    "AccountantKind",
    "Adjacency",
    "DpSgdMechanism",
    "GroupPrivacyAccountant",
    "NeighboringRelation",
    "NoiseCutoff",
    "NoiseCutoffError",
    "NoiseDraws",
    "PaddingBelowPldFloor",
    "PaddingNoiseTooSmall",
    "PrivacyBudget",
    "PrivacyReport",
    "Sampling",
    "UnsupportedAccounting",
    "calibrate_noise_multiplier",
    "compute_dp_sgd_privacy",
    "compute_epsilon",
    "default_delta",
    "delta_below_one_over_n",
    "delta_warning",
    "dp_accounting_version",
    "dp_sgd_report",
    "epsilon_of",
    "event_from_json",
    "event_to_json",
    "group_delta",
    "make_accountant",
    "max_epochs",
    "max_units",
    "resolve_adjacency",
    "steps_for_epochs",
    "steps_per_epoch",
]
