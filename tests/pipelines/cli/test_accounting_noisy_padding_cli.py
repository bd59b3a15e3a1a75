"""`ppml epsilon --batch-size-noise-multiplier`: noisy padding accounted as one Poisson-sampled Gaussian of
(sigma^-2 + sigma_c^-2)^-1/2 per step plus the clamp's delta; epsilon recomputed here from dp-accounting."""

import json
import math

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines.cli import accounting as accounting_cli
from pipelines.cli.main import cli
from privacy.accounting import noisy_padding

N, B, SIGMA, STEPS, DELTA = 2000, 40, 1.0, 300, 1e-5
BASE = ["epsilon", "--n", str(N), "--batch-size", str(B), "--noise-multiplier", str(SIGMA), "--steps", str(STEPS)]
BASE += ["--target-delta", str(DELTA)]


def run(*args):
    return CliRunner().invoke(cli, [*BASE, *args], catch_exceptions=False)


def test_epsilon_is_the_joint_gaussians_and_delta_gains_the_clamp():
    result = run("--batch-size-noise-multiplier", "4", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    joint = (SIGMA**-2 + 4.0**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(joint)), STEPS)
    pld = dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA)
    rdp = dpa.rdp.RdpAccountant().compose(event).get_epsilon(DELTA)
    assert data["epsilon_pld"] == pytest.approx(pld, rel=1e-12)
    assert data["epsilon_rdp"] == pytest.approx(rdp, rel=1e-12)
    clamp = STEPS * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(min(pld, rdp)))
    assert data["clamp_delta"] == pytest.approx(clamp, rel=1e-12)
    assert data["guarantee_delta"] == DELTA + data["clamp_delta"]
    assert data["batch_size_noise_multiplier"] == 4.0 and data["effective_noise_multiplier"] == joint
    plain = json.loads(run("--json").output)
    assert plain["clamp_delta"] == 0.0 and plain["epsilon_pld"] < data["epsilon_pld"]


TARGET, SIGMA_C = 2.0, 4.0
PADDED = ["--batch-size-noise-multiplier", str(SIGMA_C), "--target-delta", str(DELTA), "--json"]


def joint_epsilon(sigma, steps, accountant, sigma_c=SIGMA_C):
    """dp-accounting's epsilon at DELTA of ``steps`` Poisson steps (q = B/N) of one Gaussian of sigma_eff."""
    effective = (sigma**-2 + sigma_c**-2) ** -0.5
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(B / N, dpa.GaussianDpEvent(effective)), steps)
    if accountant == "pld":
        return dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(DELTA)
    return dpa.rdp.RdpAccountant().compose(event).get_epsilon(DELTA)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def calibrated(command, *args):
    """``ppml <command> --target-epsilon TARGET`` with noisy padding of SIGMA_C rows, as JSON."""
    result = invoke(command, "--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), *args, *PADDED)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def clamp(steps, epsilon):
    return steps * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(epsilon))


