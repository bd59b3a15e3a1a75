"""`ppml epsilon`, `ppml noise`, `ppml epochs`: output, JSON, plots and every kind of bad input."""

import importlib.metadata
import json
import math
import os
import subprocess
import sys

import dp_accounting as dpa
import pytest
from click.testing import CliRunner

from pipelines.cli.main import cli

TUTORIAL = ["--n", "60000", "--batch-size", "256", "--noise-multiplier", "1.1", "--target-delta", "1e-5"]
SMALL = ["--n", "1000", "--batch-size", "50", "--noise-multiplier", "1.0"]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def independent(q, sigma, steps, delta, kind):
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    acc = dpa.rdp.RdpAccountant() if kind == "rdp" else dpa.pld.PLDAccountant()
    return acc.compose(event).get_epsilon(delta)


def test_epsilon_json_has_the_documented_keys_and_values():
    result = run("epsilon", *TUTORIAL, "--epochs", "60", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in (
        "epsilon_rdp",
        "epsilon_pld",
        "delta",
        "steps",
        "sampling_probability",
        "noise_multiplier",
        "sampling",
        "adjacency",
        "accountant_version",
    ):
        assert key in data
    assert data["steps"] == 14063 and data["sampling"] == "poisson" and data["adjacency"] == "add-remove"
    assert data["epsilon_rdp"] == pytest.approx(independent(256 / 60000, 1.1, 14063, 1e-5, "rdp"), abs=1e-6)
    assert data["epsilon_pld"] == pytest.approx(independent(256 / 60000, 1.1, 14063, 1e-5, "pld"), abs=1e-6)
    assert data["accountant_version"] == f"dp-accounting {importlib.metadata.version('dp-accounting')}"


def test_epsilon_table_states_the_context():
    result = run("epsilon", *SMALL, "--steps", "100")
    assert result.exit_code == 0
    for needle in ("poisson", "add-remove", "RDP", "PLD", "dp-accounting", "delta", "default"):
        assert needle in result.output


def test_single_accountant_and_per_epoch():
    result = run("epsilon", *SMALL, "--epochs", "3", "--accountant", "rdp", "--per-epoch", "--json")
    data = json.loads(result.output)
    assert data["epsilon_pld"] is None and "pld" not in data["accountants"]
    assert [row["epoch"] for row in data["per_epoch"]] == [1, 2, 3]
    assert data["per_epoch"][-1]["epsilon_rdp"] == data["epsilon_rdp"]


def test_shuffle_is_labelled_replace_one_and_not_poisson():
    shuffled = json.loads(run("epsilon", *SMALL, "--epochs", "2", "--sampling", "shuffle", "--json").output)
    poisson = json.loads(run("epsilon", *SMALL, "--epochs", "2", "--json").output)
    assert (shuffled["sampling"], shuffled["adjacency"], shuffled["steps"]) == ("shuffle", "replace-one", 40)
    # Two epochs, each one Gaussian mechanism of sensitivity 2C (sigma 1.0): RDP with the noise multiplier
    # relative to 2C, PLD by dp-accounting's own replace-one analysis.
    rdp = dpa.rdp.RdpAccountant().compose(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(0.5), 2))
    pld = dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE).compose(
        dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(1.0), 2)
    )
    assert shuffled["delta"] == 1e-4
    assert shuffled["epsilon_rdp"] == pytest.approx(rdp.get_epsilon(1e-4), abs=1e-6)
    assert shuffled["epsilon_pld"] == pytest.approx(pld.get_epsilon(1e-4), rel=1e-4)
    assert shuffled["epsilon_pld"] > 2 * poisson["epsilon_pld"]
    assert any("Poisson" in note for note in shuffled["notes"])


