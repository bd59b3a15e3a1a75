"""`ppml federated run` end to end on digits: JSON history, PNG, epsilon, and named errors."""

import json
import re

import dp_accounting
import numpy as np
import pytest
from click.testing import CliRunner
from dp_accounting import dp_event

from pipelines.cli.main import cli
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting
from pipelines.privacy_ledger import FEDAVG_FLOATING_POINT_NOISE, SEPARATE_RUNS, public_dataset_size

pytestmark = pytest.mark.usefixtures("memoized_calibration")


def test_federated_run_dp_secure_aggregation(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "federated",
            "run",
            "--clients",
            "20",
            "--rounds",
            "3",
            "--sampling",
            "poisson",
            "--fraction",
            "0.4",
            "--partition",
            "dirichlet",
            "--alpha",
            "0.5",
            "--dp",
            "--noise-multiplier",
            "1.5",
            "--clip",
            "fixed",
            "--clipping-norm",
            "0.5",
            "--target-delta",
            "1e-3",
            "--secure-aggregation",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout[result.stdout.index("{") :])
    assert [r["round"] for r in history["rounds"]] == [1, 2, 3]
    event = dp_event.PoissonSampledDpEvent(0.4, dp_event.GaussianDpEvent(1.5))
    expected = dp_accounting.rdp.RdpAccountant().compose(event, 3).get_epsilon(1e-3)
    assert history["rounds"][-1]["metrics"]["epsilon_rdp"] == pytest.approx(expected, rel=1e-12)
    # One record changes one client's data with N fixed: a client replaced, accounted replace-one (PLD).
    replaced = (
        dp_accounting.pld.PLDAccountant(
            dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
        )
        .compose(event, 3)
        .get_epsilon(1e-3)
    )
    assert history["config"]["record_level"]["epsilon"] == pytest.approx(replaced, rel=1e-9)
    assert replaced > dp_accounting.pld.PLDAccountant().compose(event, 3).get_epsilon(1e-3)
    assert history["rounds"][0]["aggregation"]["aborted"] is False
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strategy = json.loads((out / "history.json").read_text())["config"]["strategy"]
    assert strategy["name"] == "DifferentialPrivacyFixedClipping" and strategy["seeded_noise"] is False