def assert_deltas(data, accountant, steps):
    """The row's clamp delta at its own epsilon, and its guarantee delta: DELTA plus that."""
    assert data[f"clamp_delta_{accountant}"] == pytest.approx(clamp(steps, data[f"epsilon_{accountant}"]), rel=1e-12)
    assert data[f"guarantee_delta_{accountant}"] == DELTA + data[f"clamp_delta_{accountant}"]


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_noise_calibrates_sigma_of_the_joint_gaussian_and_round_trips_through_epsilon(accountant):
    data = calibrated("noise", "--steps", str(STEPS), "--accountant", accountant)
    sigma, eps = data[f"noise_multiplier_{accountant}"], data[f"epsilon_{accountant}"]
    assert data["batch_size_noise_multiplier"] == SIGMA_C
    assert data[f"effective_noise_multiplier_{accountant}"] == pytest.approx((sigma**-2 + SIGMA_C**-2) ** -0.5)
    assert eps == pytest.approx(joint_epsilon(sigma, STEPS, accountant), rel=1e-12) and eps <= TARGET
    assert joint_epsilon(sigma - 2e-4, STEPS, accountant) > TARGET  # the smallest such sigma (tolerance 1e-4)
    assert_deltas(data, accountant, STEPS)
    size = ["--n", str(N), "--batch-size", str(B), "--steps", str(STEPS), "--accountant", accountant]
    back = invoke("epsilon", "--noise-multiplier", repr(sigma), *size, *PADDED)
    assert back.exit_code == 0, back.output
    report = json.loads(back.output)
    assert report[f"epsilon_{accountant}"] == eps and report["guarantee_delta"] == data[f"guarantee_delta_{accountant}"]


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epochs_affords_the_steps_of_the_joint_gaussian(accountant):
    data = calibrated("epochs", "--noise-multiplier", str(SIGMA), "--accountant", accountant)
    steps = data[f"steps_{accountant}"]
    assert data["effective_noise_multiplier"] == (SIGMA**-2 + SIGMA_C**-2) ** -0.5
    assert joint_epsilon(SIGMA, steps, accountant) <= TARGET < joint_epsilon(SIGMA, steps + 1, accountant)
    assert data[f"epochs_{accountant}"] == math.floor(steps * B / N)
    assert data[f"epsilon_{accountant}"] == pytest.approx(joint_epsilon(SIGMA, steps, accountant), rel=1e-12)
    assert_deltas(data, accountant, steps)


