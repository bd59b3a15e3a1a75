"""`ppml ldp simulate`: the table, JSON against the bundled column's truth, the plot, and bad input."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_breast_cancer, load_digits

from pipelines.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, ["ldp", "simulate", *args], catch_exceptions=False)


def test_default_is_the_coin_design_on_the_diagnosis_with_the_truth_inside_a_wide_interval():
    result = run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    truth = np.bincount(load_breast_cancer().target) / 569
    assert data["mechanism"] == "rr" and data["epsilon"] == pytest.approx(math.log(3)) and data["population"] == 569
    assert data["truth"] == pytest.approx(truth.tolist())
    assert not data["seeded"] and data["guarantee"].startswith("pure 1.09861-local DP per person")
    # rr at ln 3 over 569 people: stderr = sqrt(P(1 - P) / n) / t, t = 1/2, P = P(yes) in [1/4, 3/4]
    p_yes = 0.5 * truth[1] + 0.25
    assert data["stderr"][1] == pytest.approx(math.sqrt(p_yes * (1 - p_yes) / 569) / 0.5, rel=0.15)
    assert data["frequencies"][0] + data["frequencies"][1] == pytest.approx(1)


@pytest.mark.parametrize("mechanism", ["grr", "oue", "olh"])
def test_categorical_column_estimates_within_six_standard_errors(mechanism):
    result = run(
        "--column",
        "digit",
        "--mechanism",
        mechanism,
        "--epsilon",
        "3",
        "--population",
        "20000",
        "--seed",
        "7",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["guarantee"].startswith("none: --seed")
    truth, estimate, stderr = (np.array(data[key]) for key in ("truth", "frequencies", "stderr"))
    assert truth.size == 10 and np.all(np.abs(estimate - truth) < 6 * stderr)
    assert data["population"] == 20000 and truth.sum() == pytest.approx(1)
    digits = np.bincount(load_digits().target) / 1797
    assert np.all(np.abs(truth - digits) < 0.02)  # drawn from the column


def test_table_names_the_guarantee_and_plot_shows_error_against_epsilon_and_population(tmp_path):
    plot = tmp_path / "error.png"
    result = run("--column", "digit", "--mechanism", "oue", "--plot", str(plot), "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "guarantee: none: --seed" in result.output and "95% interval" in result.output
    assert plot.read_bytes().startswith(b"\x89PNG")
    data = json.loads(run("--column", "digit", "--mechanism", "oue", "--plot", str(plot), "--json").output)
    rows = data["sweep"]["by_epsilon"] + data["sweep"]["by_population"]
    assert len(data["sweep"]["by_epsilon"]) == 6 and len(data["sweep"]["by_population"]) == 4
    for row in rows:  # RMSE over 5 collections of 10 values: within a factor 2 of the formula
        assert 0.5 < row["rmse"] / row["predicted_rmse"] < 2, row


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epsilon", "0"], "'--epsilon'"),
        (["--epsilon", "nan"], "nan is not a finite number"),
        (["--epsilon", "21"], "'--epsilon'"),
        (["--column", "digit", "--mechanism", "rr"], "'rr' is for yes/no"),
        (["--population", "0"], "'--population'"),
        (["--confidence", "1"], "'--confidence'"),
        (["--plot", "x.nope"], "has extension 'nope'"),
        (["--column", "age"], "'--column'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = CliRunner().invoke(
        cli,
        ["ldp", "simulate", *args, "--plot", str(tmp_path / "p.png")]
        if "--plot" not in args
        else ["ldp", "simulate", *args],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert not list(tmp_path.iterdir())


def test_seeded_population_draw_and_coins_use_independent_streams(monkeypatch):
    """One seed used for both made person j's first coin a function of the row drawn for person 2j+1."""
    import privacy.local.simulation as simulation
    from privacy.local.frequency_oracle import FrequencyOracle

    seen = {"population": [], "coins": []}
    draw, randomize = simulation.draw_population, FrequencyOracle.randomize
    monkeypatch.setattr(
        simulation, "draw_population", lambda values, n, seed: seen["population"].append(seed) or draw(values, n, seed)
    )
    monkeypatch.setattr(
        FrequencyOracle,
        "randomize",
        lambda self, values, seed=None: seen["coins"].append(seed) or randomize(self, values, seed),
    )
    for _ in range(2):
        assert run("--population", "1000", "--seed", "7", "--json").exit_code == 0
    assert seen["population"][0] == seen["population"][1] and seen["coins"][0] == seen["coins"][1]  # replays
    assert len({seen["population"][0], seen["coins"][0], 7}) == 3


def test_plot_sweep_populations_are_capped(monkeypatch, tmp_path):
    import privacy.local.simulation as simulation
    from pipelines.cli.ldp import PLOT_MAX_POPULATION

    swept = []

    def sweep(make, values, *, epsilons, populations, repeats, seed):
        swept.extend(populations)
        return [
            {"epsilon": e, "population": p, "rmse": 0.1, "predicted_rmse": 0.1} for p in populations for e in epsilons
        ]

    monkeypatch.setattr(simulation, "error_sweep", sweep)
    result = run("--population", str(3 * PLOT_MAX_POPULATION), "--plot", str(tmp_path / "e.png"), "--seed", "1")
    assert result.exit_code == 0, result.output
    assert max(swept) == PLOT_MAX_POPULATION and min(swept) == round(0.25 * 3 * PLOT_MAX_POPULATION)


def test_plot_into_an_unwritable_folder_is_refused_before_any_work():
    result = CliRunner().invoke(cli, ["ldp", "simulate", "--plot", "/proc/ppml-error.png"])
    assert result.exit_code == 2 and "'--plot'" in result.output and "'/proc' is not writable" in result.output
