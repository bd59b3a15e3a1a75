"""`ppml federated run --dp --trust-model local`: per-client calibration and accounting, what it reports, and what
it refuses."""

import json

import dp_accounting
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting

SMALL = ["--clients", "20", "-C", "0.5", "--rounds", "3", "--model", "linear"]


def _run(args, tmp_path):
    return CliRunner().invoke(cli, ["federated", "run", "--out", str(tmp_path / "run"), *SMALL, *args])


def _epsilon(z, rounds, delta):
    return dp_accounting.rdp.RdpAccountant().compose(dp_accounting.GaussianDpEvent(z / 2), rounds).get_epsilon(delta)


def test_local_dp_run_calibrates_z_per_client_and_reports_the_worst_clients_epsilon(tmp_path):
    result = _run(
        ["--dp", "--trust-model", "local", "--target-epsilon", "5", "--secure-aggregation", "--json"], tmp_path
    )
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout[result.stdout.index("{") :])
    strategy = history["config"]["strategy"]
    assert strategy["name"] == "LocalDifferentialPrivacy" and strategy["trust_model"] == "local"
    z, delta = strategy["noise_multiplier"], strategy["target_delta"]
    assert delta == 0.01 and 5 - 0.01 <= _epsilon(z, 3, delta) <= 5  # a client sent in all 3 rounds
    last = history["rounds"][-1]["metrics"]
    assert last["epsilon_rdp"] == pytest.approx(_epsilon(z, last["max_client_rounds"], delta), rel=1e-12)
    assert last["noise_stddev_per_client"] == pytest.approx(z * 1.0)
    assert "trust model local: no trusted server" in result.stderr
    assert not (tmp_path / "run" / "privacy_ledger.json").exists()
    from federated.simulation.history import History

    assert History.from_dict(history).axis_labels()[1].startswith("worst client's epsilon (rdp, delta=0.01), local DP")


def test_text_report_names_the_trust_model_and_the_missing_ledger(tmp_path):
    result = _run(["--dp", "--trust-model", "local", "--noise-multiplier", "4"], tmp_path)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("local DP, per client"))
    assert "sensitivity 2C" in line and "no privacy ledger" in line and "z = 4 on each update" in line


@pytest.mark.parametrize(
    "args,option",
    [
        (["--trust-model", "local"], "--trust-model"),
        (["--dp", "--trust-model", "trusted"], "--trust-model"),
        (["--dp", "--trust-model", "local", "--clip", "adaptive"], "--clip"),
        (["--dp", "--trust-model", "local", "--seeded-noise"], "--seeded-noise"),
        (["--dp", "--trust-model", "local", "--target-quantile", "0.7"], "--target-quantile"),
        (["--dp", "--trust-model", "local", "--clipped-count-stddev", "3"], "--clipped-count-stddev"),
        (["--dp", "--trust-model", "local", "--noise-multiplier", "1.9"], "--noise-multiplier"),
    ],
)
def test_refused_combinations_are_one_line_naming_the_option(args, option, tmp_path):
    result = _run(args, tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert option in result.stderr and not (tmp_path / "run").exists()


def test_a_max_epsilon_below_one_rounds_epsilon_is_refused_at_plan_time(tmp_path):
    """One round's epsilon of a client follows from z, delta and the accountant (public): a --max-epsilon
    below it would stop before round 1, so it is refused before training (it printed `stopped` and exited 0)."""
    first = _epsilon(4, 1, 0.01)
    result = _run(
        ["--dp", "--trust-model", "local", "--noise-multiplier", "4", "--max-epsilon", f"{first * 0.99}"], tmp_path
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "--max-epsilon" in result.stderr and f"one round's epsilon {first:.4g}" in result.stderr
    assert not (tmp_path / "run").exists()
    result = _run(
        ["--dp", "--trust-model", "local", "--noise-multiplier", "4", "--max-epsilon", f"{first * 1.01}"], tmp_path
    )
    assert result.exit_code == 0 and "max_epsilon" in result.stdout + result.stderr, result.output


def test_the_federated_trainer_refuses_local_dp_whose_ledger_it_cannot_write():
    with pytest.raises(InvalidFederatedSetting, match="trust_model"):
        FederatedTrainingConfig.for_trainer(
            {"label_key": "y", "private": True, "num_classes": 2, "trust_model": "local"}
        )