def test_epochs_without_noisy_padding_spends_no_extra_accounting():
    """The afforded steps' epsilon is computed only for the clamp: without the option, epochs' JSON is as before."""
    args = ["--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), "--noise-multiplier", str(SIGMA)]
    result = invoke("epochs", *args, "--accountant", "rdp", "--target-delta", str(DELTA), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["batch_size_noise_multiplier"] is None and data["effective_noise_multiplier"] == SIGMA
    assert not {"epsilon_rdp", "clamp_delta_rdp", "guarantee_delta_rdp"} & set(data)


def test_text_output_says_what_the_row_count_covers():
    result = invoke(
        "noise", "--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS),
        "--accountant", "rdp", *PADDED[:-1],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sigma = float(result.output.split("RDP")[1].split()[0])
    assert f"Z ~ N(0, {SIGMA_C:g}^2)" in result.output and "the row count is covered by epsilon" in result.output
    eps = joint_epsilon(sigma, STEPS, "rdp")
    assert f"guarantee delta (the accountant's plus the clamp's): RDP {DELTA:g} + {clamp(STEPS, eps):.3g}." in (
        result.output
    )


def test_a_batch_size_noise_too_small_for_the_target_is_refused_naming_both():
    result = invoke(
        "noise", "--target-epsilon", "1", "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS),
        "--batch-size-noise-multiplier", "0.5", "--target-delta", str(DELTA),
    )  # fmt: skip
    assert result.exit_code == 2, result.output  # out of both accountants' reach: the error gives PLD's (tighter) limit
    limit = joint_epsilon(math.inf, STEPS, "pld", sigma_c=0.5)
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--batch-size-noise-multiplier': batch_size_noise_multiplier 0.5")
    assert "epsilon 1 at delta 1e-05" in error and f"epsilon {limit:.4g} (pld)" in error


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_the_refusal_is_exactly_where_the_target_is_out_of_reach(accountant):
    """sigma_eff < sigma_c for every sigma: a target at or below the epsilon of steps of sigma_c itself (the limit,
    recomputed here) is refused; one just above it is reached (by a large sigma), not refused as merely slow."""
    limit = float(joint_epsilon(math.inf, STEPS, accountant, sigma_c=2.0))
    args = ["--n", str(N), "--batch-size", str(B), "--steps", str(STEPS), "--accountant", accountant]
    args += ["--batch-size-noise-multiplier", "2", "--target-delta", str(DELTA), "--json"]
    below = invoke("noise", "--target-epsilon", repr(limit * (1 - 1e-6)), *args)
    assert below.exit_code == 2 and "is too small for epsilon" in below.output, below.output
    target = limit * 1.001
    above = invoke("noise", "--target-epsilon", repr(target), *args)
    assert above.exit_code == 0, above.output
    sigma = json.loads(above.output)[f"noise_multiplier_{accountant}"]
    assert (
        joint_epsilon(sigma, STEPS, accountant, sigma_c=2.0)
        <= target
        < joint_epsilon(sigma / 1.01, STEPS, accountant, sigma_c=2.0)
    )


def test_with_both_accountants_a_target_only_pld_reaches_leaves_rdp_out_and_pld_answers():
    """A target between PLD's and RDP's limit (steps of sigma_c itself): RDP's row says why it has no sigma, PLD's
    sigma meets the target (recomputed); exit 0, not a refusal of the whole command."""
    limits = {kind: float(joint_epsilon(math.inf, STEPS, kind, sigma_c=2.0)) for kind in ("rdp", "pld")}
    assert limits["pld"] < limits["rdp"]
    target = (limits["pld"] + limits["rdp"]) / 2
    result = invoke(
        "noise", "--target-epsilon", repr(target), "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS),
        "--batch-size-noise-multiplier", "2", "--target-delta", str(DELTA), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["noise_multiplier_rdp"] is None and "is too small for epsilon" in data["unavailable"]["rdp"]
    assert data["clamp_delta_rdp"] is None and "pld" not in data["unavailable"]
    assert joint_epsilon(data["noise_multiplier_pld"], STEPS, "pld", sigma_c=2.0) <= target
    assert_deltas(data, "pld", STEPS)


LENGTHS = {
    "epsilon": ["--noise-multiplier", str(SIGMA), "--steps", str(STEPS)],
    "noise": ["--target-epsilon", "2", "--steps", str(STEPS)],
    "epochs": ["--target-epsilon", "2", "--noise-multiplier", str(SIGMA)],
}


@pytest.mark.parametrize("command", list(LENGTHS))
@pytest.mark.parametrize(
    "args, named",
    [
        (["--batch-size-noise-multiplier", "0"], "got 0.0"),
        (["--batch-size-noise-multiplier", "nan"], "got nan"),
        (["--batch-size-noise-multiplier", "3", "--sampling", "shuffle"], "sampling='shuffle'"),
        (["--batch-size-noise-multiplier", "3", "--truncated-batch-size", "50"], "truncated_batch_size=50"),
        (["--batch-size-noise-multiplier", "3", "--adjacency", "replace-one"], "adjacency='replace-one'"),
        (["--batch-size-noise-multiplier", "3", "--num-microbatches", "4"], "num_microbatches=4"),
    ],
)
def test_refusals_exit_2_with_one_line_naming_the_value(command, args, named):
    """The same refusals from each accounting command."""
    result = invoke(command, "--n", str(N), "--batch-size", str(B), *LENGTHS[command], *args)
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--batch-size-noise-multiplier'") and named in error, error
    assert "Traceback" not in result.output


def test_a_sigma_c_below_plds_step_floor_with_pld_alone_is_refused_naming_it():
    """PLD is not asked below its per-step noise floor, and with sigma_c under it every step's sigma_eff is: with
    --accountant pld no accountant answers, so the command exits 2 naming --batch-size-noise-multiplier (the setting
    to change; it exited 0 with an n/a row, then 2 naming --accountant)."""
    result = invoke(
        "noise", "--target-epsilon", "3", "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS),
        "--accountant", "pld", "--batch-size-noise-multiplier", "0.1",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--batch-size-noise-multiplier'"), error
    assert "batch_size_noise_multiplier 0.1" in error and "the RDP accountant covers it" in error
    assert "Traceback" not in result.output


def test_noise_without_noisy_padding_spends_no_extra_accounting(monkeypatch):
    """The clamp's delta is computed only with noisy padding: without the option, noise's JSON is as before it."""
    monkeypatch.setattr(accounting_cli, "added_deltas", None)  # a call would fail
    args = ["--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS)]
    result = invoke("noise", *args, "--target-delta", str(DELTA), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for kind in ("rdp", "pld"):
        assert data[f"epsilon_{kind}"] <= TARGET and data[f"noise_multiplier_{kind}"] > 0
        assert not {f"{key}_{kind}" for key in ("effective_noise_multiplier", "clamp_delta", "guarantee_delta")} & set(
            data
        )


def refused_between_rows(monkeypatch, command, args):
    """``command``'s JSON with both accountants before and after setting the clamp's share of delta between its two
    rows' (each row's clamp at its own steps and epsilon): (first, then, shares, the refused row, the kept row)."""
    first = json.loads(invoke(command, *args).output)
    steps = {kind: first.get(f"steps_{kind}", first.get("steps")) for kind in ("rdp", "pld")}
    shares = {kind: clamp(steps[kind], first[f"epsilon_{kind}"]) / DELTA for kind in ("rdp", "pld")}
    refused, kept = sorted(shares, key=shares.get, reverse=True)
    assert shares[refused] > shares[kept]
    monkeypatch.setattr(noisy_padding, "MAX_CLAMP_SHARE", (shares[refused] + shares[kept]) / 2)
    result = invoke(command, *args)
    assert result.exit_code == 0, result.output
    return first, json.loads(result.output), shares, refused, kept


def test_with_both_accountants_a_row_whose_clamp_is_refused_says_why_and_the_other_answers(monkeypatch):
    """The clamp's refusal is a row's, as a target out of reach is: with a clamp share between the two rows'
    (calibrated epsilons differ within the search's tolerance), the larger epsilon's row says why it has no sigma
    and the other answers (exit 0); with a share below both, exit 2 naming --batch-size-noise-multiplier."""
    args = ["--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), "--steps", str(STEPS), *PADDED]
    first, data, shares, refused, kept = refused_between_rows(monkeypatch, "noise", args)
    assert data[f"noise_multiplier_{refused}"] is None and data[f"clamp_delta_{refused}"] is None
    assert "noisy padding's clamp adds delta" in data["unavailable"][refused] and kept not in data["unavailable"]
    assert data[f"noise_multiplier_{kept}"] == first[f"noise_multiplier_{kept}"]
    assert_deltas(data, kept, STEPS)
    monkeypatch.setattr(noisy_padding, "MAX_CLAMP_SHARE", shares[kept] / 2)
    result = invoke("noise", *args[:-1])
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--batch-size-noise-multiplier'"), error
    assert "noisy padding's clamp adds delta" in error and "Traceback" not in result.output


def test_epochs_with_both_accountants_a_row_whose_clamp_is_refused_says_why_and_the_other_answers(monkeypatch):
    """As in `noise`: the clamp's refusal is the row's (its steps, epsilon and deltas None, `unavailable` says why)
    and the other row answers (exit 0; it exited 2 on the first refusal); with a share below both rows', exit 2
    naming --batch-size-noise-multiplier, each distinct reason once."""
    args = ["--target-epsilon", str(TARGET), "--n", str(N), "--batch-size", str(B), "--noise-multiplier", str(SIGMA)]
    args += PADDED
    first, data, shares, refused, kept = refused_between_rows(monkeypatch, "epochs", args)
    for key in ("epochs", "steps", "epsilon", "clamp_delta", "guarantee_delta"):
        assert data[f"{key}_{refused}"] is None, key
    assert "noisy padding's clamp adds delta" in data["unavailable"][refused] and kept not in data["unavailable"]
    assert data[f"steps_{kept}"] == first[f"steps_{kept}"]
    assert_deltas(data, kept, data[f"steps_{kept}"])
    text = invoke("epochs", *args[:-1])
    assert text.exit_code == 0 and f"{refused.upper():<11} {'n/a':>8}  noisy padding's clamp" in text.output
    monkeypatch.setattr(noisy_padding, "MAX_CLAMP_SHARE", shares[kept] / 2)
    result = invoke("epochs", *args[:-1])
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: Invalid value for '--batch-size-noise-multiplier'"), error
    assert error.count("noisy padding's clamp adds delta") == 2 and "Traceback" not in result.output
