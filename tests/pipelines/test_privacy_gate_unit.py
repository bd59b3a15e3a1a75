"""The privacy gate compares the ledger's unit of privacy with the budget's (no TFX needed)."""

import math

import pytest

from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import spec
from privacy.accounting import DpSgdMechanism, PrivacyBudget, compute_epsilon

CLIENTS = DpSgdMechanism(dataset_size=50, batch_size=5, noise_multiplier=0.9, steps=3, sampling="fixed")


def _fedavg_ledger(**parameters):
    budget = PrivacyBudget.for_mechanism(CLIENTS, 1e-3).compose(CLIENTS.unit_event(), 3)
    return pl.PrivacyLedger(budget=budget, mechanism=pl.DP_FEDAVG, parameters={
        "dataset_size": 50, "batch_size": 5, "noise_multiplier": 0.9, "steps": 3, "sampling": "fixed",
        "adjacency": "replace-one", "l2_norm_clip": 0.5, **parameters})


def test_a_ledger_meets_only_a_budget_in_its_own_unit():
    ledger = _fedavg_ledger(privacy_unit="client", noise="csprng")
    epsilon, note = spec.budget_epsilon(ledger, "client")
    assert epsilon == pytest.approx(compute_epsilon(CLIENTS, 1e-3, "rdp"), rel=1e-12)
    assert note.startswith("RDP accountant") and note.endswith(", client-level")
    for budget_unit in ("example", "user"):
        epsilon, note = spec.budget_epsilon(ledger, budget_unit)
        assert math.isinf(epsilon) and f"the ledger's epsilon is client-level, the budget is {budget_unit}" in note
    dp_sgd = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=389, batch_size=32, noise_multiplier=1.3,
                                                        steps=122), l2_norm_clip=1.0, delta=1e-3)
    assert spec.budget_epsilon(dp_sgd, "example")[0] == dp_sgd.epsilon
    assert math.isinf(spec.budget_epsilon(dp_sgd, "client")[0])
    assert math.isinf(spec.budget_epsilon(None, "example")[0])


def test_seeded_noise_is_no_guarantee_for_the_gate():
    epsilon, note = spec.budget_epsilon(_fedavg_ledger(privacy_unit="client", noise="seeded"), "client")
    assert math.isinf(epsilon) and "recorded seed" in note


def test_the_budgets_unit_travels_in_the_eval_config(python_subprocess):
    code = """
from pipelines.components.private_evaluator import spec
from pipelines.pipeline import eval_config
config = lambda **kw: eval_config(min_accuracy=0.5, max_membership_auc=0.6, epsilon_budget=2.0, **kw)
print(spec.gate_settings(config(privacy_unit="user")).privacy_unit, spec.gate_settings(config()).privacy_unit)
try:
    spec.privacy_metrics(epsilon_budget=2.0, privacy_unit="row")
except ValueError as err:
    print(err)
"""
    lines = python_subprocess(code, legacy_keras=True).stdout.strip().splitlines()
    assert lines[-2:] == ["user example", "privacy_unit must be one of example, user, client, got 'row'"]
