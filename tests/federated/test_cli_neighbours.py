"""`ppml federated run --dp` on neighbouring data sets: one user, record, cell, line or count apart, both run and
release the same."""

import json
import re
import warnings

import dp_accounting
import numpy as np
import pytest
from dp_accounting import dp_event

from .test_cli import _SMALL_RUN, _cli_rows, _run, _write_csv

pytestmark = pytest.mark.usefixtures("memoized_calibration")


def _users_csv(path, users: int, newcomer=None):
    """A CSV of ``users`` users (10 to 40 rows each); ``newcomer`` (its rows' features) gives the last user's
    place to a new user with those rows, which is a replace-one neighbour of the same number of users."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(10, 40, users)
    x = rng.normal(size=(int(sizes.sum()), 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    names = np.repeat([f"u{i}" for i in range(users)], sizes)
    if newcomer is not None:
        keep = names != f"u{users - 1}"
        x, y = np.concatenate([x[keep], newcomer]), np.concatenate([y[keep], (newcomer[:, 0] > 0).astype(np.int64)])
        names = np.concatenate([names[keep], ["newcomer"] * len(newcomer)])
    return _write_csv(path, x, y, names)


_BINARY_BY_USER = ["--num-classes", "2", "--client-column", "user", "--partition", "natural"]
"""Flags of the users' CSV runs: two classes, one client per value of its `user` column."""


def _held_out_newcomer(tmp_path, users: int) -> str:
    """A `_users_csv` whose newcomer has one row, which the command line holds out for evaluation."""
    args = [
        "--dp",
        "--noise-multiplier",
        "1.0",
        *_BINARY_BY_USER,
    ]
    rng = np.random.default_rng(3)
    while True:
        newcomer = rng.normal(size=(1, 4)).astype(np.float32)
        path = _users_csv(tmp_path / "held_out_newcomer.csv", users, newcomer)
        if tuple(newcomer[0].tolist()) + (int(newcomer[0, 0] > 0),) in _cli_rows(["--dataset", path, *args])[1]:
            return path


def test_user_level_dp_releases_the_number_of_users_only_where_the_adjacency_holds_it_fixed(tmp_path):
    """One client per user: N is the number of users, which the ledger, history.json and the terminal carry
    (it sets delta, the calibrated z and the update's scale). Poisson sampling's add/remove neighbours (9 vs 10
    users) would differ in N, so it is refused with the same one line for both, before reading anything;
    uniform sampling's replace-one neighbours (a user replaced, also by a user whose one row is held out for
    evaluation: users are counted over all rows) have the same N, and every output but the noise-dependent
    metrics is the same, with the epsilon dp-accounting gives."""
    users = ["--client-column", "user", "--partition", "natural", "--num-classes", "2"]
    common = ["--dp", "--rounds", "2", "-C", "0.5", "--model", "linear", "--execution", "numpy", *users]
    refusals = []
    for count in (9, 10):
        result = _run(
            [*common, "--sampling", "poisson", "--dataset", _users_csv(tmp_path / f"u{count}.csv", count)], tmp_path
        )
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        refusals.append(result.stderr)
    assert refusals[0] == refusals[1] and refusals[0].startswith(
        "Error: --sampling: with one client per user, N is the number of users in the data"
    )
    assert "use uniform sampling" in refusals[0] and not (tmp_path / "run").exists()
    runs = {}
    datasets = {
        "ten": _users_csv(tmp_path / "ten.csv", 10),
        "replaced": _users_csv(tmp_path / "replaced.csv", 10, np.random.default_rng(2).normal(size=(7, 4))),
        "held_out": _held_out_newcomer(tmp_path, 10),
    }
    for name, dataset in datasets.items():
        out = tmp_path / name
        result = _run([*common, "--dataset", dataset, "--out", str(out)], tmp_path)
        assert result.exit_code == 0, result.output
        history = json.loads((out / "history.json").read_text())
        ledger = json.loads((out / "privacy_ledger.json").read_text())
        runs[name] = (
            {k: v for k, v in history["config"].items() if k != "title"},
            [{k: v for k, v in r.items() if k != "evaluation"} for r in history["rounds"]],
            ledger,
            [line for line in result.stderr.splitlines() if not line.startswith("round ")],
            [line for line in result.stdout.splitlines() if not line.startswith(("final accuracy", "wrote"))],
        )
    assert runs["ten"] == runs["replaced"] == runs["held_out"]
    config, rounds, ledger, stderr, _ = runs["ten"]
    assert ledger["parameters"]["dataset_size"] == 10 and ledger["parameters"]["privacy_unit"] == "user"
    assert ledger["parameters"]["adjacency"] == "replace-one" and [r["sampled"] for r in rounds] == [5, 5]
    assert "belongs to no user" in ledger["parameters"]["outside_guarantee"]["clients"]  # N counts readable ids
    assert (
        "delta = 0.01 (the default: the largest power of ten at most 1/(2N), N = 10 users, treated as public)"
        in stderr[1]
    )
    z = ledger["parameters"]["noise_multiplier"]
    event = dp_event.SampledWithoutReplacementDpEvent(10, 5, dp_event.GaussianDpEvent(z / 2))
    expected = (
        dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        .compose(event, 2)
        .get_epsilon(0.01)
    )
    assert ledger["epsilon"]["rdp"] == pytest.approx(expected, rel=1e-12) and 2.99 <= expected <= 3


