"""Where dp-accounting's RDP accountant cannot vouch for an epsilon, ppml refuses it instead of reporting 0.

dp-accounting 0.6.0 turns a negative Renyi divergence (cancellation at huge noise multipliers or tiny
sampling probabilities) into epsilon 0: refused. It also reports 0 through its KL branch at orders whose divergence
r has 1 - e^-r < delta^2: a true bound (total variation below delta), reported as is. Each case is
recomputed here from dp-accounting directly.
"""

import json
import logging

import dp_accounting as dpa
import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from privacy.accounting import (
    DpSgdMechanism,
    PrivacyBudget,
    UnsupportedAccounting,
    calibrate_noise_multiplier,
    compute_epsilon,
    dp_sgd_report,
    event_from_json,
)


def poisson(q, sigma, steps):
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)


def raw_rdp(event, delta):
    return dpa.rdp.RdpAccountant().compose(event).get_epsilon(delta)


TINY_Q = DpSgdMechanism(dataset_size=60000, batch_size=60000 * 1e-300, noise_multiplier=1.1, steps=1000)
HUGE_SIGMA = DpSgdMechanism(dataset_size=60000, batch_size=256, noise_multiplier=6e5, steps=14063)


def test_negative_divergence_is_refused_not_zero():
    assert raw_rdp(poisson(1e-300, 1.1, 1000), 1e-6) == 0  # what dp-accounting alone reports
    with pytest.raises(UnsupportedAccounting, match="numerically unstable"):
        compute_epsilon(TINY_Q, 1e-6, "rdp")
    budget = PrivacyBudget.for_mechanism(TINY_Q, 1e-6)
    budget.compose(TINY_Q.unit_event(), 1000)
    with pytest.raises(UnsupportedAccounting, match="numerically unstable"):
        budget.epsilon()


def test_kl_branch_zero_is_a_true_bound_and_reported():
    """At order alpha >= 1 the divergence r is at least KL, and TV <= sqrt(1 - e^-KL) <= sqrt(1 - e^-r) <
    delta: (0, delta)-DP holds, so ppml reports dp-accounting's 0 (left out, the other orders gave up to
    4000 and broke the monotonicity calibration relies on)."""
    event = poisson(256 / 60000, 6e5, 14063)
    curve = dpa.rdp.RdpAccountant().compose(event).rdp
    assert np.any(1 - np.exp(-curve) < 1e-6**2) and np.all(curve >= 0)
    assert raw_rdp(event, 1e-6) == 0
    assert compute_epsilon(HUGE_SIGMA, 1e-6, "rdp") == 0


def test_rdp_epsilon_is_monotone_near_the_kl_branch():
    """Calibration and the step limits bisect on epsilon: it must fall with noise and grow with steps where
    the KL branch starts (q = 1e-5, delta 1e-3)."""
    sparse = DpSgdMechanism(dataset_size=100_000, batch_size=1, noise_multiplier=1.0, steps=1)
    noises, steps = (1.5, 2, 5, 10, 100), (1, 10, 1000, 10_000)
    by_noise = [compute_epsilon(sparse.replace(noise_multiplier=z, steps=1000), 1e-3, "rdp") for z in noises]
    by_steps = [compute_epsilon(sparse.replace(noise_multiplier=2.0, steps=t), 1e-3, "rdp") for t in steps]
    assert by_noise == sorted(by_noise, reverse=True) and by_steps == sorted(by_steps)
    assert by_noise == [raw_rdp(poisson(1e-5, z, 1000), 1e-3) for z in noises]
    assert by_steps == [raw_rdp(poisson(1e-5, 2.0, t), 1e-3) for t in steps]


def test_pld_zero_at_tiny_sampling_rate_is_a_true_bound():
    """T * q <= delta: the example is sampled at all with probability <= delta, so (0, delta) holds."""
    assert TINY_Q.steps * TINY_Q.sampling_probability <= 1e-6
    direct = (
        dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
        .compose(poisson(TINY_Q.sampling_probability, 1.1, 1000))
        .get_epsilon(1e-6)
    )
    report = dp_sgd_report(TINY_Q, delta=1e-6)
    assert report.epsilon["pld"] == direct == 0
    assert report.epsilon["rdp"] is None and "numerically unstable" in report.unavailable["rdp"]


def test_calibration_to_a_tiny_target_lands_on_a_true_bound_or_is_refused():
    mechanism = HUGE_SIGMA.replace(noise_multiplier=1.0)
    sigma = calibrate_noise_multiplier(mechanism, target_epsilon=1e-300, target_delta=1e-6, accountant="rdp")
    assert raw_rdp(poisson(256 / 60000, sigma, 14063), 1e-6) == 0  # the KL branch's true bound
    with pytest.raises(ValueError, match="no noise multiplier up to 1e\\+06 reaches epsilon 1e-300"):
        calibrate_noise_multiplier(mechanism, target_epsilon=1e-300, target_delta=1e-6, accountant="pld")
    tiny_q = TINY_Q.replace(noise_multiplier=1.0)  # RDP breaks down at every sigma: refused, never calibrated to 0
    with pytest.raises(UnsupportedAccounting, match="not reached before noise multiplier"):
        calibrate_noise_multiplier(tiny_q, target_epsilon=1e-300, target_delta=1e-6, accountant="rdp")
    # a reachable small target still calibrates, and its epsilon is recomputed directly
    sigma = calibrate_noise_multiplier(mechanism, target_epsilon=0.01, target_delta=1e-6, accountant="rdp")
    assert 0 < raw_rdp(poisson(256 / 60000, sigma, 14063), 1e-6) <= 0.01


def test_cli_noise_refuses_a_target_pld_cannot_reach():
    result = CliRunner().invoke(
        cli, ["noise", "--target-epsilon", "1e-300", "--n", "60000", "--batch-size", "256", "--epochs", "60"]
    )
    assert result.exit_code == 2 and "--target-epsilon" in result.output and "Traceback" not in result.output


def test_cli_epsilon_tiny_sampling_probability_is_quiet_and_right(caplog):
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(
            cli,
            [
                "epsilon",
                "--sampling-probability",
                "1e-300",
                "--n",
                "60000",
                "--noise-multiplier",
                "1.1",
                "--steps",
                "1000",
                "--target-delta",
                "1e-6",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if "Renyi" in r.getMessage()]
    data = json.loads(result.output)
    assert data["epsilon_rdp"] is None and data["epsilon_pld"] == 0.0


def test_federated_run_at_large_z_reports_dp_accountings_epsilon(tmp_path):
    result = CliRunner().invoke(
        cli, ["federated", "run", "--dp", "--noise-multiplier", "1000", "--rounds", "2", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    ledger = json.loads((tmp_path / "out" / "privacy_ledger.json").read_text())
    event = event_from_json(ledger["dp_event"])
    accountant = dpa.rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE).compose(event)
    assert ledger["epsilon"]["rdp"] == accountant.get_epsilon(ledger["delta"])