@pytest.mark.parametrize(
    "command",
    [
        ["epsilon", "--epochs", "2"],
        ["noise", "--target-epsilon", "2", "--epochs", "2"],
        ["epochs", "--target-epsilon", "2"],
    ],
)
def test_shuffle_with_add_remove_is_a_usage_error(command):
    args = ["--n", "1000", "--batch-size", "50", "--sampling", "shuffle", "--adjacency", "add-remove"]
    if command[0] != "noise":
        args += ["--noise-multiplier", "1.0"]
    result = CliRunner().invoke(cli, [*command, *args])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())  # click wraps long messages
    assert "'--adjacency'" in message and "adjacency='add-remove' with sampling='shuffle'" in message
    assert "use adjacency='replace-one' or Poisson sampling" in message and "Traceback" not in message


def test_microbatches_and_user_level_are_reported():
    data = json.loads(
        run(
            "epsilon", *SMALL, "--steps", "100", "--num-microbatches", "10", "--max-examples-per-user", "2", "--json"
        ).output
    )
    assert data["sensitivity"] == 2.0 and data["privacy_unit"] == "user"
    assert any("microbatch" in note for note in data["notes"])


def test_microbatches_under_replace_one_are_accounted_with_sigma_over_2():
    """Poisson + replace-one + microbatches: Gaussian(sigma / 2) under REPLACE_ONE in all three commands."""
    args = [
        "--n",
        "1000",
        "--batch-size",
        "50",
        "--adjacency",
        "replace-one",
        "--num-microbatches",
        "10",
        "--accountant",
        "pld",
        "--target-delta",
        "1e-4",
        "--json",
    ]

    def expected(sigma, steps):
        event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(sigma / 2)), steps)
        return dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE).compose(event).get_epsilon(1e-4)

    data = json.loads(run("epsilon", *args, "--noise-multiplier", "2.0", "--steps", "100").output)
    assert data["sensitivity"] == 4.0
    assert data["epsilon_pld"] == pytest.approx(expected(2.0, 100), abs=1e-6)
    # sigma / 2 is 3 or more in both searches: a PLD of sigma / 2 near 1 costs seconds at each step of a search.
    noise = json.loads(run("noise", *args, "--target-epsilon", "1", "--steps", "100").output)
    sigma = noise["noise_multiplier_pld"]
    assert expected(sigma, 100) <= 1.0 < expected(sigma - 1e-3, 100)
    epochs = json.loads(run("epochs", *args, "--target-epsilon", "3", "--noise-multiplier", "6.0").output)
    steps = epochs["steps_pld"]
    assert expected(6.0, steps) <= 3.0 < expected(6.0, steps + 1)


def test_fixed_defaults_to_replace_one_and_reports_pld_unavailable():
    data = json.loads(run("epsilon", *SMALL, "--steps", "100", "--sampling", "fixed", "--json").output)
    assert data["adjacency"] == "replace-one"
    assert data["epsilon_pld"] is None and "pld" in data["unavailable"]
    assert data["epsilon_rdp"] > 0


def test_delta_warning_when_not_below_one_over_n():
    result = run("epsilon", *SMALL, "--steps", "10", "--target-delta", "0.01")
    assert result.exit_code == 0 and "WARNING" in result.output and "1/n" in result.output


@pytest.mark.parametrize(
    "args,fraction",
    [
        (["--n", "999", "--target-delta", "1e-3"], "0.999/n"),  # ppml's old default
        (["--n", "60000", "--target-delta", "1e-5"], "0.6/n"),
    ],
)
def test_delta_warning_when_close_to_one_over_n(args, fraction):
    """A delta close to 1/n lets a mechanism publish about n * delta examples in full: warned, in the table
    and in the JSON; well below 1/n it is not."""
    common = ["--batch-size", "50", "--noise-multiplier", "1.0", "--steps", "10"]
    result = run("epsilon", *args, *common)
    assert result.exit_code == 0 and "WARNING" in result.output and fraction in result.output, result.output
    data = json.loads(run("epsilon", *args, *common, "--json").output)
    assert any(fraction in w for w in data["warnings"])
    quiet = json.loads(run("epsilon", "--n", "60000", "--target-delta", "1e-6", *common, "--json").output)
    assert quiet["warnings"] == []
    default = json.loads(run("epsilon", "--n", "999", *common, "--json").output)  # at most 1/(2n)
    assert default["delta"] == 1e-4 and default["warnings"] == []