@pytest.mark.parametrize(
    "bad, refusal",
    [
        ("nan", "--dataset: .*'x' or 'x_test' has NaN or infinite values"),
        ("inf", "--dataset: .*'x' or 'x_test' has NaN or infinite values"),
        ("1e300", "--dataset: .*'x' or 'x_test' has NaN or infinite values"),
        ("label 7", "--num-classes: the labels go up to 7, which does not fit 3 classes"),
        ("label -1", "--dataset: .*'y' must hold labels >= 0, got -1"),
        ("label inf", "--label-column .*must hold one integer class per example"),
        ("label -inf", "--label-column .*must hold one integer class per example"),
    ],
)
def test_under_dp_one_bad_record_does_not_decide_whether_the_run_happens(tmp_path, bad, refusal):
    """Neighbouring CSV files, one with a record whose feature is NaN, infinite or 1e300 (infinite in
    float32), or whose label is outside --num-classes or infinite: without --dp the run is refused in one
    line; under --dp both neighbours run, the record is left out alone, and the ledger, the history's
    settings and rounds (but the noisy evaluation) and the terminal lines, Python warnings included (a
    numpy RuntimeWarning would be one more stderr line), are the same (the count left out is not
    reported)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 3, 200)
    row, label = np.zeros(4), 1
    if bad.startswith("label"):
        label = float(bad.split()[1]) if "inf" in bad else int(bad.split()[1])
    else:
        row[2] = float(bad)
    clean = _write_csv(tmp_path / "clean.csv", x, y)
    plus = _write_csv(tmp_path / "plus.csv", np.vstack([x, row]), np.append(y, label))
    common = [*_SMALL_RUN, "--num-classes", "3"]
    public = _run([*common, "--dataset", plus], tmp_path)
    assert public.exit_code == 2 and public.stderr.count("\n") == 1 and re.search(refusal, public.stderr), public.output
    runs = {}
    for name, dataset in (("clean", clean), ("plus", plus)):
        out = tmp_path / name
        with warnings.catch_warnings(record=True) as caught:  # as a process writes them to stderr
            warnings.simplefilter("always")
            result = _run([*common, "--dp", "--dataset", dataset, "--out", str(out)], tmp_path)
        assert result.exit_code == 0, result.output
        runs[name] = (
            *_dp_outputs(result, out),
            [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)],
        )  # imports
    assert runs["clean"] == runs["plus"]


def _dp_outputs(result, out):
    """What a private run releases but its noisy metrics: history (no title), rounds (no evaluation), ledger,
    terminal lines."""
    history = json.loads((out / "history.json").read_text())
    return (
        {k: v for k, v in history["config"].items() if k != "title"},
        [{k: v for k, v in r.items() if k != "evaluation"} for r in history["rounds"]],
        json.loads((out / "privacy_ledger.json").read_text()),
        [line for line in result.stderr.splitlines() if not line.startswith("round ")],
        [line for line in result.stdout.splitlines() if not line.startswith(("final accuracy", "wrote"))],
    )


def _clean_and_bad_by_user(tmp_path, clean: str):
    """{"clean", "bad"}: the releases (`_dp_outputs`) and the clients (`_cli_rows`) of --dp runs on ``clean`` and on
    tmp_path/bad.csv, one client per user, half of them in each of two rounds, the linear model."""
    common = ["--dp", "--rounds", "2", "-C", "0.5", "--model", "linear", "--execution", "numpy", *_BINARY_BY_USER]
    runs, clients = {}, {}
    for name, dataset in (("clean", clean), ("bad", str(tmp_path / "bad.csv"))):
        result = _run([*common, "--dataset", dataset, "--out", str(tmp_path / name)], tmp_path)
        assert result.exit_code == 0, result.output
        runs[name] = _dp_outputs(result, tmp_path / name)
        clients[name] = _cli_rows([*common, "--dataset", dataset])[0]
    return runs, clients


@pytest.mark.parametrize("bad", ["feature abc", "feature empty", "label 1.5", "user 1.5", "fields extra"])
def test_under_dp_no_csv_cell_decides_a_column_type_the_features_the_clients_or_the_run(tmp_path, bad):
    """Replace-one-user neighbours of a clean CSV with integer user ids: the last user is replaced by one row with
    a text feature cell, an empty one, a label 1.5, the user id 1.5, or one field too many. Inferred from the
    values, each would drop a feature column, refuse the run, or turn every id into a float ("1" into "1.0"), and
    the extra field would drop the row and its user (N = 9); under --dp every cell is read alone against the
    declared columns: both neighbours run, every other client keeps its id and its rows, the last user stays a
    client, the model's width is the same, and so is everything the run releases."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y, users = (x[:, 0] > 0).astype(np.int64), np.repeat(np.arange(10), 12)
    clean = _write_csv(tmp_path / "clean.csv", x, y, users)
    row = {"f0": "0.5", "f1": "0.5", "f2": "0.5", "f3": "0.5", "user": "9", "label": "1"}
    kind, value = bad.split()
    if kind != "fields":
        row["f2" if kind == "feature" else kind] = "" if value == "empty" else value
    lines = (tmp_path / "clean.csv").read_text().splitlines()
    kept = [line for line in lines[1:] if line.split(",")[4] != "9"]
    last = ",".join(row.values()) + (",extra" if kind == "fields" else "")
    (tmp_path / "bad.csv").write_text("\n".join([lines[0], *kept, last]) + "\n")
    runs, clients = _clean_and_bad_by_user(tmp_path, clean)
    assert runs["clean"] == runs["bad"] and runs["clean"][0]["num_parameters"] == 4 * 2 + 2
    newcomer = "1.5" if kind == "user" else "9"
    assert sorted(clients["bad"]) == sorted([*map(str, range(9)), newcomer])
    assert {k: v for k, v in clients["bad"].items() if k != newcomer} == {
        k: v for k, v in clients["clean"].items() if k != "9"
    }
    if kind != "user":  # the bad row is left out alone: its user stays, an empty client
        assert clients["bad"][newcomer] == set()


