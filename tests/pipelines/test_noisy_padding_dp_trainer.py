"""Noisy padding in the DP Trainer without TFX: its settings (refused where make_private refuses them), the plan's
event and calibration, the ledger's delta with the clamp's; every epsilon recomputed from dp-accounting directly."""

import math

import dp_accounting as dpa
import pytest

from pipelines import privacy_ledger as pl
from pipelines.components.dp_trainer.spec import DpTrainingConfig, InvalidPrivacySetting

N, B, SIGMA_C = 389, 32, 3.0
GOOD = {
    "private": True,
    "batch_size": B,
    "epochs": 5,
    "l2_norm_clip": 1.0,
    "noise_multiplier": 1.5,
    "skip_padding": True,
    "batch_size_noise_multiplier": SIGMA_C,
}
STEPS = math.ceil(5 * N / B)


def joint_epsilon(sigma, accountant, delta=1e-3, sigma_c=SIGMA_C):
    """dp-accounting's epsilon of STEPS Poisson steps of one Gaussian of (sigma^-2 + sigma_c^-2)^-1/2."""
    effective = (sigma**-2 + sigma_c**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(effective)), STEPS)
    if accountant == "pld":
        return dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(delta)
    return dpa.rdp.RdpAccountant().compose(event).get_epsilon(delta)


@pytest.mark.parametrize(
    "change, setting, message",
    [
        ({"skip_padding": "yes"}, "skip_padding", "must be true or false, got 'yes'"),
        ({"private": False, "noise_multiplier": None, "batch_size_noise_multiplier": None}, "skip_padding", "private"),
        ({"skip_padding": False}, "batch_size_noise_multiplier", "got skip_padding=false"),
        ({"batch_size_noise_multiplier": 0}, "batch_size_noise_multiplier", "got 0"),
        ({"batch_size_noise_multiplier": float("nan")}, "batch_size_noise_multiplier", "got nan"),
        ({"batch_size_noise_multiplier": "3"}, "batch_size_noise_multiplier", "got '3'"),
        ({"sampling": "fixed"}, "batch_size_noise_multiplier", "sampling='fixed'"),
        ({"sampling": "shuffle"}, "batch_size_noise_multiplier", "sampling='shuffle'"),
        ({"truncated_batch_size": 40}, "batch_size_noise_multiplier", "truncated_batch_size=40"),
        ({"num_microbatches": 4}, "batch_size_noise_multiplier", "num_microbatches=4"),
    ],
)
def test_bad_padding_settings_name_the_key(change, setting, message):
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config({**GOOD, **change})
    assert info.value.setting == setting and message in str(info.value), str(info.value)


def test_the_plan_accounts_the_joint_gaussian_and_the_ledger_adds_the_clamp():
    plan = DpTrainingConfig.from_custom_config(GOOD).plan(dataset_size=N)
    m = plan.mechanism
    assert m.batch_size_noise_multiplier == SIGMA_C and m.steps == STEPS
    effective = (1.5**-2 + SIGMA_C**-2) ** -0.5
    assert m.unit_event() == dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(effective))
    ledger = pl.PrivacyLedger.from_dict(plan.ledger(uncovered_padding=False).to_dict())  # as the gate reads it
    assert ledger.parameters["batch_size_noise_multiplier"] == SIGMA_C
    for kind in ("rdp", "pld"):
        assert ledger.epsilons[kind] == pytest.approx(joint_epsilon(1.5, kind), rel=1e-9)
    clamp = STEPS * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(ledger.epsilon))
    assert ledger.clamp_delta == pytest.approx(clamp, rel=1e-12) and ledger.delta == 1e-3 + ledger.clamp_delta


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_target_epsilon_calibrates_the_gradient_noise_of_the_joint_gaussian(accountant):
    config = {**GOOD, "noise_multiplier": None, "target_epsilon": 3.0, "accountant": accountant}
    sigma = DpTrainingConfig.from_custom_config(config).plan(dataset_size=N).mechanism.noise_multiplier
    assert joint_epsilon(sigma, accountant) <= 3.0 < joint_epsilon(sigma - 2e-4, accountant)
    plain = DpTrainingConfig.from_custom_config({**config, "batch_size_noise_multiplier": None})
    assert plain.plan(dataset_size=N).mechanism.noise_multiplier < sigma  # the padding's noise costs gradient noise


def test_a_batch_size_noise_too_small_for_the_target_is_refused_naming_it():
    config = {**GOOD, "noise_multiplier": None, "target_epsilon": 1.0, "batch_size_noise_multiplier": 0.5}
    with pytest.raises(InvalidPrivacySetting) as info:
        DpTrainingConfig.from_custom_config(config).plan(dataset_size=N)
    limit = dpa.rdp.RdpAccountant().compose(
        dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(0.5)), STEPS)
    )
    assert info.value.setting == "batch_size_noise_multiplier"
    assert f"already spend epsilon {limit.get_epsilon(1e-3):.4g} (rdp)" in str(info.value), str(info.value)
