"""Where dp-accounting's RDP accountant cannot vouch for an epsilon, ppml refuses it instead of reporting 0.

dp-accounting 0.6.0 turns a negative Renyi divergence (cancellation at huge noise multipliers or tiny
sampling rates) into epsilon 0, and reports 0 through its KL bound at divergences below delta^2.
Each case is recomputed here from dp-accounting directly, to show the 0 it would give.
"""

import json
import logging

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from privacy.accounting import (DpSgdMechanism, PrivacyBudget, UnsupportedAccounting, calibrate_noise_multiplier,
                                compute_epsilon, dp_sgd_report)


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


def test_kl_floor_zero_is_refused():
    assert raw_rdp(poisson(256 / 60000, 6e5, 14063), 1e-6) == 0
    with pytest.raises(UnsupportedAccounting, match="epsilon 0"):
        compute_epsilon(HUGE_SIGMA, 1e-6, "rdp")


def test_pld_zero_at_tiny_sampling_rate_is_a_true_bound():
    """T * q <= delta: the example is sampled at all with probability <= delta, so (0, delta) holds."""
    assert TINY_Q.steps * TINY_Q.sampling_probability <= 1e-6
    direct = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(
        poisson(TINY_Q.sampling_probability, 1.1, 1000)).get_epsilon(1e-6)
    report = dp_sgd_report(TINY_Q, delta=1e-6)
    assert report.epsilon["pld"] == direct == 0
    assert report.epsilon["rdp"] is None and "numerically unstable" in report.unavailable["rdp"]


@pytest.mark.parametrize("kind", ["rdp", "pld"])
def test_calibration_never_lands_where_rdp_reports_zero(kind):
    mechanism = HUGE_SIGMA.replace(noise_multiplier=1.0)
    with pytest.raises(ValueError) as err:
        calibrate_noise_multiplier(mechanism, target_epsilon=1e-300, target_delta=1e-6, accountant=kind)
    if kind == "rdp":
        assert isinstance(err.value, UnsupportedAccounting) and "not reached before noise multiplier" in str(err.value)
    # a reachable small target still calibrates, and its epsilon is recomputed directly
    sigma = calibrate_noise_multiplier(mechanism, target_epsilon=0.01, target_delta=1e-6, accountant="rdp")
    assert 0 < raw_rdp(poisson(256 / 60000, sigma, 14063), 1e-6) <= 0.01


def test_cli_noise_refuses_unreachable_target():
    result = CliRunner().invoke(cli, ["noise", "--target-epsilon", "1e-300", "--n", "60000", "--batch-size", "256",
                                      "--epochs", "60"])
    assert result.exit_code == 2 and "--target-epsilon" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["noise", "--target-epsilon", "1e-300", "--n", "60000", "--batch-size", "256",
                                      "--epochs", "60", "--accountant", "rdp", "--json"])
    data = json.loads(result.output)
    assert data["epsilon_rdp"] is None and data["noise_multiplier_rdp"] is None and "rdp" in data["unavailable"]


def test_cli_epsilon_tiny_sampling_rate_is_quiet_and_right(caplog):
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(cli, ["epsilon", "--sampling-rate", "1e-300", "--n", "60000",
                                          "--noise-multiplier", "1.1", "--steps", "1000", "--target-delta", "1e-6",
                                          "--json"])
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if "Renyi" in r.getMessage()]
    data = json.loads(result.output)
    assert data["epsilon_rdp"] is None and data["epsilon_pld"] == 0.0


def test_federated_run_refuses_unreachable_target(tmp_path):
    result = CliRunner().invoke(cli, ["federated", "run", "--dp", "--target-epsilon", "1e-300", "--rounds", "2",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "--target-epsilon" in result.output
    assert "epsilon rdp 0" not in result.output and "Traceback" not in result.output