BAD_LINES = {
    "huge cell": (b"0.5,0.5," + b"9" * 200_000 + b",0.5,3,1", 60),
    "byte 0xff": (b"0.5,0.5,0.\xff5,0.5,3,1", 60),
    "stray quote first": (b'0.5,0.5,"abc,0.5,3,1', 0),
    "stray quote mid": (b'0.5,0.5,"abc,0.5,3,1', 60),
}


@pytest.mark.parametrize("bad", BAD_LINES)
def test_under_dp_no_csv_line_reaches_another_line_or_decides_the_run(tmp_path, bad):
    """Add-one-row neighbours of a clean CSV: the added line has a cell beyond the csv module's field limit, a
    byte that is not UTF-8, or an unbalanced quote (first or mid-file). Parsed as one stream, these crash the run,
    refuse it, or swallow every later line (N = 5 of 10 users); under --dp each physical line is parsed alone:
    both neighbours run, every client keeps its rows, and everything the run releases is the same."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    clean = _write_csv(tmp_path / "clean.csv", x, (x[:, 0] > 0).astype(np.int64), np.repeat(np.arange(10), 12))
    line, at = BAD_LINES[bad]
    lines = (tmp_path / "clean.csv").read_bytes().splitlines()
    (tmp_path / "bad.csv").write_bytes(b"\n".join([*lines[: at + 1], line, *lines[at + 1 :]]) + b"\n")
    runs, clients = _clean_and_bad_by_user(tmp_path, clean)
    assert runs["clean"] == runs["bad"] and runs["clean"][2]["parameters"]["dataset_size"] == 10
    assert clients["bad"] == clients["clean"]


def test_under_dp_no_exact_count_at_the_edges_decides_whether_the_run_happens(tmp_path):
    """Add-one-row neighbours at the edges of a private run: a CSV none of whose rows is held out for evaluation
    against one more row that is, and a CSV none of whose rows is trainable (every label "x") against one more
    row that is. Exact counts (no evaluation row, no trainable record) once refused one of each pair; under --dp
    all four run (an empty evaluation gives NaN metrics, empty clients send zero updates) and each pair releases
    the same."""
    rng = np.random.default_rng(5)
    lines = ["f0,f1,label"]
    while True:  # grow until the last row added is the first one held out
        lines.append(f"{rng.normal():.4f},{rng.normal():.4f},{len(lines) % 2}")
        (tmp_path / "grown.csv").write_text("\n".join(lines) + "\n")
        dp = ["--dp", "--noise-multiplier", "1.0", "--num-classes", "2", "--dataset", str(tmp_path / "grown.csv")]
        if _cli_rows(dp)[1]:
            break
    (tmp_path / "none_held_out.csv").write_text("\n".join(lines[:-1]) + "\n")
    (tmp_path / "all_bad.csv").write_text(
        "\n".join(["f0,f1,label", *(f"{v:.3f},0.5,x" for v in rng.normal(size=30))]) + "\n"
    )
    (tmp_path / "all_bad_plus_one.csv").write_text((tmp_path / "all_bad.csv").read_text() + "0.1,0.2,1\n")
    common = [
        "--dp",
        "--rounds",
        "1",
        "--clients",
        "4",
        "-C",
        "0.5",
        "--model",
        "linear",
        "--execution",
        "numpy",
        "--num-classes",
        "2",
    ]
    for pair in (("none_held_out", "grown"), ("all_bad", "all_bad_plus_one")):
        runs = []
        for name in pair:
            dataset = str(tmp_path / f"{name}.csv")
            result = _run([*common, "--dataset", dataset, "--out", str(tmp_path / name)], tmp_path)
            assert result.exit_code == 0, result.output
            runs.append(_dp_outputs(result, tmp_path / name))
        assert runs[0] == runs[1], pair


def _example(**features) -> bytes:
    import tensorflow as tf

    lists = {
        float: lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v)),
        int: lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v)),
        bytes: lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v)),
    }
    feature = {k: lists[type(v[0])](v) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.mark.parametrize("bad", ["missing feature", "other kind", "other first record", "not a tf.Example"])
def test_under_dp_no_tfrecord_decides_the_features_their_kinds_or_the_run(tmp_path, bad):
    """Neighbouring TFRecord files, one with a record that lacks a feature (last), holds one as bytes (first),
    comes first with an extra feature and a feature of two values, or comes first and is not a tf.Example.
    Read from the first record, the features refuse the run without --dp (one line); under --dp each record is
    read alone against --feature-column (one number each): both neighbours run and release the same, the bad
    record left out alone."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4))
    records = [_example(**{f"f{j}": [float(v)] for j, v in enumerate(row)}, label=[int(row[0] > 0)]) for row in x]
    extra = {
        "missing feature": _example(f0=[0.5], f1=[0.5], f3=[0.5], label=[1]),
        "other kind": _example(f0=[0.5], f1=[0.5], f2=[b"0.5"], f3=[0.5], label=[1]),
        "other first record": _example(f0=[0.5], f1=[0.5], f2=[0.5, 0.5], f3=[0.5], g=[1.0], label=[1]),
        "not a tf.Example": b"\xff\xff\xff\xff not a proto",
    }[bad]
    bad_rows = [*records, extra] if bad == "missing feature" else [extra, *records]  # first, it would decide
    for name, rows in (("clean", records), ("bad", bad_rows)):
        with tf.io.TFRecordWriter(str(tmp_path / f"{name}.tfrecord")) as writer:
            for record in rows:
                writer.write(record)
    common = [*_SMALL_RUN, "--num-classes", "2"]
    public = _run([*common, "--dataset", str(tmp_path / "bad.tfrecord")], tmp_path)
    assert public.exit_code == 2 and public.stderr.count("\n") == 1, public.output
    features = [arg for j in range(4) for arg in ("--feature-column", f"f{j}")]
    refused = _run([*common, "--dp", "--dataset", str(tmp_path / "bad.tfrecord")], tmp_path)
    assert refused.exit_code == 2 and refused.stderr.startswith(
        "Error: --feature-column: under --dp name the features of TFRecords"
    ), refused.output
    runs = {}
    for name in ("clean", "bad"):
        result = _run(
            [
                *common,
                "--dp",
                *features,
                "--dataset",
                str(tmp_path / f"{name}.tfrecord"),
                "--out",
                str(tmp_path / name),
            ],
            tmp_path,
        )
        assert result.exit_code == 0, result.output
        runs[name] = _dp_outputs(result, tmp_path / name)
    assert runs["clean"] == runs["bad"] and runs["clean"][0]["num_parameters"] == 4 * 2 + 2
