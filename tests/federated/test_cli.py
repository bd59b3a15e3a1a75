"""`ppml federated run` end to end on digits: JSON history, PNG, epsilon, and named errors."""

import json
import re

import dp_accounting
import numpy as np
import pytest
from click.testing import CliRunner
from dp_accounting import dp_event

from pipelines.cli.main import cli


def test_federated_run_dp_secure_aggregation(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "federated", "run", "--clients", "20", "--rounds", "3", "--sampling", "poisson", "--fraction", "0.4",
        "--partition", "dirichlet", "--alpha", "0.5", "--dp", "--noise-multiplier", "0.7", "--clip", "fixed",
        "--clipping-norm", "0.5", "--target-delta", "1e-3", "--secure-aggregation", "--secure-noise", "--out", str(out),
        "--json"])
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout[result.stdout.index("{"):])
    assert [r["round"] for r in history["rounds"]] == [1, 2, 3]
    event = dp_event.PoissonSampledDpEvent(0.4, dp_event.GaussianDpEvent(0.7))
    expected = dp_accounting.rdp.RdpAccountant().compose(event, 3).get_epsilon(1e-3)
    assert history["rounds"][-1]["metrics"]["epsilon_rdp"] == pytest.approx(expected, rel=1e-12)
    assert history["rounds"][0]["aggregation"]["aborted"] is False
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strategy = json.loads((out / "history.json").read_text())["config"]["strategy"]
    assert strategy["name"] == "DifferentialPrivacyFixedClipping" and strategy["secure_noise"] is True


def test_federated_run_plain_prints_progress(tmp_path):
    result = CliRunner().invoke(cli, ["federated", "run", "--clients", "10", "--rounds", "2", "--fraction", "0.5",
                                      "--server-optimizer", "adam", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "round 2: 5/5 clients" in result.output and "final accuracy" in result.output


def test_npz_without_a_test_split_holds_out_a_fifth_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((200, 6)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y, keys=np.arange(200) % 8)
    result = CliRunner().invoke(cli, ["federated", "run", "--dataset", str(tmp_path / "data.npz"), "--partition",
                                      "natural", "--rounds", "2", "--fraction", "0.5", "--execution", "numpy",
                                      "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout[result.stdout.index("{"):])
    assert history["config"]["client_sizes_sum"] == 160 and history["config"]["num_clients"] == 8
    assert history["config"]["execution"] == "numpy" and history["rounds"][-1]["evaluation"]["accuracy"] > 0
    np.savez(tmp_path / "half.npz", x=x, y=y, x_test=x[:10])
    result = CliRunner().invoke(cli, ["federated", "run", "--dataset", str(tmp_path / "half.npz"), "--rounds", "1",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "'x_test' with 'y_test'); it holds ['x', 'x_test', 'y']" in result.output


@pytest.mark.parametrize("args, message", [
    (["--partition", "dirichlet", "--alpha", "0"], "alpha must be a finite number > 0, got 0.0"),
    (["--fraction", "1.5"], r"fraction must be in \(0, 1\], got 1.5"),
    (["--partition", "shards", "--clients", "1000"], "2000 shards"),
    (["--dataset", "mnist.npz"], "--dataset must be 'digits' or an existing .npz file"),
])
def test_bad_options_are_named(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["federated", "run", "--rounds", "1", "--out", str(tmp_path)] + args)
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
