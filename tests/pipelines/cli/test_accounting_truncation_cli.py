"""`ppml epsilon`, `ppml noise` and `ppml epochs --truncated-batch-size`: truncated Poisson sampling accounted
as dp-accounting's TruncatedSubsampledGaussianDpEvent, by PLD only; every epsilon recomputed here from
dp-accounting directly."""

import json
import math

import dp_accounting as dpa
import pytest
from click.testing import CliRunner
from scipy import stats

from pipelines.cli.main import cli

N, B, SIGMA, DELTA = 2000, 40, 1.0, 1e-5
BASE = ["--n", str(N), "--batch-size", str(B), "--target-delta", str(DELTA)]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def truncated_pld(k, sigma, steps, *, relation=dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, event_size=N + 1):
    """dp-accounting's PLD epsilon of ``steps`` truncated steps; under add-remove the event's dataset size is
    n + 1 (the neighbour that adds x holds n + 1 examples; dp-accounting counts x's companions as size - 1)."""
    accountant = dpa.pld.PLDAccountant(relation)
    accountant.compose(dpa.TruncatedSubsampledGaussianDpEvent(event_size, B / N, k, sigma), steps)
    return accountant.get_epsilon(DELTA)


@pytest.mark.parametrize(
    "adjacency, relation, event_size",
    [
        ("add-remove", dpa.NeighboringRelation.ADD_OR_REMOVE_ONE, N + 1),
        ("replace-one", dpa.NeighboringRelation.REPLACE_ONE, N),
    ],
)
def test_epsilon_is_the_truncated_events_and_rdp_says_why_not(adjacency, relation, event_size):
    data = json.loads(
        run(
            "epsilon",
            *BASE,
            "--noise-multiplier",
            str(SIGMA),
            "--steps",
            "200",
            "--truncated-batch-size",
            "44",
            "--adjacency",
            adjacency,
            "--json",
        ).output
    )
    assert data["epsilon_pld"] == pytest.approx(
        truncated_pld(44, SIGMA, 200, relation=relation, event_size=event_size), rel=1e-12
    )
    assert data["epsilon_rdp"] is None
    assert data["unavailable"]["rdp"].startswith("dp-accounting's RDP accountant has no analysis of truncated")
    assert data["truncated_batch_size"] == 44 and data["sensitivity"] == 2.0
    unit = data["dp_event"]["event"]
    assert unit["class_name"] == "TruncatedSubsampledGaussianDpEvent" and unit["truncated_batch_size"] == 44
    assert unit["dataset_size"] == event_size and data["dp_event"]["count"] == 200
    # the cut costs something: B + 0.6 sd is cut in about a quarter of the steps
    plain = json.loads(
        run(
            "epsilon",
            *BASE,
            "--noise-multiplier",
            str(SIGMA),
            "--steps",
            "200",
            "--adjacency",
            adjacency,
            "--accountant",
            "pld",
            "--json",
        ).output
    )
    assert data["epsilon_pld"] > plain["epsilon_pld"] * 1.01


def test_default_is_b_plus_four_sd_and_the_table_names_the_event():
    k = math.ceil(B + 4 * math.sqrt(B * (1 - B / N)))
    result = run(
        "epsilon", *BASE, "--noise-multiplier", str(SIGMA), "--epochs", "3", "--truncated-batch-size", "default"
    )
    assert result.exit_code == 0, result.output
    steps = math.ceil(3 * N / B)
    p = stats.binom.sf(k, N, B / N)
    assert (
        f"batches of more than {k} cut to a random {k} of them (probability {p:.3g} per step), accounted as "
        f"dp-accounting's TruncatedSubsampledGaussianDpEvent"
    ) in result.output
    pld = [line for line in result.output.splitlines() if line.strip().startswith("PLD")]
    assert float(pld[0].split()[1]) == pytest.approx(truncated_pld(k, SIGMA, steps), abs=5e-5)
    rdp = [line for line in result.output.splitlines() if line.strip().startswith("RDP")]
    assert rdp[0].split()[1] == "n/a" and "no analysis of truncated Poisson sampling" in rdp[0]
    assert f"-DP per example, add-remove adjacency, poisson sampling cut to {k} per batch; " in result.output


