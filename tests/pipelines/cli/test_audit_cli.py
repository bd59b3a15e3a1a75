"""`ppml audit`: the report, its JSON (claimed epsilon recomputed from dp-accounting), the plot, bad input."""

import json

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli

SMALL = ["audit", "--num-canaries", "200", "--epochs", "2", "--batch-size", "512", "--noise-multiplier", "4"]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_json_claim_matches_dp_accounting_and_the_bound_is_below_it(tmp_path):
    plot = tmp_path / "audit.png"
    result = run(*SMALL, "--json", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    q = 512 / data["dataset_size"]
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(4.0)), data["steps"])
    rdp = dpa.rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(1e-5)
    assert data["claims"][-1] == pytest.approx({"rdp": rdp, "pld": pld}, rel=1e-6)
    assert pld < rdp and data["claim_accountant"] == "pld"
    assert data["claimed_epsilon"][-1] == pytest.approx(pld, rel=1e-6)  # the smallest epsilon ppml reports
    assert len(data["lower_bound"]) == 2 and data["final"]["num_canaries"] == 200
    assert data["final_split"]["num_canaries"] == 100
    assert data["final"]["estimator"] == data["final_split"]["estimator"] == "f-dp"  # a subsampled run's default
    # f-dp-gaussian is not sound for a subsampled run; f-dp-claimed's PLDs are spent only where it is asked for.
    assert set(data["compared"]) == {"counting", "f-dp"}
    assert data["compared"]["f-dp"] == data["lower_bound"][-1]
    assert data["lower_bound"][-1] <= data["claimed_epsilon"][-1] and data["violated"] is False
    assert "included" not in result.output  # the secret bits never leave the run
    assert plot.stat().st_size > 1000


def test_text_report_names_claim_bound_and_verdict():
    result = run(*SMALL, "--fault", "no-noise")
    assert result.exit_code == 0, result.output
    assert "claimed epsilon" in result.output and "lower bound" in result.output
    assert "CLAIM REFUTED" in result.output  # 200 canaries and no noise: bound about 3 > claim about 1
    assert "the smallest ppml reports (RDP " in result.output and ", PLD " in result.output
    assert "2347" not in result.output and "training rows      1347 digits + the included canaries" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--num-canaries", "0"], "--num-canaries"),
        (["--num-canaries", "1"], "'--num-canaries': 1 is not in the range 32<=x<=100000"),
        (["--num-canaries", "100001"], "--num-canaries"),
        (
            ["--num-canaries", "32", "--epochs", "1", "--batch-size", "2", "--noise-multiplier", "1e6"],
            "cannot account this run (noise_multiplier 1e+06, batch_size 2, 674 steps)",
        ),
        (
            ["--kind", "black-box", "--num-canaries", "1000", "--batch-size", "256"],
            "from the 450 held-out inputs, got num_canaries=1000",
        ),
        (["--kind", "black-box", "--num-canaries", "400"], "batch_size: black-box canaries need Poisson sampling"),
        (["--batch-size", "5000"], "batch_size must be an integer <= 1347 (the training rows), got 5000"),
        (  # the full-batch default holds (n + m) x m slot gradients a step: 40 GB of float32 here
            ["--num-canaries", "100000"],
            "num_canaries: a step of 101347 rows holds 10,134,700,000 per-example canary-slot gradients",
        ),
        (
            ["--noise-multiplier", "0.002", "--fault", "clip-4x"],
            "noise_multiplier must be in [0.004, 1e+06] (with fault clip-4x)",
        ),
        (["--l2-norm-clip", "1e9"], "l2_norm_clip must be in (0, 5000] (for white-box"),
        (["--delta", "2"], "must be in (0, 1), got 2.0"),
        (["--noise-multiplier", "nan"], "must be a finite number > 0, got nan"),
        (["--plot", "audit.txt"], "must end in"),
        (["--fault", "clip-3x"], "--fault"),
        (["--estimator", "fdp"], "--estimator"),
        (
            ["--estimator", "f-dp-gaussian", "--batch-size", "512"],
            "estimator f-dp-gaussian bounds a mu-GDP run: it needs sampling probability 1",
        ),
        (  # N counts the included canaries here, so the claimed curve (q = B / N) would depend on the bits
            ["--estimator", "f-dp-claimed", "--batch-size", "512"],
            "estimator f-dp-claimed tests one fixed claimed curve: it needs a data size that does not depend on the "
            "canary bits",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(cli, ["audit", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_diverged_run_is_one_line_and_exit_2():
    result = CliRunner().invoke(
        cli,
        ["audit", "--kind", "black-box", "--num-canaries", "50", "--epochs", "1", "--batch-size", "256"]
        + ["--learning-rate", "1e30"],
    )
    assert result.exit_code == 2, result.output
    assert "training diverged" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["none", "clip-2x"])
def test_the_default_configuration_refutes_a_2c_clip_and_not_the_honest_run(fault):
    """`ppml audit`'s defaults: 10,000 white-box canaries, every one of the N = 1,347 + 10,000 rows in each of 4 steps
    at sigma 2 (mu = 1 as accounted, 2 when clipped at 2C), bounded by f-DP against the mu-GDP curve. 200 of 200
    idealised audits of these scores refute clip-2x (smallest bound 4.58 against the claim 4.38), none of 200
    honest ones exceed 3.4 (README)."""
    result = run("audit", "--fault", fault, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dataset_size"] == data["plan"]["batch_size"] == 1347 + 10_000 and data["steps"] == 4
    event = dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(2.0), 4)  # sampling probability 1
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(1e-5)
    assert data["claimed_epsilon"][-1] == pytest.approx(pld, rel=1e-3) and data["claim_accountant"] == "pld"
    assert data["final"]["estimator"] == "f-dp-gaussian"
    if fault == "none":
        assert data["violated"] is False and data["lower_bound"][-1] < 0.8 * pld
    else:
        assert data["violated"] is True and data["lower_bound"][-1] > pld