def test_federated_run_plain_prints_progress(tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "federated",
            "run",
            "--clients",
            "10",
            "--rounds",
            "2",
            "--fraction",
            "0.5",
            "--server-optimizer",
            "adam",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "round 2: 5/5 clients" in result.output and "final accuracy" in result.output


def _trained_rows(x, y, seed=0):
    """How many rows the command line trains on: those its keyed hash does not hold out."""
    from federated.partitioners import content_keys, keyed_hold_out

    return int((~keyed_hold_out(content_keys(x, y), fraction=0.2, seed=seed)).sum())


def test_npz_without_a_test_split_holds_out_about_a_fifth_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((200, 6)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    np.savez(tmp_path / "data.npz", x=x, y=y, keys=np.arange(200) % 8)
    result = CliRunner().invoke(
        cli,
        [
            "federated",
            "run",
            "--dataset",
            str(tmp_path / "data.npz"),
            "--partition",
            "natural",
            "--rounds",
            "2",
            "--fraction",
            "0.5",
            "--execution",
            "numpy",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout[result.stdout.index("{") :])
    trained = history["config"]["client_sizes_sum"]
    assert trained == _trained_rows(x, y) and 140 < trained < 180 and history["config"]["num_clients"] == 8
    assert history["config"]["execution"] == "numpy" and history["rounds"][-1]["evaluation"]["accuracy"] > 0
    np.savez(tmp_path / "half.npz", x=x, y=y, x_test=x[:10])
    result = CliRunner().invoke(
        cli,
        ["federated", "run", "--dataset", str(tmp_path / "half.npz"), "--rounds", "1", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 2 and "'x_test' with 'y_test'); it holds ['x', 'x_test', 'y']" in result.output


def _write_csv(path, x, y, users=None):
    header = ",".join(f"f{j}" for j in range(x.shape[1])) + (",user" if users is not None else "") + ",label"
    rows = [
        ",".join(repr(float(v)) for v in features) + (f",{users[i]}" if users is not None else "") + f",{y[i]}"
        for i, features in enumerate(x)
    ]
    path.write_text("\n".join([header] + rows) + "\n")
    return str(path)


def _cli_rows(args):
    """The CLI's data path (read, hold out, deal): {client id: its rows}, the evaluation rows, their privacy."""
    from pipelines.cli.federated import client_data, run, training_config

    with run.make_context("run", list(args)) as ctx:
        data, (x_test, y_test), _, outside = client_data(ctx.params, training_config(ctx.params))

    def rows(x, y):
        return {tuple(features) + (int(label),) for features, label in zip(x.tolist(), y, strict=True)}

    clients = {cid: rows(*data.client(k)) for k, cid in enumerate(data.client_ids)}
    return clients, rows(x_test, y_test), "evaluation" in outside


@pytest.mark.parametrize("users", [False, True], ids=["keyed-clients", "one-client-per-user"])
def test_one_added_row_changes_one_client_or_the_evaluation_rows_and_nothing_else(tmp_path, users):
    """Neighbouring CSV files (one row appended) through the command line's data path: the row lands in one
    client (its user's) or among the held-out rows, and every other row stays where it was (a permutation
    of the row count re-dealt 61 of 100 clients, and with --client-column the rows of 42 of 50 users)."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n + 6, 4)).astype(np.float32)
    y = rng.integers(0, 3, n + 6)
    user = rng.integers(0, 30, n + 6) if users else None
    args = ["--client-column", "user", "--partition", "natural"] if users else []
    base = _cli_rows(["--dataset", _write_csv(tmp_path / "base.csv", x[:n], y[:n], user), *args])
    assert base[2] is True and 0.1 < len(base[1]) / n < 0.3  # held-out rows: private rows of the data set
    places = []
    for extra in range(n, n + 6):
        keep = np.r_[0:n, extra]
        clients, held_out, _ = _cli_rows(
            [
                "--dataset",
                _write_csv(tmp_path / f"plus{extra}.csv", x[keep], y[keep], None if user is None else user[keep]),
                *args,
            ]
        )
        row = tuple(x[extra].tolist()) + (int(y[extra]),)
        changed = {k for k in clients.keys() | base[0].keys() if clients.get(k) != base[0].get(k)}
        if row in held_out:
            assert held_out == base[1] | {row} and not changed
            places.append("evaluation")
        else:
            assert held_out == base[1] and len(changed) == 1
            [k] = changed
            assert clients[k] == base[0].get(k, set()) | {row}
            assert not users or k == str(user[extra])
            places.append("training")
    assert "training" in places


def test_under_dp_metrics_of_held_out_rows_are_labelled_outside_the_guarantee(tmp_path):
    """Held-out rows are private rows: their loss and accuracy are tagged on every line, in history.json and
    on the plot's axis; a separate test split's are not."""
    from federated.simulation import History

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "split.npz", x=x[:240], y=y[:240], x_test=x[240:], y_test=y[240:])
    common = ["--dp", *_SMALL_RUN, "--num-classes", "2"]
    tag = "held-out private rows, not DP"
    result = _run(common + ["--dataset", _write_csv(tmp_path / "d.csv", x, y)], tmp_path)
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert "rows held out of the private data set" in history["config"]["outside_guarantee"]["evaluation"]
    rounds = [line for line in result.stderr.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all(
        f"acc {r['evaluation']['accuracy']:.4f} ({tag})" in line
        for r, line in zip(history["rounds"], rounds, strict=True)
    )
    assert f"after 2 rounds ({tag})" in result.stdout and f"outside the DP guarantee ({tag})" in result.stdout
    assert tag in History.from_dict(history).axis_labels()[0]
    result = _run(common + ["--dataset", str(tmp_path / "split.npz"), "--num-classes", "2", "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    history = _history(result)
    assert history["config"]["outside_guarantee"] == {} and "not DP" not in result.output
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    n = public_dataset_size(10, "client", adjacency=ledger["parameters"]["adjacency"])
    listed = {**n, **SEPARATE_RUNS, **FEDAVG_FLOATING_POINT_NOISE}  # what every DP-FedAvg ledger lists
    assert ledger["parameters"]["outside_guarantee"] == listed and ledger["parameters"]["dataset_size"] == 10
    assert "N = 10 clients, treated as public)" in result.stderr  # where the run prints N
    assert History.from_dict(history).axis_labels()[0] == "evaluation accuracy"


def _columns(n=150):
    rng = np.random.default_rng(1)
    x = rng.random((n, 3)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int64), np.arange(n) % 6


def test_csv_and_tfrecord_datasets_take_every_numeric_column_but_label_and_client(tmp_path):
    import tensorflow as tf  # the test writes TFRecords as ExampleGen does

    x, y, users = _columns()
    lines = ["f1,f2,f3,target,user,note"] + [
        f"{a},{b},{c},{t},u{k},x" for (a, b, c), t, k in zip(x, y, users, strict=True)
    ]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with tf.io.TFRecordWriter(str(tmp_path / "part-0.gz"), options="GZIP") as writer:
        for (a, b, c), t in zip(x, y, strict=True):
            feature = {
                "f": tf.train.Feature(float_list=tf.train.FloatList(value=[a, b, c])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[t])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    runs = {
        "csv": [
            "--dataset",
            str(tmp_path / "data.csv"),
            "--label-column",
            "target",
            "--client-column",
            "user",
            "--partition",
            "natural",
        ],
        "tfrecord": ["--dataset", str(tmp_path / "part-*"), "--clients", "5"],
    }
    for name, args in runs.items():
        result = CliRunner().invoke(
            cli,
            [
                "federated",
                "run",
                "--rounds",
                "2",
                "--fraction",
                "1.0",
                "--execution",
                "numpy",
                "--model",
                "linear",
                "--json",
                "--out",
                str(tmp_path / name),
            ]
            + args,
        )
        assert result.exit_code == 0, result.output
        config = json.loads(result.stdout[result.stdout.index("{") :])["config"]
        assert config["client_sizes_sum"] == _trained_rows(x, y)
        assert config["num_clients"] == (6 if name == "csv" else 5)
        assert config["num_parameters"] == 3 * 2 + 2  # three features (not target, user, note), two classes
    (tmp_path / "gap.csv").write_text("a,label\n1.5,0\n,1\n2.5,1\n")
    (tmp_path / "notes.txt").write_text("not a TFRecord\n")
    for dataset, message in (
        ("data.csv", r"--label-column \(.*data.csv\): no column 'label'"),
        ("gap.csv", "column 'a' holds numbers but line 3 is empty"),
        ("notes.*", "not readable as TFRecord files"),
    ):
        result = CliRunner().invoke(
            cli,
            ["federated", "run", "--dataset", str(tmp_path / dataset), "--rounds", "1", "--out", str(tmp_path / "bad")],
        )
        assert result.exit_code == 2 and re.search(message, result.output), result.output


def _run(args, tmp_path, **kwargs):
    return CliRunner(**kwargs).invoke(cli, ["federated", "run", "--out", str(tmp_path / "run")] + list(args))


_SMALL_RUN = ["--rounds", "2", "--clients", "10", "-C", "0.5", "--model", "linear", "--execution", "numpy"]
"""Flags of a small run: two rounds of half of 10 clients, the linear model, numpy execution."""


def _history(result):
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_the_default_dp_run_works_with_csprng_noise_and_writes_the_trainers_ledger(tmp_path):
    """`ppml federated run --dp` with every default (it ended in a traceback, then at epsilon 42): N = 100
    clients, 10 a round, fixed clipping, z calibrated for epsilon 3 over the planned rounds (ppml's one
    default), noise and sample from the OS CSPRNG, a dp-fedavg ledger."""
    from pipelines import privacy_ledger

    result = _run(["--dp", "--rounds", "3"], tmp_path)
    assert result.exit_code == 0, result.output
    assert "client-level epsilon at delta=0.001" in result.stdout and "outside the DP guarantee" not in result.stdout
    assert "record-level epsilon: the client-level one" in result.stdout
    assert (
        "(calibrated for epsilon <= 3 after 3 rounds (RDP, the default target)); delta = 0.001 (the default"
        in result.stderr
    )
    ledger = privacy_ledger.read_ledger_file(str(tmp_path / "run" / "privacy_ledger.json"))
    z = ledger.parameters["noise_multiplier"]
    event = dp_event.SampledWithoutReplacementDpEvent(100, 10, dp_event.GaussianDpEvent(z / 2))
    expected = (
        dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        .compose(event, 3)
        .get_epsilon(1e-3)
    )
    assert ledger.mechanism == "dp-fedavg" and ledger.privacy_unit == "client"
    assert ledger.epsilons["rdp"] == pytest.approx(expected, rel=1e-12) and 3 - 0.01 <= expected <= 3
    assert ledger.parameters["noise"] == "csprng" and ledger.parameters["clients"] == "keyed iid partition"
    assert ledger.trainer["settings"]["weighted"] is False  # DP-FedAvg averages clients unweighted (the default: true)
    strategy = json.loads((tmp_path / "run" / "history.json").read_text())["config"]["strategy"]
    assert strategy["name"] == "DifferentialPrivacyFixedClipping" and strategy["seeded_noise"] is False


def test_a_cohort_too_small_for_adaptive_clipping_is_a_one_line_usage_error(tmp_path):
    """m = 10 clients a round gives a count noise of 0.5, not above z / 2 = 0.5: say what to change."""
    result = _run(["--clients", "20", "-C", "0.5", "--dp", "--clip", "adaptive", "--noise-multiplier", "1"], tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(
        "Error: --clipped-count-stddev: clipped_count_stddev=0.5 is too small for "
        "noise_multiplier=1: adaptive clipping needs it above noise_multiplier / 2 = 0.5"
    )
    assert "(0.05 x 10 expected clients per round)" in result.stderr
    assert not (tmp_path / "run").exists()
    result = _run(
        [
            "--clients",
            "20",
            "-C",
            "0.5",
            "--dp",
            "--clip",
            "adaptive",
            "--noise-multiplier",
            "1",
            "--clipped-count-stddev",
            "0.8",
            "--rounds",
            "2",
            "--json",
        ],
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert _history(result)["config"]["strategy"]["clipped_count_stddev"] == 0.8


def test_seeded_noise_is_an_explicit_research_option_and_says_so(tmp_path):
    args = ["--dp", "--seeded-noise", "--rounds", "2", "--clients", "20", "-C", "0.5", "--model", "linear"]
    first, second = (_run(args + ["--out", str(tmp_path / name)], tmp_path) for name in ("a", "b"))
    assert first.exit_code == 0, first.output
    assert "outside the DP guarantee (seeded noise: no guarantee)" in first.stdout
    assert "the epsilon describes the mechanism, not a released model" in first.stdout
    assert all(
        line.endswith("(seeded noise: no guarantee)") for line in first.stderr.splitlines() if line.startswith("round ")
    )
    headlines = [line for line in first.stdout.splitlines() if "epsilon at delta" in line or "epsilon:" in line]
    assert len(headlines) == 3 and all(line.endswith("(seeded noise: no guarantee)") for line in headlines)
    histories = [json.loads((tmp_path / name / "history.json").read_text()) for name in ("a", "b")]
    assert [r["evaluation"] for r in histories[0]["rounds"]] == [r["evaluation"] for r in histories[1]["rounds"]]
    from pipelines import privacy_ledger
    from pipelines.components.private_evaluator.spec import budget_epsilon

    ledger = privacy_ledger.read_ledger_file(str(tmp_path / "a" / "privacy_ledger.json"))
    assert ledger.parameters["noise"] == "seeded" and budget_epsilon(ledger, "client")[0] == float("inf")


def test_target_epsilon_calibrates_the_noise_for_the_planned_rounds(tmp_path):
    result = _run(
        [
            "--dp",
            "--target-epsilon",
            "4",
            "--rounds",
            "3",
            "--sampling",
            "poisson",
            "--clients",
            "40",
            "-C",
            "0.25",
            "--model",
            "linear",
            "--json",
        ],
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    z = _history(result)["config"]["strategy"]["noise_multiplier"]
    event = dp_event.PoissonSampledDpEvent(0.25, dp_event.GaussianDpEvent(z))
    reached = dp_accounting.rdp.RdpAccountant().compose(event, 3).get_epsilon(0.01)
    assert 4 - 0.01 <= reached <= 4.0
    assert _history(result)["rounds"][-1]["metrics"]["epsilon_rdp"] == pytest.approx(reached, rel=1e-12)


def test_a_max_epsilon_below_one_rounds_epsilon_is_refused_at_plan_time(tmp_path):
    """Central DP: one round's client-level epsilon follows from z, m/N, delta and the accountant (public); a
    --max-epsilon below it stopped before round 1 and ended in a traceback. It is a one-line usage error, and
    the Federated Trainer refuses the setting before any TFX component runs."""
    z = 1.0
    event = dp_event.SampledWithoutReplacementDpEvent(100, 10, dp_event.GaussianDpEvent(z / 2))
    first = (
        dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        .compose(event)
        .get_epsilon(1e-3)
    )
    args = ["--dp", "--rounds", "2", "--noise-multiplier", str(z), "--model", "linear"]
    result = _run([*args, "--max-epsilon", f"{first * 0.99}"], tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("Error: --max-epsilon: ") and f"one round's epsilon {first:.4g}" in result.stderr
    assert not (tmp_path / "run").exists()
    result = _run([*args, "--max-epsilon", f"{first * 1.01}", "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    assert [r["metrics"]["epsilon_rdp"] for r in _history(result)["rounds"]] == [pytest.approx(first, rel=1e-9)]
    # The Trainer: Poisson sampling (q = 0.1 of N = 50), PLD, add/remove, delta 1e-3.
    poisson = (
        dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
        .compose(dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(z)))
        .get_epsilon(1e-3)
    )
    settings = {
        "label_key": "y",
        "private": True,
        "num_classes": 2,
        "noise_multiplier": z,
        "sampling": "poisson",
        "accountant": "pld",
        "delta": 1e-3,
    }
    with pytest.raises(InvalidFederatedSetting, match=f"below one round's epsilon {poisson:.4g} ") as refused:
        FederatedTrainingConfig.for_trainer({**settings, "max_epsilon": poisson * 0.99}).plan(50)
    assert refused.value.setting == "max_epsilon"
    FederatedTrainingConfig.for_trainer({**settings, "max_epsilon": poisson * 1.01}).plan(50)


def test_a_delta_close_to_one_over_n_clients_is_warned_about_before_training(tmp_path):
    """privacy.accounting's one delta warning, in clients: delta = 0.04 for N = 20 is 0.8/N."""
    args = ["--dp", "--rounds", "1", "--clients", "20", "-C", "0.5", "--model", "linear", "--noise-multiplier", "2"]
    result = _run([*args, "--target-delta", "0.04"], tmp_path)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning (--target-delta): ")]
    assert warnings == [
        "warning (--target-delta): delta=0.04 is 0.8/n (n=20 clients), close to 1/n: a mechanism "
        "that publishes each client in full with probability delta meets it, 0.8 clients in the "
        "clear on average. Prefer delta <= 1/(2n) = 0.025 or smaller."
    ]
    ledger = json.loads((tmp_path / "run" / "privacy_ledger.json").read_text())
    assert ledger["parameters"]["delta_warning"] == warnings[0][len("warning (--target-delta): ") :]
    result = _run([*args, "--target-delta", "0.01", "--out", str(tmp_path / "small")], tmp_path)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_the_command_line_takes_its_defaults_from_the_federated_trainers_settings():
    from pipelines.cli.federated import OPTION_OF_SETTING, run
    from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

    defaults = FederatedTrainingConfig()
    flags = {f"--{p.name.replace('_', '-')}": p for p in run.params}
    compared = 0
    for setting, flag in OPTION_OF_SETTING.items():
        value = getattr(defaults, setting)
        if (
            flag
            in ("--unweighted", "--dp", "--seeded-noise", "--secure-aggregation", "--label-column", "--client-column")
            or value is None
        ):
            continue
        default = flags[flag].default
        assert (tuple(default) if flag == "--hidden" else default) == value, flag
        compared += 1
    assert compared >= 20


def test_plain_output_is_one_line_per_round_without_blank_lines(tmp_path):
    result = _run(["--clients", "10", "--rounds", "3", "--fraction", "0.5", "--model", "linear"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    assert len(rounds) == 3 and "" not in lines[lines.index(rounds[0]) :]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 4)).astype(np.float32), rng.integers(0, 3, 60)
    np.savez(root / "good.npz", x=x, y=y)
    files = {
        "corrupt.npz": rng.bytes(300),
        "truncated.npz": (root / "good.npz").read_bytes()[:200],
        "empty.csv": b"",
        "notes.csv": b"a,b\n1,x\n",
        "huge.csv": b"a,label\n" + b"1" * 200_000 + b",0\n",
        "latin.csv": b"a,label\n1,0\n0.\xff5,1\n",
        "header.csv": b"a,\xffb,label\n1,2,0\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(root / "garbage.tfrecord")) as writer:
        writer.write(b"\xff\xff\xff\xff not a proto")
    np.save(root / "single.npy", x)
    (root / "single.npy").rename(root / "single.npz")
    variants = {
        "lengths.npz": dict(x=x, y=y[:50]),
        "dims.npz": dict(x=x, y=y, x_test=x[:5, :3], y_test=y[:5]),
        "floats.npz": dict(x=x, y=y + 0.5),
        "nan.npz": dict(x=np.where(x > 0.9, np.nan, x), y=y),
        "keys.npz": dict(x=x, y=y, keys=np.arange(10)),
        "negative.npz": dict(x=x, y=y - 1),
        "scalar.npz": dict(x=np.float32(1), y=y),
        "beyond_float32.npz": dict(x=np.full((60, 4), 1e300), y=y),
        "huge_labels.npz": dict(x=x, y=np.full(60, 10**15)),
    }
    for name, arrays in variants.items():
        np.savez(root / name, **arrays)
    (root / "a-file").write_text("not a folder")
    for name, corrupt in (
        ("bad-json", {"state.json": b"{", "arrays.npz": b""}),
        (
            "bad-npz",
            {
                "state.json": json.dumps(
                    {
                        "format": "ppml.federated.checkpoint/1",
                        "round": 1,
                        "num_weights": 2,
                        "slots": [],
                        "scalars": {},
                        "settings": {},
                        "budget": None,
                        "history": {"config": {}, "rounds": []},
                    }
                ).encode(),
                "arrays.npz": (root / "good.npz").read_bytes()[:100],
            },
        ),
    ):
        (root / name / "latest").mkdir(parents=True)
        for file, content in corrupt.items():
            (root / name / "latest" / file).write_bytes(content)
    return root


BAD_INPUTS = [  # (arguments, the option the one-line error names); {d} is the folder of bad files
    (["--fraction", "1.5"], "--fraction"),
    (["--fraction", "nan"], "--fraction"),
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "abc"], "--rounds"),
    (["--seed", str(2**32)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--hidden", "100000000"], "--hidden"),
    (["--clients", "1000000000"], "--clients"),
    (["--local-epochs", "1000000000"], "--local-epochs"),
    (["--local-epochs", "0"], "--local-epochs"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--client-lr", "inf"], "--client-lr"),
    (["--alpha", "0"], "--alpha"),
    (["--hidden", "0"], "--hidden"),
    (["--server-momentum", "1"], "--server-momentum"),
    (["--prox-mu", "-1"], "--prox-mu"),
    (["--dp", "--target-epsilon", "-1"], "--target-epsilon"),
    (["--dp", "--target-epsilon", "nan"], "--target-epsilon"),
    (["--dp", "--noise-multiplier", "0"], "--noise-multiplier"),
    (["--dp", "--noise-multiplier", "1e-300"], "--noise-multiplier"),
    (["--dp", "--noise-multiplier", "1e300"], "--noise-multiplier"),
    (["--dp", "--noise-multiplier", "1", "--target-epsilon", "3"], "--noise-multiplier"),
    (["--dp", "--target-delta", "2"], "--target-delta"),
    (["--dp", "--target-delta", "0.5"], "--target-delta"),
    (["--dp", "--max-epsilon", "0"], "--max-epsilon"),
    (["--dp", "--partition", "shards"], "--partition"),
    (["--dp", "--accountant", "pld"], "--accountant"),
    (["--noise-multiplier", "2"], "--noise-multiplier"),
    (["--seeded-noise"], "--seeded-noise"),
    (["--target-delta", "0.5"], "--target-delta"),
    (["--clip", "adaptive"], "--clip"),
    (["--clipping-norm", "7"], "--clipping-norm"),
    (["--target-quantile", "0.3"], "--target-quantile"),
    (["--accountant", "rdp"], "--accountant"),
    (["--secure-noise"], "--secure-noise"),
    (["--dp", "--execution", "auto"], "--execution"),
    (["--partition", "natural"], "--partition"),
    (["--num-classes", "1"], "--num-classes"),
    (["--feature-column", "f0"], "--feature-column"),
    (["--dp", "--dataset", "{d}/good.npz"], "--num-classes"),
    (["--dataset", "{d}/good.npz", "--num-classes", "2"], "--num-classes"),
    (["--partition", "shards", "--clients", "1000"], "--clients"),
    (["--client-column", "user"], "--client-column"),
    (["--secure-aggregation", "--secagg-bits", "60"], "--secagg-bits"),
    (["--secure-aggregation", "--secagg-modulus-bits", "10"], "--secagg-modulus-bits"),
    (["--secure-aggregation", "--secagg-range", "-1"], "--secagg-range"),
    (["--clients", "20", "-C", "0.5", "--secure-aggregation", "--secagg-modulus-bits", "19"], "--secagg-modulus-bits"),
    (
        [
            "--clients",
            "20",
            "-C",
            "0.1",
            "--sampling",
            "poisson",
            "--secure-aggregation",
            "--secagg-modulus-bits",
            "20",
        ],
        "--secagg-modulus-bits",
    ),
    (["--dataset", "{d}/notes.csv", "--client-column", "a", "--clients", "5"], "--clients"),
    (["--dataset", "{d}/notes.csv", "--client-column", "a", "--partition", "dirichlet"], "--partition"),
    (["--dropout-rate", "1"], "--dropout-rate"),
    (["--dropout-rate", "nan"], "--dropout-rate"),
    (["--dp", "--rounds", "1000000000000000"], "--rounds"),
    (["--num-classes", "1000000000000"], "--num-classes"),
    (["--dataset", "{d}/beyond_float32.npz"], "--dataset"),
    (["--dataset", "{d}/huge_labels.npz"], "--num-classes"),  # the model's output layer would not fit
    (["--dp", "--secure-aggregation", "--sampling", "poisson", "--dropout-rate", "0.2"], "--dropout-rate"),
    (["--runner", "beam", "--beam-arg=--runner=NoSuchRunner"], "--beam-arg"),
    (["--beam-arg=--runner=DirectRunner"], "--beam-arg"),
    (["--plot", "{d}/accuracy.xyz"], "--plot"),
    (["--plot", "{d}/accuracy"], "--plot"),
    (["--dataset", "{d}/missing.npz"], "--dataset"),
    (["--dataset", "{d}"], "--dataset"),
    (["--dataset", "{d}/corrupt.npz"], "--dataset"),
    (["--dataset", "{d}/truncated.npz"], "--dataset"),
    (["--dataset", "{d}/single.npz"], "--dataset"),
    (["--dataset", "{d}/lengths.npz"], "--dataset"),
    (["--dataset", "{d}/dims.npz"], "--dataset"),
    (["--dataset", "{d}/floats.npz"], "--dataset"),
    (["--dataset", "{d}/nan.npz"], "--dataset"),
    (["--dataset", "{d}/negative.npz"], "--dataset"),
    (["--dataset", "{d}/scalar.npz"], "--dataset"),
    (["--dataset", "{d}/keys.npz", "--partition", "natural"], "--dataset"),
    (["--dataset", "{d}/empty.csv"], "--dataset"),
    (["--dataset", "{d}/huge.csv"], "--dataset: .*line 2"),
    (["--dataset", "{d}/latin.csv"], "--dataset: .*line 3"),
    (["--dataset", "{d}/garbage.tfrecord"], "--dataset"),
    (["--dp", "--num-classes", "2", "--dataset", "{d}/header.csv"], "--dataset: .*header"),
    (["--dataset", "{d}/notes.csv"], "--label-column"),
    (["--dataset", "{d}/notes.csv", "--label-column", "a", "--feature-column", "zz"], "--feature-column: .*no column"),
    (
        ["--dp", "--num-classes", "2", "--dataset", "{d}/notes.csv", "--label-column", "a", "--feature-column", "zz"],
        "--feature-column: .*no column",
    ),
    (
        ["--dp", "--num-classes", "2", "--dataset", "{d}/notes.csv", "--label-column", "a", "--feature-column", "a"],
        "--feature-column: 'a' is the label",
    ),
    (["--out", "{d}/a-file"], "--out"),
    (["--out", "{d}/a-file/run"], "--out"),
    (["--out", "/proc/ppml-run"], "--out"),
    (["--checkpoint-dir", "{d}/a-file"], "--checkpoint-dir"),
    (["--checkpoint-dir", "/proc/ppml"], "--checkpoint-dir"),
    (["--checkpoint-dir", "{d}/bad-json"], "--checkpoint-dir"),
    (["--checkpoint-dir", "{d}/bad-npz"], "--checkpoint-dir"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("args, option", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_inputs_are_one_line_errors_naming_the_option_and_leave_nothing(args, option, bad_files, tmp_path):
    args = [a.format(d=bad_files) for a in args]
    out = tmp_path / "out" / "run"
    before = sorted(p.name for p in bad_files.rglob("*"))
    result = CliRunner().invoke(cli, ["federated", "run", "--rounds", "1", "--out", str(out), *args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert re.search(option, result.stderr) and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and sorted(p.name for p in bad_files.rglob("*")) == before


def test_the_old_epochs_spelling_is_local_epochs_for_one_release(tmp_path):
    """`--epochs` (the name `ppml pipeline run` gives total passes) still sets the local epochs, with a warning
    line and a DeprecationWarning: the same seeded run's history as `--local-epochs`; both at once is refused."""
    args = ["--clients", "10", "--rounds", "1", "--hidden", "4", "--json"]
    new = _run([*args, "--local-epochs", "2"], tmp_path)
    with pytest.deprecated_call(match="--epochs is deprecated"):
        old = _run([*args, "--epochs", "2"], tmp_path)
    default = _run(args, tmp_path)
    assert new.exit_code == old.exit_code == default.exit_code == 0, old.output
    assert (
        old.stderr.splitlines()[0] == "warning: --epochs is deprecated and goes in the next release: use --local-epochs"
    )
    rounds = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in _history(x)["rounds"]] for x in (old, new, default)
    ]
    assert rounds[0] == rounds[1] != rounds[2]
    assert _history(old)["config"]["strategy"]["client"]["local_epochs"] == 2
    both = _run([*args, "--epochs", "2", "--local-epochs", "2"], tmp_path)
    assert both.exit_code == 2 and "--epochs: is the old spelling of --local-epochs" in both.stderr
    help_text = CliRunner().invoke(cli, ["federated", "run", "--help"]).output
    assert "--local-epochs" in help_text and "--epochs " not in help_text


def test_valid_extremes_run(tmp_path):
    """Poisson sampling with C = 1e-9 samples nobody ("max_workers must be greater than 0" before); under
    --dp such a run spends epsilon 0, which dp-accounting returns as the integer 0 (refused before)."""
    result = _run(["--fraction", "1e-9", "--sampling", "poisson", "--rounds", "2", "--json"], tmp_path)
    assert result.exit_code == 0, result.output
    assert [r["sampled"] for r in _history(result)["rounds"]] == [0, 0]
    for noise in (["--noise-multiplier", "1"], []):  # given, or calibrated for the default target epsilon 3
        result = _run(
            ["--dp", *noise, "--fraction", "1e-9", "--sampling", "poisson", "--rounds", "2", "--json"], tmp_path
        )
        assert result.exit_code == 0, result.output
        history = _history(result)
        assert [r["sampled"] for r in history["rounds"]] == [0, 0]
        assert history["rounds"][-1]["metrics"]["epsilon_rdp"] <= 3
    # calibrated for epsilon 3 at q = 1e-9, z is below PLD's cost limit and RDP's group bound over 2 neighbours
    # (a replacement as a removal and an addition) diverges: the record-level figure is reported unavailable
    record = history["config"]["record_level"]
    assert record["epsilon"] is None and record["accountant"].startswith("none: PLD is not asked")
    z = history["config"]["strategy"]["noise_multiplier"]
    assert z < 0.2


def test_under_dp_neighbouring_data_sets_release_no_exact_fact_of_the_data(tmp_path):
    """One added record whose update overflows: without DP the run reports it (non-finite count, record
    count, per-client sizes); under --dp the history, the ledger's parameters and the terminal carry none
    of it (they differed in the non-finite count and the record count before)."""
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 8)).astype(np.float32), rng.integers(0, 3, 200)
    x_test, y_test = rng.random((50, 8)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "clean.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    np.savez(
        tmp_path / "plus_one.npz",
        x=np.concatenate([x, np.full((1, 8), 3e38, np.float32)]),
        y=np.concatenate([y, [1]]),
        x_test=x_test,
        y_test=y_test,
    )
    common = [
        "--rounds",
        "3",
        "--clients",
        "20",
        "-C",
        "1.0",
        "--model",
        "linear",
        "--execution",
        "numpy",
        "--num-classes",
        "3",
        "--secure-aggregation",
    ]
    public = _run(common[:-1] + ["--dataset", str(tmp_path / "plus_one.npz"), "--json"], tmp_path)
    assert public.exit_code == 0, public.output
    assert _history(public)["config"]["client_sizes_sum"] == 201 and _history(public)["rounds"][0]["nonfinite"] == 1
    runs = {}
    for name in ("clean", "plus_one"):
        result = _run(
            common + ["--dp", "--dataset", str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / name)], tmp_path
        )
        assert result.exit_code == 0, result.output
        history = json.loads((tmp_path / name / "history.json").read_text())
        ledger = json.loads((tmp_path / name / "privacy_ledger.json").read_text())
        lines = [line for line in result.stderr.splitlines() if not line.startswith("round ")]
        runs[name] = (
            {k: v for k, v in history["config"].items() if k != "title"},
            [{k: v for k, v in r.items() if k not in ("evaluation", "metrics")} for r in history["rounds"]],
            ledger["parameters"],
            lines,
        )
        assert all(
            r["nonfinite"] is None and r["seconds"] is None and "clipped_coordinates" not in r["aggregation"]
            for r in history["rounds"]
        )
        assert "client_sizes_sum" not in history["config"] and history["config"]["execution_costs_s"] == {}
    assert runs["clean"] == runs["plus_one"]
    assert runs["clean"][3][0] == "20 clients (keyed iid partition)"


def test_under_dp_the_models_classes_are_a_setting_not_read_from_the_labels(tmp_path):
    """One added record with a new label would grow the model's output layer (and one huge label the model
    past memory) if the classes were read from the labels: under --dp --num-classes is required (the same
    one-line refusal for both neighbours, nothing written), and with it both neighbours train the same model.
    The Trainer's setting is required likewise."""
    rng = np.random.default_rng(0)
    x, y = rng.random((120, 4)).astype(np.float32), rng.integers(0, 3, 120)
    np.savez(tmp_path / "base.npz", x=x, y=y, x_test=x[:20], y_test=y[:20])
    np.savez(
        tmp_path / "plus.npz",
        x=np.concatenate([x, x[:1]]),
        y=np.concatenate([y, [10**9]]),
        x_test=x[:20],
        y_test=y[:20],
    )
    common = ["--dp", "--rounds", "1", "--clients", "10", "-C", "0.5", "--model", "linear", "--execution", "numpy"]
    refusals, sizes = set(), {}
    for name in ("base", "plus"):
        result = _run(common + ["--dataset", str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / name)], tmp_path)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        refusals.add(result.stderr)
        assert not (tmp_path / name).exists()
        result = _run(
            common + ["--num-classes", "8", "--dataset", str(tmp_path / f"{name}.npz"), "--out", str(tmp_path / name)],
            tmp_path,
        )
        assert result.exit_code == 0, result.output
        history = json.loads((tmp_path / name / "history.json").read_text())
        assert "classes" not in history["config"]["outside_guarantee"]
        sizes[name] = history["config"]["num_parameters"]
    [refusal] = refusals
    assert refusal.startswith("Error: --num-classes: a private run needs the model's number of classes")
    assert sizes["base"] == sizes["plus"] == 4 * 8 + 8
    with pytest.raises(InvalidFederatedSetting, match="num_classes"):
        FederatedTrainingConfig.for_trainer({"label_key": "y", "private": True})


def test_a_dp_run_on_beam_leaves_no_exact_aggregate_and_nothing_open_to_others(tmp_path, monkeypatch):
    """The Beam runner writes each round's exact (pre-noise) aggregate to a file for the driver: 0600, in a 0700
    folder of the round's own, removed with the round; the client data 0600 in the runner's 0700 folder, removed at
    the end. After a --dp run no file anywhere under the test's folders (the temporary folder included) holds an
    aggregate's bytes, no runner folder is left, and nothing the run left is open to group or others."""
    import os
    import pickle
    import stat
    import tempfile

    from federated.simulation import beam as beam_runner

    temporary = tmp_path / "tmp"
    temporary.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the runner puts its folder
    written, after_round = [], []
    run_round = beam_runner.BeamRunner.run_round
    # Beam pickles the step's function by value (a copy of its closure): it reports through the module instead.
    monkeypatch.setattr(beam_runner, "_spied", (beam_runner._write, written), raising=False)

    def spy_write(path, accumulator, diagnostics):
        import os
        import stat

        from federated.simulation import beam

        write, seen = beam._spied
        write(path, accumulator, diagnostics)
        folder = os.path.dirname(path)
        with open(path, "rb") as f:
            own = os.path.basename(folder).startswith("ppml-federated-round-")  # the round's own folder
            seen.append((f.read(), stat.S_IMODE(os.stat(path).st_mode), own and stat.S_IMODE(os.stat(folder).st_mode)))
        seen.append((accumulator.result().vector.tobytes(), None, None))  # the exact sum, however serialized

    def spy_round(self, job):
        out = run_round(self, job)
        after_round.append(sorted(os.listdir(self._folder)))
        return out

    monkeypatch.setattr(beam_runner, "_write", spy_write)
    monkeypatch.setattr(beam_runner.BeamRunner, "run_round", spy_round)
    args = ["--dp", "--rounds", "2", "--clients", "20", "--model", "linear", "--runner", "beam", "--seeded-noise"]
    result = _run(args, tmp_path)
    assert result.exit_code == 0, result.output
    modes = [(file_mode, folder_mode) for _, file_mode, folder_mode in written if file_mode is not None]
    assert modes == [(0o600, 0o700)] * 2
    assert all(len(names) == 1 and names[0].startswith("ppml-federated-clients-") for names in after_round)
    assert len(after_round) == 2 and not [n for n in os.listdir(temporary) if n.startswith("ppml-federated-")]
    left = [os.path.join(folder, name) for folder, dirs, files in os.walk(tmp_path) for name in dirs + files]
    assert left and all(stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0 for path in left), {
        path: oct(os.stat(path).st_mode) for path in left
    }  # TensorFlow's and Beam's own leftovers in the temporary folder (generated code, empty folders) included
    for path in (p for p in left if os.path.isfile(p)):
        with open(path, "rb") as f:
            content = f.read()
        assert not any(exact in content for exact, _, _ in written), path
    assert pickle.loads(written[0][0])[0].result() is not None  # what was searched for is the aggregate