def test_noise_and_epochs_calibrate_the_truncated_event():
    """Both searches at sigma near 3 or above: each PLD of the truncated event at sigma near 1.6 costs seconds."""
    noise = json.loads(
        run("noise", "--target-epsilon", "0.5", *BASE, "--epochs", "2", "--truncated-batch-size", "44", "--json").output
    )
    steps = math.ceil(2 * N / B)
    sigma = noise["noise_multiplier_pld"]
    assert noise["truncated_batch_size"] == 44 and noise["unit_event"] == "TruncatedSubsampledGaussianDpEvent"
    assert noise["noise_multiplier_rdp"] is None and "truncated" in noise["unavailable"]["rdp"]
    assert truncated_pld(44, sigma, steps) <= 0.5 < truncated_pld(44, sigma - 1e-3, steps)

    epochs = json.loads(
        run(
            "epochs",
            "--target-epsilon",
            "2",
            *BASE,
            "--noise-multiplier",
            "4",
            "--truncated-batch-size",
            "44",
            "--json",
        ).output
    )
    steps = epochs["steps_pld"]
    assert epochs["steps_rdp"] is None and epochs["epochs_pld"] == math.floor(steps * B / N)
    assert steps > 100 and truncated_pld(44, 4.0, steps) <= 2.0 < truncated_pld(44, 4.0, steps + 1)


def test_epochs_says_why_not_one_step_fits_under_a_tight_cap():
    args = ["epochs", "--target-epsilon", "1", *BASE, "--noise-multiplier", "1", "--truncated-batch-size", "40"]
    data = json.loads(run(*args, "--json").output)
    one_step = truncated_pld(40, 1.0, 1)
    assert one_step > 1 and data["steps_pld"] == 0 and data["epochs_pld"] == 0
    assert data["one_step_epsilon"] == {"pld": pytest.approx(one_step, rel=1e-12)}
    text = run(*args).output
    assert f"a single step costs epsilon {one_step:.4g} at delta {DELTA:g}" in text
    assert "--truncated-batch-size" in text.splitlines()[-3]


@pytest.mark.parametrize(
    "command",
    [
        ["epsilon", "--noise-multiplier", "1", "--steps", "10"],
        ["noise", "--target-epsilon", "2", "--steps", "10"],
        ["epochs", "--target-epsilon", "2", "--noise-multiplier", "1"],
    ],
)
@pytest.mark.parametrize(
    "extra, option, message",
    [
        (
            ["--truncated-batch-size", "39"],
            "--truncated-batch-size",
            "must be an integer in [40, 2000] or 'default', got 39",
        ),
        (["--truncated-batch-size", "2001"], "--truncated-batch-size", "got 2001"),
        (["--truncated-batch-size", "many"], "--truncated-batch-size", "must be an integer or 'default', got 'many'"),
        (["--truncated-batch-size", "44", "--sampling", "fixed"], "--truncated-batch-size", "Poisson sampling only"),
        (["--truncated-batch-size", "44", "--num-microbatches", "4"], "--truncated-batch-size", "per-example clipping"),
        (["--truncated-batch-size", "44", "--accountant", "rdp"], "--accountant", "use --accountant pld"),
    ],
)
def test_bad_truncation_is_one_line_naming_the_option(command, extra, option, message):
    result = CliRunner().invoke(cli, [command[0], *BASE, *command[1:], *extra])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0] and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("command", [["epsilon"], ["noise"], ["epochs"], ["pipeline", "run"]])
def test_help_spells_the_default_as_the_option_takes_it(command):
    """click upper-cases a type's name into the metavar; 'DEFAULT' is refused, so the help must say 'default'."""
    text = " ".join(run(*command, "--help").output.split())
    assert "--truncated-batch-size K|default " in text and "K|DEFAULT" not in text