def test_plot_is_a_png(tmp_path):
    path = tmp_path / "eps.png"
    result = run("epsilon", *SMALL, "--epochs", "3", "--plot", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_noise_round_trip():
    data = json.loads(
        run(
            "noise",
            "--target-epsilon",
            "2",
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--epochs",
            "5",
            "--accountant",
            "rdp",
            "--json",
        ).output
    )
    assert data["epsilon_rdp"] <= 2.0
    check = json.loads(
        run(
            "epsilon",
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--epochs",
            "5",
            "--accountant",
            "rdp",
            "--noise-multiplier",
            repr(data["noise_multiplier_rdp"] - 1e-3),
            "--json",
        ).output
    )
    assert check["epsilon_rdp"] > 2.0


def test_epochs_round_trip():
    data = json.loads(run("epochs", "--target-epsilon", "3", *SMALL, "--accountant", "rdp", "--json").output)
    steps = data["steps_rdp"]
    assert steps > 20
    at = json.loads(run("epsilon", *SMALL, "--steps", str(steps), "--accountant", "rdp", "--json").output)
    over = json.loads(run("epsilon", *SMALL, "--steps", str(steps + 1), "--accountant", "rdp", "--json").output)
    assert at["epsilon_rdp"] <= 3.0 < over["epsilon_rdp"]
    assert data["epochs_rdp"] == math.floor(steps * 50 / 1000)


@pytest.mark.parametrize(
    "args,option",
    [
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "0", "--steps", "5"], "--noise-multiplier"),
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "-1", "--steps", "5"], "--noise-multiplier"),
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "nan", "--steps", "5"], "--noise-multiplier"),
        (["--n", "100", "--batch-size", "200", "--noise-multiplier", "1", "--steps", "5"], "--batch-size"),
        (
            ["--n", "100", "--sampling-probability", "1.5", "--noise-multiplier", "1", "--steps", "5"],
            "--sampling-probability",
        ),
        (
            ["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5", "--target-delta", "0"],
            "--target-delta",
        ),
        (
            ["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5", "--target-delta", "1"],
            "--target-delta",
        ),
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "0"], "--steps"),
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "-3"], "--steps"),
        (["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--epochs", "0"], "--epochs"),
        (["--n", "abc", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5"], "--n"),
        (["--n", "100", "--batch-size", "ten", "--noise-multiplier", "1", "--steps", "5"], "--batch-size"),
        (["--n", "0", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5"], "--n"),
        (
            ["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5", "--num-microbatches", "0"],
            "--num-microbatches",
        ),
        (
            [
                "--n",
                "100",
                "--batch-size",
                "10",
                "--noise-multiplier",
                "1",
                "--steps",
                "5",
                "--sampling",
                "fixed",
                "--adjacency",
                "add-remove",
            ],
            "--adjacency",
        ),
        (
            [
                "--n",
                "100",
                "--batch-size",
                "10",
                "--noise-multiplier",
                "1",
                "--steps",
                "5",
                "--sampling",
                "shuffle",
                "--adjacency",
                "add-remove",
            ],
            "--adjacency",
        ),
        (
            ["--n", "100", "--batch-size", "10.5", "--noise-multiplier", "1", "--steps", "5", "--sampling", "shuffle"],
            "--batch-size",
        ),
        (
            ["--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--steps", "5", "--sampling", "sometimes"],
            "--sampling",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_option(args, option):
    result = CliRunner().invoke(cli, ["epsilon", *args])
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, shown",
    [
        (["--n", "60000", "--batch-size", "1000000.5"], "must be <= --n (60000), got 1000000.5"),
        (["--n", "60000", "--sampling-probability", "0.00427", "--sampling", "fixed"], "got 256.20000000000005"),
        (["--n", "60000", "--batch-size", "255.9999", "--num-microbatches", "256"], "batch size 255.9999, got 256"),
    ],
)
def test_batch_size_errors_show_the_value_that_failed_not_a_rounding_of_it(args, shown):
    """``:g`` printed 1000000.5 as 1e+06, q n = 256.20000000000005 as 256.2 (hiding why it is not whole) and
    255.9999 < 256 as "batch size 256, got 256"."""
    result = CliRunner().invoke(cli, ["epsilon", *args, "--noise-multiplier", "1", "--steps", "5"])
    assert result.exit_code == 2 and shown in result.output, result.output


@pytest.mark.parametrize("args", [["--epochs", "1", "--steps", "5"], []])
def test_exactly_one_of_epochs_and_steps(args):
    result = CliRunner().invoke(cli, ["epsilon", *SMALL, *args])
    assert result.exit_code == 2 and "--epochs" in result.output and "--steps" in result.output


def test_bad_target_epsilon():
    result = CliRunner().invoke(
        cli, ["noise", "--target-epsilon", "-2", "--n", "100", "--batch-size", "10", "--steps", "5"]
    )
    assert result.exit_code == 2 and "--target-epsilon" in result.output


def test_real_subprocess_and_no_tensorflow_import():
    """The console script works, and the accounting commands never import TensorFlow (start-up time)."""
    env = dict(os.environ)
    ppml = os.path.join(os.path.dirname(sys.executable), "ppml")
    proc = subprocess.run(
        [ppml, "epsilon", *SMALL, "--steps", "20", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"] == 20
    bad = subprocess.run([ppml, "epsilon", *SMALL, "--steps", "x"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--steps" in bad.stderr
    code = (
        "import sys; from pipelines.cli.main import cli\n"
        "for args in (['epsilon', '--n', '100', '--batch-size', '10', '--noise-multiplier', '1', '--steps', '5'],\n"
        "             ['noise', '--target-epsilon', '5', '--n', '100', '--batch-size', '10', '--steps', '5',\n"
        "              '--accountant', 'rdp'],\n"
        "             ['epochs', '--target-epsilon', '5', '--n', '100', '--batch-size', '10',\n"
        "              '--noise-multiplier', '1', '--accountant', 'rdp']):\n"
        "    cli(args, standalone_mode=False)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras', 'tfx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
    )
    assert proc.returncode == 0, proc.stderr


_BASE = {
    "epsilon": ["--n", "1000", "--batch-size", "50", "--noise-multiplier", "1", "--steps", "10"],
    "noise": ["--target-epsilon", "2", "--n", "1000", "--batch-size", "50", "--steps", "10"],
    "epochs": ["--target-epsilon", "2", "--n", "1000", "--batch-size", "50", "--noise-multiplier", "1"],
}
_BAD = [  # (commands, option, value): valid-looking but out of range, non-finite, or not a number
    (("epsilon", "noise", "epochs"), "--n", "1e18"),
    (("epsilon", "noise", "epochs"), "--n", "-5"),
    (("epsilon", "noise", "epochs"), "--n", "nan"),
    (("epsilon", "noise", "epochs"), "--batch-size", "inf"),
    (("epsilon", "noise", "epochs"), "--batch-size", "-1"),
    (("epsilon", "noise", "epochs"), "--batch-size", "1e300"),
    (("epsilon", "noise", "epochs"), "--target-delta", "nan"),
    (("epsilon", "noise", "epochs"), "--target-delta", "1.5"),
    (("epsilon", "noise", "epochs"), "--num-microbatches", "-2"),
    (("epsilon", "noise", "epochs"), "--sampling", "x"),
    (("epsilon", "noise", "epochs"), "--max-examples-per-user", "1000000"),
    (("epsilon", "noise", "epochs"), "--accountant", "both2"),
    (("epsilon", "epochs"), "--noise-multiplier", "1e-300"),
    (("epsilon", "epochs"), "--noise-multiplier", "1e300"),
    (("epsilon", "epochs"), "--noise-multiplier", "inf"),
    (("epsilon", "epochs"), "--noise-multiplier", "abc"),
    (("epsilon", "noise"), "--steps", "1000000000000000"),
    (("epsilon", "noise"), "--steps", "1e15"),
    (("noise", "epochs"), "--target-epsilon", "nan"),
    (("noise", "epochs"), "--target-epsilon", "-inf"),
    (("noise", "epochs"), "--target-epsilon", "1e300"),
]


def _with(command, option, value):
    """The command's valid base arguments with ``option`` set to ``value`` (--epochs replaces --steps)."""
    args = list(_BASE[command])
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return [command, *args]


@pytest.mark.parametrize(
    "args,option",
    [
        *[(_with(command, option, value), option) for commands, option, value in _BAD for command in commands],
        (
            ["epsilon", "--n", "60000", "--batch-size", "256", "--noise-multiplier", "1", "--epochs", "1e300"],
            "--epochs",
        ),
        (
            [
                "epsilon",
                "--n",
                "1000000000000000000",
                "--batch-size",
                "256",
                "--noise-multiplier",
                "1",
                "--epochs",
                "1",
            ],
            "--epochs",
        ),
        (["noise", "--target-epsilon", "2", "--n", "1000", "--batch-size", "50", "--epochs", "1e300"], "--epochs"),
        (["epsilon", *_BASE["epsilon"][:-2], "--epochs", "5000", "--per-epoch"], "--per-epoch"),
        (["epsilon", *_BASE["epsilon"], "--plot", "epsilon.gif"], "--plot"),
        (["epsilon", *_BASE["epsilon"], "--plot", "/proc/no/such/folder/epsilon.png"], "--plot"),
    ],
)
def test_bad_inputs_are_one_line_naming_the_option(args, option):
    """Exit 2, one error line on stderr naming the option, no traceback, nothing on stdout; fast (checked
    before any accounting: an epsilon for 1e300 epochs, or PLD over 1e15 steps, would not end)."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and option in errors[0], (args, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == "", (args, result.output)


@pytest.mark.parametrize(
    "args",
    [
        ["epsilon", "--n", "1000", "--batch-size", "50", "--noise-multiplier", "0.05", "--steps", "100"],
        ["epsilon", "--n", "1000", "--batch-size", "50", "--noise-multiplier", "1", "--steps", "100000000"],
        [
            "epsilon",
            "--n",
            "1000",
            "--batch-size",
            "50",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--target-delta",
            "1e-300",
        ],
        ["epochs", "--target-epsilon", "1000", "--n", "1000", "--batch-size", "50", "--noise-multiplier", "3"],
    ],
)
def test_extreme_but_valid_inputs_answer_quickly(args):
    """Where PLD would need minutes and gigabytes (a small noise multiplier per step, 10^8 steps) it is
    reported unavailable with the reason, and RDP answers."""
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    if "pld" in data.get("unavailable", {}):
        assert "RDP accountant covers it" in data["unavailable"]["pld"]
    assert "epsilon_rdp" in data or "epochs_rdp" in data


@pytest.mark.parametrize(
    "old, new, value",
    [
        ("--delta", "--target-delta", "1e-4"),
        ("--microbatches", "--num-microbatches", "5"),
        ("--sampling-rate", "--sampling-probability", "0.05"),
    ],
)
def test_old_spellings_still_work_for_one_release_with_a_deprecation_warning(old, new, value):
    """The old flag gives the same result as the new one, a warning line naming both on stderr and a
    DeprecationWarning; both spellings at once are a usage error; the old one is not in --help."""
    base = [a for a in SMALL if a not in ("--batch-size", "50")] if new == "--sampling-probability" else SMALL
    args = ["epsilon", *base, "--steps", "20", "--accountant", "rdp", "--json"]
    with pytest.deprecated_call(match=f"{old} is deprecated"):
        old_result = CliRunner().invoke(cli, [*args, old, value])
    new_result = CliRunner().invoke(cli, [*args, new, value])
    assert old_result.exit_code == new_result.exit_code == 0, old_result.output
    assert json.loads(old_result.stdout) == json.loads(new_result.stdout)
    assert old_result.stderr.splitlines()[0] == f"warning: {old} is deprecated and goes in the next release: use {new}"
    both = CliRunner().invoke(cli, [*args, old, value, new, value])
    assert both.exit_code == 2 and both.stderr.count("\n") == 1
    assert f"{old}: is the old spelling of {new}" in both.stderr
    help_text = CliRunner().invoke(cli, ["epsilon", "--help"]).output
    assert new in help_text and f"{old} " not in help_text


def test_epsilon_with_the_models_weights_adds_the_noise_cutoffs_delta():
    """``--weights D``: the same epsilon (dp-accounting's at delta, recomputed here), the guarantee's delta plus the
    cut-off's for D pairs of radius sqrt(128 ln 2) over every step; a cut-off over 1 % of delta exits 2."""
    from privacy.accounting import NoiseCutoff

    plain = json.loads(run("epsilon", *TUTORIAL, "--epochs", "60", "--json").output)
    result = run("epsilon", *TUTORIAL, "--epochs", "60", "--json", "--weights", "669706")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    steps = math.ceil(60 * 60000 / 256)
    rdp = independent(256 / 60000, 1.1, steps, 1e-5, "rdp")
    assert data["epsilon_rdp"] == pytest.approx(rdp, rel=1e-9) and data["epsilon_rdp"] == plain["epsilon_rdp"]
    added = NoiseCutoff(
        radius=math.sqrt(128 * math.log(2)), pairs=669706, steps=steps, unit_shift=1 / 1.1, moves=256 / 60000
    )
    eps = min(e for e in (data["epsilon_rdp"], data["epsilon_pld"]) if e is not None)
    assert data["noise_cutoff"]["epsilon"] == eps
    assert data["noise_cutoff"]["added_delta"] == pytest.approx(added.added_delta(1e-5, eps), rel=1e-12)
    assert data["guarantee_delta"] == 1e-5 + data["noise_cutoff"]["added_delta"] and data["delta"] == 1e-5
    assert plain["noise_cutoff"] is None and plain["guarantee_delta"] == 1e-5
    text = run("epsilon", *TUTORIAL, "--epochs", "60", "--weights", "669706").output
    assert f"1e-05 + {data['noise_cutoff']['added_delta']:.3g})-DP" in text and "noise cut-off: " in text
    refused = CliRunner().invoke(
        cli,
        [
            "epsilon",
            *TUTORIAL[:4],
            "--noise-multiplier",
            "0.3",
            "--target-delta",
            "1e-5",
            "--epochs",
            "60",
            "--weights",
            "669706",
        ],
    )
    assert refused.exit_code == 2 and "more than 1% of delta=1e-05" in refused.output, refused.output
    assert "Traceback" not in refused.output


def test_weights_without_an_epsilon_say_why_the_cutoff_cannot_be_bounded():
    """Fixed-size batches bound the cut-off only through epsilon: where the chosen accountant has none (PLD has no
    fixed-size analysis) --weights exits 2 naming that, not an infinite delta to be cured by more noise."""
    result = CliRunner().invoke(
        cli, ["epsilon", *TUTORIAL, "--epochs", "2", "--sampling", "fixed", "--accountant", "pld", "--weights", "1000"]
    )
    assert result.exit_code == 2
    assert "bounded only through epsilon for this sampling" in result.output and "delta inf" not in result.output
