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


def _columns(n=150):
    rng = np.random.default_rng(1)
    x = rng.random((n, 3)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 1).astype(np.int64), np.arange(n) % 6


def test_csv_and_tfrecord_datasets_take_every_numeric_column_but_label_and_client(tmp_path):
    import tensorflow as tf   # the test writes TFRecords as ExampleGen does
    x, y, users = _columns()
    lines = ["f1,f2,f3,target,user,note"] + [f"{a},{b},{c},{t},u{k},x" for (a, b, c), t, k in zip(x, y, users)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with tf.io.TFRecordWriter(str(tmp_path / "part-0.gz"), options="GZIP") as writer:
        for (a, b, c), t in zip(x, y):
            feature = {"f": tf.train.Feature(float_list=tf.train.FloatList(value=[a, b, c])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[t]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    runs = {"csv": ["--dataset", str(tmp_path / "data.csv"), "--label-column", "target", "--client-column", "user",
                    "--partition", "natural"],
            "tfrecord": ["--dataset", str(tmp_path / "part-*"), "--clients", "5"]}
    for name, args in runs.items():
        result = CliRunner().invoke(cli, ["federated", "run", "--rounds", "2", "--fraction", "1.0", "--execution",
                                          "numpy", "--json", "--out", str(tmp_path / name)] + args)
        assert result.exit_code == 0, result.output
        config = json.loads(result.stdout[result.stdout.index("{"):])["config"]
        assert config["client_sizes_sum"] == 120 and config["num_clients"] == (6 if name == "csv" else 5)
        assert config["num_parameters"] == 3 * 2 + 2    # three features (not target, user, note), two classes
    (tmp_path / "gap.csv").write_text("a,label\n1.5,0\n,1\n2.5,1\n")
    (tmp_path / "notes.txt").write_text("not a TFRecord\n")
    for dataset, message in (("data.csv", r"--label-column \(.*data.csv\): no column 'label'"),
                             ("gap.csv", "column 'a' holds numbers but line 3 is empty"),
                             ("notes.*", "not readable as TFRecord files")):
        result = CliRunner().invoke(cli, ["federated", "run", "--dataset", str(tmp_path / dataset), "--rounds", "1",
                                          "--out", str(tmp_path / "bad")])
        assert result.exit_code == 2 and re.search(message, result.output), result.output


@pytest.mark.parametrize("args, message", [
    (["--partition", "dirichlet", "--alpha", "0"], "alpha must be a finite number > 0, got 0.0"),
    (["--fraction", "1.5"], r"fraction must be in \(0, 1\], got 1.5"),
    (["--partition", "shards", "--clients", "1000"], "2000 shards"),
    (["--dataset", "mnist.npz"], "--dataset must be 'digits', an existing .npz or .csv file, or TFRecord files"),
])
def test_bad_options_are_named(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["federated", "run", "--rounds", "1", "--out", str(tmp_path)] + args)
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
