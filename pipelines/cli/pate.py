"""`ppml pate run` and `ppml pate epsilon`: PATE on a bundled data set, and PATE's epsilon.

Settings are checked before TensorFlow is imported; bad ones exit 2 with one line naming the option.
"""

from __future__ import annotations

import json
import os

import click
import numpy as np

from pipelines.cli.types import checked
from privacy import validation
from privacy.pate import (
    ConfidentGNMax,
    GNMax,
    PateConfigurationError,
    SmoothedRdp,
    SmoothSensitivityRelease,
    VoteHistory,
    analyze,
    check_disjoint,
    check_public_private,
    data_independent_epsilon,
    partition_by_key,
    release_or_refusal,
)
from privacy.pate.analysis import DATA_INDEPENDENT, UNIT
from privacy.pate.student import DEFAULT_CONFIDENCE, DEFAULT_ROUNDS, SelfTraining
from privacy.pate.votes import check_teachers

DATASETS = {"digits": 10, "breast_cancer": 2}
"""Bundled data sets and their number of classes (a public fact)."""


RELEASE_KEY = "smoothed_release"
"""Key of the vote history file that holds its one smoothed release (or {"refused": why})."""


def _usage(option: str, message) -> click.UsageError:
    return click.UsageError(f"{option}: {' '.join(str(message).split())}")


def _aggregator(o):
    """GNMax, or Confident-GNMax when --threshold is given; errors name the option."""
    if o["sigma"] is None:
        raise _usage("--sigma", "the GNMax noise std is required")
    try:
        if o["threshold"] is None:
            if o["sigma1"] is not None or o["max_answered"] is not None:
                raise _usage(
                    "--sigma1" if o["sigma1"] is not None else "--max-answered",
                    "--sigma1 and --max-answered need --threshold (Confident-GNMax)",
                )
            return GNMax(o["sigma"])
        if o["sigma1"] is None:
            raise _usage("--sigma1", "Confident-GNMax (--threshold) needs the selection noise --sigma1")
        return ConfidentGNMax(o["threshold"], o["sigma1"], o["sigma"], o["max_answered"])
    except PateConfigurationError as err:
        option = {
            "sigma": "--sigma",
            "sigma1": "--sigma1",
            "sigma2": "--sigma",
            "threshold": "--threshold",
            "max_answered": "--max-answered",
        }.get(str(err).split()[0], "--sigma")
        raise _usage(option, str(err).replace("sigma2", "sigma")) from None


def _release(o) -> SmoothSensitivityRelease:
    try:
        return SmoothSensitivityRelease(order=o["smooth_order"], beta=o["smooth_beta"], sigma_ss=o["sigma_ss"])
    except PateConfigurationError as err:
        raise _usage("--smooth-order/--smooth-beta/--sigma-ss", err) from None


def _self_training(o) -> SelfTraining | None:
    """The student's self-training settings, or None (answered queries only); errors name the option."""
    if not o["semi_supervised"]:
        given = [
            name
            for name, key in (("--confidence", "confidence"), ("--self-training-rounds", "rounds"))
            if o[key] is not None
        ]
        if given:
            raise _usage(given[0], "sets the student's self-training: it needs --semi-supervised")
        return None
    try:
        return SelfTraining(
            DEFAULT_CONFIDENCE if o["confidence"] is None else o["confidence"],
            DEFAULT_ROUNDS if o["rounds"] is None else o["rounds"],
        )
    except PateConfigurationError as err:
        raise _usage("--confidence" if str(err).startswith("confidence") else "--self-training-rounds", err) from None


def _noise_options(fn):
    for option in reversed(
        [
            click.option(
                "--sigma",
                type=float,
                help="GNMax noise std, in votes (sigma2 of Confident-GNMax); required unless --votes.",
            ),
            click.option(
                "--threshold",
                type=float,
                help="Confident-GNMax: answer iff max vote + N(0, sigma1^2) >= this many votes.",
            ),
            click.option("--sigma1", type=float, help="Confident-GNMax selection noise std, in votes."),
            click.option(
                "--max-answered",
                type=click.IntRange(min=1),
                help="Confident-GNMax: stop after this many answers (charged in the guarantee).",
            ),
            click.option(
                "--delta",
                type=float,
                default=1e-5,
                show_default=True,
                callback=checked("--delta", validation.probability),
                help="Target delta.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
        ]
    ):
        fn = option(fn)
    return fn


def _smoothing_options(fn):
    for option in reversed(
        [
            click.option(
                "--smooth-order",
                type=float,
                default=20.0,
                show_default=True,
                help="RDP order of the one smoothed data-dependent release, made once by this run and stored "
                "in --votes-out (fixed before the votes are seen).",
            ),
            click.option("--smooth-beta", type=float, help="Smoothness beta of that release [default: 0.4/order]."),
            click.option(
                "--sigma-ss",
                type=float,
                default=10.0,
                show_default=True,
                help="Noise multiplier of the smooth sensitivity in that release.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.group()
def pate():
    """PATE: teachers on disjoint private partitions label public queries through a noisy vote."""


@pate.command()
@click.option(
    "--votes",
    "votes_file",
    type=click.Path(dir_okay=False),
    help="Vote history (JSON written by 'ppml pate run --votes-out'); its aggregator settings are used.",
)
@click.option("--teachers", type=click.IntRange(min=1), help="Without --votes: number of teachers.")
@click.option("--classes", type=click.IntRange(min=2), help="Without --votes: number of classes.")
@click.option("--queries", type=click.IntRange(min=1), help="Without --votes: number of queries.")
@_noise_options
def epsilon(votes_file, teachers, classes, queries, **o):
    """PATE's epsilon: the data-independent guarantee from (teachers, queries, noise), or the report of a vote
    history, with the smoothed data-dependent release 'ppml pate run' made once and stored in it (never a new
    one: each new release would cost privacy, and averaging them would undo the noise).
    """
    if votes_file is None:
        missing = [
            name
            for name, value in (("--teachers", teachers), ("--classes", classes), ("--queries", queries))
            if value is None
        ]
        if missing:
            raise _usage(missing[0], "needed without --votes")
        aggregator = _aggregator(o)
        try:
            check_teachers(teachers, classes)
        except PateConfigurationError as err:
            raise _usage("--teachers", err) from None
        try:
            eps = data_independent_epsilon(aggregator, queries, o["delta"])
        except PateConfigurationError as err:
            raise _usage("--sigma", err) from None
        out = {
            "aggregator": aggregator.to_json(),
            "teachers": teachers,
            "classes": classes,
            "queries": queries,
            "delta": o["delta"],
            "privacy_unit": UNIT,
            "guarantee": {"epsilon": eps, "analysis": DATA_INDEPENDENT},
        }
        if o["as_json"]:
            click.echo(json.dumps(out, indent=2))
        else:
            click.echo(f"privacy unit: {UNIT}")
            click.echo(f"guarantee: epsilon = {eps:.4f} at delta = {o['delta']:g}  [{DATA_INDEPENDENT}]")
        return
    if any(
        v is not None for v in (teachers, classes, queries, o["sigma"], o["threshold"], o["sigma1"], o["max_answered"])
    ):
        raise _usage(
            "--votes",
            "the vote history names its settings: drop --teachers/--classes/--queries/"
            "--sigma/--threshold/--sigma1/--max-answered",
        )
    history, smoothed, refused = _read_history(votes_file)
    try:
        report = analyze(history, o["delta"], smoothed=smoothed, smoothed_refused=refused)
    except PateConfigurationError as err:
        raise _usage("--votes", f"{votes_file}: {err}") from None
    _print(report, o["as_json"])


def _read_history(path: str) -> tuple[VoteHistory, SmoothedRdp | None, str | None]:
    """The history, its stored smoothed release (or None), and why none is there."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        history = VoteHistory.from_json(data)
        stored = data.get(RELEASE_KEY)
        if stored is None:
            return history, None, "the vote history holds no smoothed release (only 'ppml pate run' makes one)"
        if isinstance(stored, dict) and set(stored) == {"refused"}:
            return history, None, str(stored["refused"])
        return history, SmoothedRdp.from_json(stored), None
    except (OSError, TypeError, ValueError) as err:  # ValueError: JSON, ragged arrays, PateConfigurationError
        raise _usage("--votes", f"{path}: {err}") from None


def _print(report, as_json: bool, extra: dict | None = None) -> None:
    if as_json:
        click.echo(json.dumps({**report.to_json(), **(extra or {})}, indent=2))
    else:
        for line in report.lines():
            click.echo(line)
        for key, value in (extra or {}).items():
            click.echo(f"{key}: {value}")


@pate.command()
@click.option("--dataset", type=click.Choice(sorted(DATASETS)), default="digits", show_default=True)
@click.option("--teachers", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--public-fraction",
    type=click.FloatRange(0.05, 0.9),
    default=0.3,
    show_default=True,
    help="Share of rows in the public, unlabeled query split.",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0.05, 0.5),
    default=0.2,
    show_default=True,
    help="Share of rows held out to measure accuracy.",
)
@click.option(
    "--partitions",
    "partitions_file",
    type=click.Path(dir_okay=False),
    help='JSON {"teachers": [[row, ...], ...], "public": [row, ...]} (row numbers of the data set) instead '
    "of the keyed split; the teachers are then its partitions and --teachers is not used.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, 1000),
    default=30,
    show_default=True,
    help="Epochs of each teacher and of the student.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the keyed split and partition, and of the models' initialisation (not of the privacy noise).",
)
@click.option(
    "--votes-out",
    type=click.Path(dir_okay=False),
    help="Write the vote history here (private: the teachers' votes), readable by you only.",
)
@click.option(
    "--semi-supervised",
    is_flag=True,
    help="Self-train the student: also fit it on the unanswered public queries it labels itself with "
    "probability >= --confidence (post-processing of the released labels: same epsilon).",
)
@click.option(
    "--confidence",
    type=float,
    help=f"With --semi-supervised: the predicted probability a pseudo-label needs, in (0, 1] "
    f"[default: {DEFAULT_CONFIDENCE}].",
)
@click.option(
    "--self-training-rounds",
    "rounds",
    type=int,
    help=f"With --semi-supervised: pseudo-label and refit rounds [default: {DEFAULT_ROUNDS}].",
)
@_noise_options
@_smoothing_options
def run(dataset, teachers, public_fraction, test_fraction, partitions_file, epochs, seed, votes_out, **o):
    """Train teachers on disjoint partitions of a bundled data set, label the public split through the
    aggregator, train the student on the answered queries (with --semi-supervised, also on unanswered ones it
    pseudo-labels), and report accuracy and epsilon."""
    if public_fraction + test_fraction >= 0.95:
        raise _usage("--public-fraction", "public and test fractions leave too few private rows")
    aggregator = _aggregator(o)
    release = _release(o)
    self_training = _self_training(o)
    num_classes = DATASETS[dataset]
    try:
        check_teachers(teachers, num_classes)
    except PateConfigurationError as err:
        raise _usage("--teachers", err) from None
    x, y = _load(dataset)
    if teachers > len(y):  # the bundled data set's size is public
        raise _usage("--teachers", f"at most {len(y)} (the rows of {dataset}), got {teachers}")
    from federated.partitioners.keyed import content_keys

    keys = content_keys(x, y)
    private, public, test = _split(keys, public_fraction, test_fraction, seed)
    if partitions_file is not None:
        parts, public = _read_partitions(partitions_file, len(y), num_classes)
        private = np.concatenate(parts)
        test = np.setdiff1d(test, np.union1d(private, public))
    else:  # a teacher that gets no row votes data-independently: no refusal here depends on private rows
        parts = [private[p] for p in partition_by_key([keys[i] for i in private], teachers, seed=seed)]
    if votes_out is not None and (
        os.path.isdir(votes_out) or not os.path.isdir(os.path.dirname(os.path.abspath(votes_out)))
    ):
        raise _usage("--votes-out", f"{votes_out} is a folder, or its folder does not exist")
    mean, std = x[public].mean(axis=0), x[public].std(axis=0) + 1e-6  # scaled with public statistics only
    x = (x - mean) / std
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
    from privacy.pate import keras_training

    votes = keras_training.teacher_votes(x, y, parts, x[public], num_classes, epochs=epochs, seed=seed)
    history = aggregator.aggregate(votes)
    smoothed, refused = release_or_refusal(release, history)  # the one release of this history
    answered = history.answered
    extra = {
        "answered_label_accuracy": float(np.mean(history.labels[answered] == y[public][answered]))
        if answered.any()
        else None
    }
    if answered.any():
        student, training = keras_training.fit_student(
            x[public], history.labels, answered, num_classes, epochs=epochs, seed=seed, self_training=self_training
        )
        extra["student_training"] = training.to_json()
        extra["student_test_accuracy"] = keras_training.accuracy(student, x[test], y[test])
    extra["accuracies_note"] = "measured on labeled held-out rows: outside the privacy guarantee"
    if votes_out is not None:
        from privacy.atomic_files import write_atomically

        stored = smoothed.to_json() if smoothed is not None else {"refused": refused}
        write_atomically(votes_out, json.dumps({**history.to_json(), RELEASE_KEY: stored}))
    _print(analyze(history, o["delta"], smoothed=smoothed, smoothed_refused=refused), o["as_json"], extra)


def _load(dataset: str):
    from sklearn import datasets

    data = datasets.load_digits() if dataset == "digits" else datasets.load_breast_cancer()
    return data.data.astype("float64"), data.target.astype("int64")


def _split(keys, public_fraction: float, test_fraction: float, seed: int):
    """(private, public, test) row indices, each row placed by a keyed hash of its content alone (adding or
    removing one record moves no other between the splits)."""
    from federated.partitioners.keyed import keyed_uniforms

    u = keyed_uniforms(keys, seed, salt=b"pate-split")
    public = np.flatnonzero(u < public_fraction)
    test = np.flatnonzero((u >= public_fraction) & (u < public_fraction + test_fraction))
    return np.flatnonzero(u >= public_fraction + test_fraction), public, test


def _read_partitions(path: str, num_rows: int, num_classes: int):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("teachers"), list)
            or not isinstance(data.get("public"), list)
        ):
            raise PateConfigurationError('expected {"teachers": [[rows], ...], "public": [rows]}')
        parts = check_disjoint(data["teachers"], num_rows)
        check_teachers(len(parts), num_classes)
        public = np.asarray(data["public"], dtype=np.int64)
        if public.size == 0 or public.min() < 0 or public.max() >= num_rows:
            raise PateConfigurationError(f"public rows must be in [0, {num_rows})")
        check_public_private(public, np.concatenate(parts))
        return parts, np.unique(public)
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as err:
        raise _usage("--partitions", f"{path}: {err}") from None


COMMANDS = [pate]
