"""`ppml federated run`: simulate federated training from the command line.

The flags are the Federated Trainer's settings (`pipelines.components.federated_trainer.spec`, the one
source of their defaults), plus the simulation's own (data set, model size, runner, dropouts,
checkpoints, outputs). Every setting, path and size is checked before TensorFlow is imported; a bad one
is a one-line error naming its flag (exit 2), and nothing is written. The run writes ``history.json``, a
plot of accuracy (and epsilon) per round and, under ``--dp``, the privacy ledger in the Federated
Trainer's format (``privacy_ledger.json``), each atomically; everything the run writes (outputs, checkpoints,
the Beam runner's temporary files) is owner-only (umask 077). Under ``--dp`` it prints and writes no exact
fact of the data (per-client sizes, record and non-finite counts, timings), and tags what it reports
outside the guarantee (accuracy on held-out private rows; epsilon under ``--seeded-noise``) wherever it
appears. Ctrl-C stops it with exit 130; with ``--checkpoint-dir`` the same command resumes where it
stopped.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import zipfile

import click
import numpy as np
from click.core import ParameterSource

from federated.strategies import (
    DEFAULT_SERVER_LEARNING_RATES,
    SERVER_OPTIMIZERS,
    DifferentialPrivacyAdaptiveClipping,
    DifferentialPrivacyFixedClipping,
    FedAvg,
)
from federated.strategies.dp_adaptive_clipping import COUNT_STDDEV_SHARE
from pipelines import private_root
from pipelines.cli.aliases import deprecated_alias
from pipelines.cli.types import FiniteFloatRange
from pipelines.components.federated_trainer.spec import (
    CLIPS,
    DEALING_SETTINGS,
    DEFAULT_TARGET_EPSILON,
    EXECUTIONS,
    MAX_SEED,
    PARTITIONS,
    PRIVACY_SETTINGS,
    SAMPLINGS,
    TRUST_MODELS,
    FederatedTrainingConfig,
    InvalidFederatedSetting,
)
from privacy.accounting import DEFAULT_DELTA_RULE, MAX_STEPS, AccountantKind

DEFAULTS = FederatedTrainingConfig()
OPTION_OF_SETTING = {
    "label_key": "--label-column",
    "client_key": "--client-column",
    "feature_keys": "--feature-column",
    "partition": "--partition",
    "alpha": "--alpha",
    "shards_per_client": "--shards-per-client",
    "num_clients": "--clients",
    "rounds": "--rounds",
    "sampling": "--sampling",
    "fraction": "--fraction",
    "hidden_units": "--hidden",
    "local_epochs": "--local-epochs",
    "batch_size": "--batch-size",
    "client_learning_rate": "--client-lr",
    "server_optimizer": "--server-optimizer",
    "server_learning_rate": "--server-lr",
    "server_momentum": "--server-momentum",
    "proximal_mu": "--prox-mu",
    "weighted": "--unweighted",
    "private": "--dp",
    "noise_multiplier": "--noise-multiplier",
    "target_epsilon": "--target-epsilon",
    "clip": "--clip",
    "clipping_norm": "--clipping-norm",
    "target_unclipped_quantile": "--target-quantile",
    "clipped_count_stddev": "--clipped-count-stddev",
    "delta": "--target-delta",
    "accountant": "--accountant",
    "max_epsilon": "--max-epsilon",
    "seeded_noise": "--seeded-noise",
    "secure_aggregation": "--secure-aggregation",
    "secagg_bits": "--secagg-bits",
    "secagg_range": "--secagg-range",
    "secagg_modulus_bits": "--secagg-modulus-bits",
    "seed": "--seed",
    "execution": "--execution",
    "num_classes": "--num-classes",
    "trust_model": "--trust-model",
}
MODELS = {"linear": (), "2nn": (200, 200)}
"""--model: hidden layers of the linear model and of McMahan et al.'s 2NN; 'mlp' takes --hidden."""
INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""
DIGITS_CLASSES = 10
"""The bundled digits' classes: a public fact, so --num-classes defaults to it there."""
HOLD_OUT = 0.2
"""Share of the rows of a data set without a test split held out for evaluation (by a keyed hash of each row)."""


class _OneLineErrors(click.Command):
    """A command whose usage errors print as one line, ``Error: <flag>: <what to fix>``, without the usage."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            err.ctx = None
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            err.ctx = None
            raise


def _usage(option: str, message: str) -> click.UsageError:
    """A one-line usage error (exit 2) naming ``option``."""
    return click.UsageError(f"{option}: {' '.join(str(message).split())}")


@click.group()
def federated():
    """Federated averaging simulation (FedAvg family, client-level DP, secure aggregation)."""


def _default(setting: str):
    return getattr(DEFAULTS, setting)


@federated.command(cls=_OneLineErrors)
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    help="'digits' (scikit-learn's bundled 8x8 digits, 25% held out); a .npz file with arrays x, y "
    "(optional: keys, and x_test, y_test to evaluate on); a .csv file with a header; or tf.Example "
    "TFRecord files (a path or glob, e.g. an ExampleGen split; .gz read as GZIP). CSV and "
    "TFRecords: the features are --feature-column, else every numeric column but --label-column and "
    "--client-column (under --dp: every other CSV header column, each read as a number, so a text "
    "column such as a name or a date leaves every row out: name the features with --feature-column). "
    f"Without a test split each row is held out for evaluation with probability {HOLD_OUT:.0%}, by a "
    "keyed hash of its content (one added row moves no other), and never trained on; under --dp "
    "their loss and accuracy are reported outside the guarantee. Under --dp no value decides a "
    "column's type: each cell or tf.Example value is read alone against the declared columns, and a "
    "row with a feature that is not a finite number (in float32), a label outside the classes, or "
    "(TFRecords) a missing, other-kind or other-length value is left out alone, uncounted, where a "
    "run without --dp refuses the data set.",
)
@click.option("--label-column", default="label", show_default=True, help="Class column of a CSV or TFRecords.")
@click.option(
    "--client-column",
    default=None,
    help="Column naming each example's client in a CSV or TFRecords: one client per value (a user); "
    "under --dp the id is the text as written.",
)
@click.option(
    "--feature-column",
    multiple=True,
    help="A model input column of a CSV or TFRecords, one number per row (repeatable) [default: see "
    "--dataset; required for TFRecords under --dp].",
)
@click.option(
    "--partition",
    type=click.Choice([*PARTITIONS, "natural"]),
    default=_default("partition"),
    show_default=True,
    help="How records are dealt to --clients clients: iid, dirichlet (label skew) or quantity (size skew), "
    "each record's client fixed by its content, so one record changes one client; shards (McMahan's "
    "label-sorted cut; not with --dp); natural: one client per key (the .npz 'keys' array or "
    "--client-column).",
)
@click.option(
    "--alpha",
    type=float,
    default=_default("alpha"),
    show_default=True,
    help="Dirichlet concentration (dirichlet, quantity).",
)
@click.option("--shards-per-client", type=int, default=_default("shards_per_client"), show_default=True)
@click.option(
    "--clients",
    type=int,
    default=_default("num_clients"),
    show_default=True,
    help="Number of clients N (public; a client may hold no record).",
)
@click.option("--rounds", type=click.IntRange(max=MAX_STEPS), default=_default("rounds"), show_default=True)
@click.option(
    "--sampling",
    type=click.Choice(SAMPLINGS),
    default=_default("sampling"),
    show_default=True,
    help="uniform: round(C*N) clients per round; poisson: each client with probability C (not with --dp "
    "and one client per user, whose number N a private run releases).",
)
@click.option(
    "--fraction", "-C", type=float, default=_default("fraction"), show_default=True, help="Client fraction C in (0, 1]."
)
@click.option(
    "--model",
    type=click.Choice([*MODELS, "mlp"]),
    default="mlp",
    show_default=True,
    help="linear (softmax regression), 2nn (2x200 ReLU, McMahan et al.) or mlp (--hidden).",
)
@click.option(
    "--hidden",
    type=int,
    multiple=True,
    default=_default("hidden_units"),
    show_default=True,
    help="Widths of the MLP's ReLU layers (repeatable).",
)
@click.option(
    "--num-classes",
    type=int,
    default=None,
    help=f"The model's classes [default: {DIGITS_CLASSES} for digits, else 1 + the largest label of the "
    f"data, at least 2; required under --dp, where one label would otherwise decide the model].",
)
@click.option(
    "--local-epochs",
    "-E",
    type=int,
    default=_default("local_epochs"),
    show_default=True,
    help="Local epochs E: passes each sampled client makes over its own data in every round (not the "
    "total passes over the data that `ppml pipeline run --epochs` counts).",
)
@deprecated_alias("--epochs", "--local-epochs", "local_epochs", type=int)
@click.option(
    "--batch-size",
    "-B",
    type=click.IntRange(min=0),
    default=_default("batch_size"),
    show_default=True,
    help="Local batch size B; 0 = full batch (B = infinity).",
)
@click.option(
    "--client-lr",
    type=float,
    default=_default("client_learning_rate"),
    show_default=True,
    help="Client SGD learning rate.",
)
@click.option(
    "--server-optimizer", type=click.Choice(SERVER_OPTIMIZERS), default=_default("server_optimizer"), show_default=True
)
@click.option(
    "--server-lr",
    type=float,
    default=None,
    help="Server learning rate [default: "
    + "; ".join(
        f"{rate:g} for {', '.join(k for k, r in DEFAULT_SERVER_LEARNING_RATES.items() if r == rate)}"
        for rate in dict.fromkeys(DEFAULT_SERVER_LEARNING_RATES.values())
    )
    + "].",
)
@click.option(
    "--server-momentum",
    type=float,
    default=_default("server_momentum"),
    show_default=True,
    help="For --server-optimizer avgm.",
)
@click.option(
    "--prox-mu", type=float, default=_default("proximal_mu"), show_default=True, help="FedProx mu (0: FedAvg)."
)
@click.option("--unweighted", is_flag=True, help="Weight clients equally (always so with --dp).")
@click.option("--dp", is_flag=True, help="Client-level DP-FedAvg (clipping + Gaussian noise, accounted per round).")
@click.option(
    "--trust-model",
    type=click.Choice(TRUST_MODELS),
    default=_default("trust_model"),
    show_default=True,
    help="With --dp: central, the server adds noise once to the sum (the server is trusted); local, each "
    "client clips and noises its own update before it leaves (nobody is trusted; noise std z C per "
    "client, so about sqrt(clients per round) times the central noise on the mean; z calibrated so "
    "that a client sent in every round meets --target-epsilon; no ledger is written).",
)
@click.option("--noise-multiplier", type=float, default=None, help="z, instead of calibrating it for --target-epsilon.")
@click.option(
    "--target-epsilon",
    type=float,
    default=None,
    help=f"Calibrate z so that epsilon after --rounds rounds is at most this (--accountant) "
    f"[default: {DEFAULT_TARGET_EPSILON:g} unless --noise-multiplier].",
)
@click.option(
    "--clip",
    type=click.Choice(CLIPS),
    default=_default("clip"),
    show_default=True,
    help="fixed, or adaptive (Andrew et al. 2021: needs --clipped-count-stddev > z / 2).",
)
@click.option(
    "--clipping-norm",
    type=float,
    default=_default("clipping_norm"),
    show_default=True,
    help="Clipping norm C (the initial one for --clip adaptive).",
)
@click.option(
    "--target-quantile",
    type=float,
    default=_default("target_unclipped_quantile"),
    show_default=True,
    help="Adaptive clipping's target quantile of unclipped updates.",
)
@click.option(
    "--clipped-count-stddev",
    type=float,
    default=None,
    help=f"Noise std of adaptive clipping's count [default: {COUNT_STDDEV_SHARE:g} x expected clients per round].",
)
@click.option(
    "--target-delta",
    type=float,
    default=None,
    help=f"delta [default: {DEFAULT_DELTA_RULE}, n = N, the number of clients or users].",
)
@click.option(
    "--accountant",
    type=click.Choice([a.value for a in AccountantKind]),
    default=_default("accountant"),
    show_default=True,
    help="Accountant of --target-epsilon and --max-epsilon.",
)
@click.option("--max-epsilon", type=float, default=None, help="Stop before a round would exceed this epsilon.")
@click.option(
    "--seeded-noise",
    is_flag=True,
    help="Research only: draw the DP noise and each round's client sample from --seed (reproducible); "
    "anyone with the seed can remove the noise, so the epsilon is no guarantee for a released "
    "model. Default: generators seeded afresh from the OS CSPRNG every round (not CSPRNG streams "
    "themselves: Philox for the noise, PCG64 for the sample).",
)
@click.option("--secure-aggregation", is_flag=True, help="Simulate secure aggregation of the client contributions.")
@click.option("--secagg-bits", type=int, default=_default("secagg_bits"), show_default=True)
@click.option(
    "--secagg-range",
    type=float,
    default=None,
    help=f"Coordinate clipping range r [default: C x {DifferentialPrivacyFixedClipping.range_headroom:g} "
    f"with --dp, C x {DifferentialPrivacyAdaptiveClipping.range_headroom:g} with --clip adaptive; "
    f"without --dp {FedAvg.unclipped_range:g} x the largest client, or {FedAvg.unclipped_range:g} with "
    f"--unweighted].",
)
@click.option("--secagg-modulus-bits", type=int, default=_default("secagg_modulus_bits"), show_default=True)
@click.option(
    "--dropout-rate",
    type=FiniteFloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Probability that a sampled client drops out.",
)
@click.option("--runner", type=click.Choice(["inprocess", "beam"]), default="inprocess", show_default=True)
@click.option(
    "--beam-arg",
    multiple=True,
    help="Beam pipeline flag (repeatable), e.g. --beam-arg=--runner=FlinkRunner (with none: Beam's FnApiRunner here).",
)
@click.option(
    "--execution",
    type=click.Choice(EXECUTIONS),
    default=_default("execution"),
    show_default=True,
    help="Local training: numpy covers Dense-only models and is the fastest for the smallest (e.g. "
    "linear; slower than XLA once hidden layers are ~200 wide); auto times each on a probe and "
    "keeps the cheapest (results then depend on the timing, to float32 rounding; not with --dp, whose "
    "timings would be facts of the data).",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=_default("seed"), show_default=True)
@click.option(
    "--checkpoint-dir",
    default=None,
    help="Checkpoint after every round here; the same command resumes from it (the checkpoint holds "
    "exact facts of the data: not for release).",
)
@click.option(
    "--out",
    default="federated-run",
    show_default=True,
    help="Folder for history.json, the plot and (with --dp) privacy_ledger.json; the run creates folders 0700 "
    "and files 0600 (owner-only).",
)
@click.option("--plot", default=None, help="Plot file [default: OUT/accuracy.png]; its extension sets the format.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON on stdout.")
def run(**o):
    """Run a federated simulation and report accuracy (and epsilon) per round."""
    config = training_config(o)
    plot = _plot_path(o)
    runner_args = _beam_args(o)
    with private_root.owner_only_files():  # what the run writes (outputs, checkpoints, Beam's files) is 0600/0700
        created = _prepare_folders(o)
        try:
            _run(o, config, plot, runner_args)
        except BaseException:
            _remove_empty(created)
            raise


def training_config(o) -> FederatedTrainingConfig:
    """The settings of `run`'s parameters ``o`` (its click context's ``params``; inside that context, which tells
    the flags given from those at their defaults), checked (`FederatedTrainingConfig`); click.UsageError naming the
    flag."""
    if o["partition"] == "natural" and o["client_column"] is None and not o["dataset"].endswith(".npz"):
        raise _usage("--partition", "natural clients need keys: an .npz with a 'keys' array, or --client-column")
    for option in ("client_column", "feature_column"):
        if o[option] and (o["dataset"] == "digits" or o["dataset"].endswith(".npz")):
            raise _usage(
                f"--{option.replace('_', '-')}",
                "names a column of a CSV file or TFRecords (an .npz gives 'x' and 'keys')",
            )
    values = {
        "label_key": o["label_column"],
        "client_key": o["client_column"],
        "feature_keys": tuple(o["feature_column"]) or None,
        "partition": DEFAULTS.partition if o["partition"] == "natural" else o["partition"],
        "alpha": o["alpha"],
        "shards_per_client": o["shards_per_client"],
        "num_clients": o["clients"],
        "rounds": o["rounds"],
        "sampling": o["sampling"],
        "fraction": o["fraction"],
        "hidden_units": MODELS.get(o["model"], tuple(o["hidden"])),
        "local_epochs": o["local_epochs"],
        "batch_size": o["batch_size"] or None,
        "client_learning_rate": o["client_lr"],
        "server_optimizer": o["server_optimizer"],
        "server_learning_rate": o["server_lr"],
        "server_momentum": o["server_momentum"],
        "proximal_mu": o["prox_mu"],
        "weighted": not o["unweighted"],
        "private": o["dp"],
        "noise_multiplier": o["noise_multiplier"],
        "target_epsilon": o["target_epsilon"],
        "trust_model": o["trust_model"],
        "clip": o["clip"],
        "clipping_norm": o["clipping_norm"],
        "target_unclipped_quantile": o["target_quantile"],
        "clipped_count_stddev": o["clipped_count_stddev"],
        "delta": o["target_delta"],
        "accountant": o["accountant"],
        "max_epsilon": o["max_epsilon"],
        "seeded_noise": o["seeded_noise"],
        "secure_aggregation": o["secure_aggregation"],
        "secagg_bits": o["secagg_bits"],
        "secagg_range": o["secagg_range"],
        "secagg_modulus_bits": o["secagg_modulus_bits"],
        "seed": o["seed"],
        "execution": o["execution"],
        "num_classes": DIGITS_CLASSES if o["num_classes"] is None and o["dataset"] == "digits" else o["num_classes"],
    }
    if o["partition"] == "natural" and o["client_column"] is None:
        values["client_key"] = "keys"
    source = click.get_current_context().get_parameter_source

    def given(setting):
        return source(OPTION_OF_SETTING[setting][2:].replace("-", "_")) not in (ParameterSource.DEFAULT, None)

    if values["client_key"] is not None:  # dealing flags at their defaults (or --partition natural) are no settings
        values = {
            k: v
            for k, v in values.items()
            if k not in DEALING_SETTINGS or (given(k) and not (k == "partition" and o["partition"] == "natural"))
        }
    if not o["dp"]:  # privacy flags are refused without --dp, not ignored; at their defaults they are no settings
        privacy = [OPTION_OF_SETTING[k] for k in PRIVACY_SETTINGS if given(k)]
        if privacy:
            raise _usage(privacy[0], "is a privacy setting: it applies with --dp only")
        values = {k: v for k, v in values.items() if k not in PRIVACY_SETTINGS}
    try:
        return FederatedTrainingConfig.from_custom_config(values)
    except InvalidFederatedSetting as err:
        raise _usage(OPTION_OF_SETTING.get(err.setting, err.setting), err.message) from None


def _plot_path(o) -> str:
    """--plot (default OUT/accuracy.png), its extension one matplotlib writes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = o["plot"] or os.path.join(o["out"], "accuracy.png")
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    if extension not in formats:
        raise _usage("--plot", f"{path!r} has extension {extension or '(none)'!r}; use one of {', '.join(formats)}")
    return path


def _beam_args(o) -> list[str] | None:
    """--beam-arg flags, their runner known to Beam (checked now, not after the first round's work)."""
    if o["runner"] != "beam":
        if o["beam_arg"]:
            raise _usage("--beam-arg", "applies to --runner beam")
        return None
    args = list(o["beam_arg"])
    if not args:  # BeamRunner's LOCAL_PIPELINE_ARGS
        return args
    from apache_beam.options import pipeline_options
    from apache_beam.runners.runner import create_runner

    name = pipeline_options.PipelineOptions(args).view_as(pipeline_options.StandardOptions).runner or "DirectRunner"
    try:
        create_runner(name)
    except ValueError as err:
        raise _usage("--beam-arg", err) from None
    return args


def _prepare_folders(o) -> list[str]:
    """Creates --out and --checkpoint-dir (and the plot's folder) and checks they take files; returns the
    folders this created (removed again if the run fails before writing into them)."""
    created = []
    folders = [
        ("--out", o["out"]),
        ("--plot", os.path.dirname(os.path.abspath(o["plot"])) if o["plot"] else None),
        ("--checkpoint-dir", o["checkpoint_dir"]),
    ]
    try:
        for option, folder in folders:
            if folder:
                created += _writable_folder(option, folder)
    except click.UsageError:
        _remove_empty(created)
        raise
    return created


def _writable_folder(option: str, folder: str) -> list[str]:
    missing, parent = [], os.path.abspath(folder)
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise _usage(option, f"{folder!r} is not a folder ({parent} is a file)")
    made = []
    try:
        for path in reversed(missing):
            os.mkdir(path)
            made.append(path)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        _remove_empty(made)
        raise _usage(option, f"cannot write to {folder!r}: {err.strerror or err}") from None
    return made


def _remove_empty(folders: list[str]) -> None:
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def client_data(o, config: FederatedTrainingConfig):
    """What `run` trains and evaluates on, for its parameters ``o`` and their `training_config`: (ClientData,
    (x_test, y_test), the model's classes, what a private run would release outside its guarantee
    (`FederatedSimulation`'s outside_guarantee)): --dataset read, its evaluation rows set aside and its training
    rows dealt to clients, as the command does before it trains; click.UsageError naming the flag."""
    x, y, keys, test, train = _load(o["dataset"], o["seed"], config, o["client_column"])
    from federated.data.screen import largest_label, trainable

    try:
        num_classes = config.model_classes(largest_label(y, test[1]))
    except InvalidFederatedSetting as err:
        raise _usage("--num-classes", err.message) from None
    outside = ("evaluation",) * (train is not None) + ("clients",) * (
        config.private and o["client_column"] is not None and _read_as_declared(o["dataset"])
    )
    _check_memory(
        x.shape[1],
        num_classes,
        config,
        o,  # under --dp from public numbers only
        largest_client=None if config.private else len(y) if train is None else int(train.sum()),
    )
    from federated import ClientData

    keys = keys if config.client_key else None
    try:
        if config.private:  # each record a private run cannot train on is left out alone (federated.data.screen)
            data = ClientData.for_private_run(
                x, y, config.partitioner(), num_classes=num_classes, keys=keys, train=train
            )
            scored = trainable(*test, num_classes)
            test = (test[0][scored], test[1][scored].astype(np.int64))
        else:
            train = slice(None) if train is None else train
            data = ClientData.from_arrays(
                x[train], y[train], config.partitioner(), keys=None if keys is None else keys[train]
            )
    except ValueError as err:
        option = "--clients" if "num_clients" in str(err) or "clients x" in str(err) else "--partition"
        raise _usage(option, err) from None
    return data, test, num_classes, outside


def _run(o, config: FederatedTrainingConfig, plot: str, beam_args: list[str] | None) -> None:
    data, test, num_classes, outside = client_data(o, config)
    import federated as fl
    from federated.models import DenseModel
    from federated.simulation import CheckpointError, UnaccountedAbort

    try:
        plan = config.plan(data.num_clients)
    except InvalidFederatedSetting as err:
        raise _usage(OPTION_OF_SETTING.get(err.setting, err.setting), err.message) from None
    strategy = plan.strategy()
    model_fn = DenseModel(data.x.shape[1], num_classes, config.hidden_units, seed=config.seed)
    runner = None
    if beam_args is not None:
        from federated.simulation.beam import BeamRunner

        runner = BeamRunner(beam_args)
    try:
        sim = fl.FederatedSimulation(
            model_fn,
            data,
            strategy,
            rounds=config.rounds,
            sampler=config.sampler(),
            seed=config.seed,
            execution=config.execution,
            evaluation=test,
            outside_guarantee=outside,
            runner=runner,
            aggregation=plan.aggregation(strategy, int(data.sizes().max())),
            dropout_rate=o["dropout_rate"],
            checkpoint_dir=o["checkpoint_dir"],
        )
    except UnaccountedAbort as err:  # the DP abort rule: dropouts under Poisson sampling and secure aggregation
        raise _usage("--dropout-rate", err) from None
    try:
        sim.start()
    except CheckpointError as err:  # unreadable, or written with other settings
        raise _usage("--checkpoint-dir", err) from None

    err_stream = sys.stderr  # the one click.echo(err=True) writes to (swapped by CliRunner in tests)
    if not o["as_json"]:  # per-client sizes and label histograms are exact facts of the data: not under --dp
        click.echo(
            f"{data.num_clients} clients ({config.clients})" if plan.private else data.summary(max_rows=5), err=True
        )
    if plan.private:
        for line in _privacy_plan(plan):
            click.echo(line, err=True)
    history = _train(sim, config.rounds, err_stream, quiet=o["as_json"], checkpoint_dir=o["checkpoint_dir"])
    history.config["title"] = (
        f"{strategy.to_dict()['name']} on {o['dataset']} ({data.partition.spec['name']}, N={data.num_clients})"
    )
    if plan.private:
        history.config["record_level"] = plan.record_level(sim.state.round)
    written = [history.save_json(os.path.join(o["out"], "history.json")), history.plot(plot)]
    if plan.mechanism is not None:  # the ledger accounts central DP-FedAvg
        from pipelines import privacy_ledger

        ledger = plan.ledger(
            sim.state.budget,
            rounds=sim.state.round,
            trainer={"command": "ppml federated run"},
            outside_guarantee=history.config["outside_guarantee"],
            noise_draws=strategy.noise_draws(sim.state.weights),
        )
        written.append(privacy_ledger.write_ledger_file(os.path.join(o["out"], privacy_ledger.LEDGER_FILE), ledger))
    if o["as_json"]:
        json.dump(history.to_dict(), sys.stdout, indent=2)
        click.echo()
        for note in _outside_guarantee(history):
            click.echo(note, err=True)
        return
    _report(history, sim, plan, written)


def _privacy_plan(plan) -> list[str]:
    """What the run will spend (z, delta, and where each came from), and a warning for a delta too large."""
    c = plan.config
    z = plan.noise_multiplier
    how = (
        (
            f"calibrated for epsilon <= {plan.target_epsilon:g} after {c.rounds} rounds ({c.accountant.upper()}"
            + (", the default target" if c.target_epsilon is None else "")
            + (", a client sent in every round" if plan.mechanism is None else "")
            + ")"
        )
        if plan.target_epsilon
        else "given"
    )
    where = "given" if c.delta is not None else f"the default: {DEFAULT_DELTA_RULE.replace('n)', 'N)')}"
    model = (
        f"local DP (trust model local: no trusted server; each {c.privacy_unit} adds noise std z x C itself)"
        if plan.mechanism is None
        else f"{c.privacy_unit}-level DP"
    )
    lines = [
        f"{model}: noise multiplier z = {z:.4g} ({how}); delta = {plan.delta:g} ({where}, "
        f"N = {plan.num_clients} {c.privacy_unit}s, treated as public)"
    ]
    if plan.delta_warning:
        lines.append(f"warning (--target-delta): {plan.delta_warning}")
    return lines


def _train(sim, rounds: int, err_stream, *, quiet: bool, checkpoint_dir: str | None):
    """Runs the simulation with one line per round (and a progress bar on a terminal); Ctrl-C exits 130."""
    done = len(sim.history.rounds)
    if quiet or not err_stream.isatty():

        def progress(record):
            if not quiet:
                click.echo(sim.history.line(record), err=True)

        bar = None
    else:
        bar = click.progressbar(length=rounds, label="rounds", file=err_stream, show_pos=True)
        bar.update(done)

        def progress(record):
            click.echo("\r\x1b[K" + sim.history.line(record), err=True)  # over the bar, which redraws below
            bar.update(1)

    try:
        if bar is None:
            return sim.run(progress)
        with bar:
            return sim.run(progress)
    except KeyboardInterrupt:
        finished = sim.state.round if sim.state is not None else 0
        where = (
            f"the checkpoint in {checkpoint_dir} holds {finished} rounds: run the same command to resume"
            if checkpoint_dir
            else "no --checkpoint-dir, so a rerun starts over"
        )
        click.echo(f"\ninterrupted after round {finished}; {where}", err=True)
        sys.exit(INTERRUPTED)


def _report(history, sim, plan, written: list[str]) -> None:
    if history.stopped:
        click.echo(f"stopped: {history.stopped}")
    last = history.rounds[-1] if history.rounds else None
    if last and last.evaluation:
        tag = history.tags().get("evaluation")
        click.echo(
            f"final accuracy {last.evaluation['accuracy']:.4f} after {last.round} rounds" + (f" ({tag})" if tag else "")
        )
    if plan.private and plan.mechanism is None:
        metrics = history.rounds[-1].metrics if history.rounds else {}
        key = f"epsilon_{plan.config.accountant}"
        click.echo(
            f"local DP, per {plan.config.privacy_unit} (trust model local: no trusted server, secure "
            f"aggregation or not): the worst {plan.config.privacy_unit}'s epsilon at delta={plan.delta:g}: "
            f"{metrics.get(key, 0.0):.4g} ({plan.config.accountant.upper()}, "
            f"{metrics.get('max_client_rounds', 0)} rounds sent, z = {plan.noise_multiplier:.4g} on each "
            f"update, sensitivity 2C, dp-accounting); no privacy ledger (it accounts central DP-FedAvg)"
        )
    elif plan.private:
        budget = sim.state.budget
        sampling, adjacency = sim.sampler.accounting
        eps = ", ".join(
            f"{k.upper()} {v:.4g}" if v is not None else f"{k.upper()} n/a" for k, v in budget.epsilons().items()
        )
        seeded = f" ({history.tags()['epsilon']})" if "epsilon" in history.tags() else ""
        click.echo(
            f"{plan.config.privacy_unit}-level epsilon at delta={budget.target_delta:g}: {eps} "
            f"(z = {plan.mechanism.noise_multiplier:.4g}, {sampling.value} sampling of clients, "
            f"{adjacency.value} adjacency, dp-accounting){seeded}"
        )
        record = history.config.get("record_level")
        if record and "epsilon" in record:
            value = "not available" if record["epsilon"] is None else f"{record['epsilon']:.4g}"
            click.echo(
                f"record-level epsilon at delta={budget.target_delta:g}: {value} ({record['accountant']}; one "
                f"record added or removed changes one client's data, N fixed: a client replaced, accounted "
                f"replace-one){seeded}"
            )
        elif record:
            click.echo(
                "record-level epsilon: the client-level one (one record added or removed changes one "
                f"client's data, N fixed: a client replaced, which replace-one accounting covers){seeded}"
            )
        replaced = (record or {}).get("replaced_record")
        if replaced:
            value = "not available" if replaced["epsilon"] is None else f"{replaced['epsilon']:.4g}"
            click.echo(
                f"one record replaced (two clients' data change) epsilon at delta={budget.target_delta:g}: "
                f"{value} ({replaced['accountant']}){seeded}"
            )
    for note in _outside_guarantee(history):
        click.echo(note)
    click.echo("wrote " + ", ".join(written))


def _outside_guarantee(history) -> list[str]:
    """One line per thing a private run reports outside its guarantee (the history's list)."""
    tags = history.tags()
    return [
        f"outside the DP guarantee ({tags[key]}): {reason}"
        for key, reason in history.config.get("outside_guarantee", {}).items()
    ]


def _check_memory(
    input_dim: int, num_classes: int, config: FederatedTrainingConfig, o, largest_client: int | None
) -> None:
    """Refuses a run the machine cannot hold, before allocating it, naming the setting that asks for most:
    the model (float32 copies; float64 client updates of a round, server slots and sums), the clients'
    bookkeeping, and the batch schedules of a chunk of clients (E passes over the largest client; left out
    when ``largest_client`` is None, as a private run's size is no public number)."""
    widths = [input_dim, *config.hidden_units, num_classes]
    parameters = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    clients = max(1.0, config.sampler().expected_clients(config.num_clients))
    widest = max(
        (input_dim, "--dataset"),
        *((w, "--hidden" if o["model"] == "mlp" else "--model") for w in config.hidden_units),
        (num_classes, "--num-classes"),
    )
    parts = {
        widest[1]: parameters * (16 + 8 * (clients + 40)),
        "--clients": 1024.0 * config.num_clients,
        "--local-epochs": 2.0 * (largest_client or 0) * config.local_epochs * 5 * 16,
    }
    needed = sum(parts.values())
    available = _available_memory()
    if available is not None and needed > available:
        option = max(parts, key=parts.get)
        raise _usage(
            option,
            f"this run needs about {needed / 2**30:.3g} GiB (a model of {parameters:.3g} "
            f"parameters, {config.num_clients} clients, {clients:g} a round, {config.local_epochs} "
            f"local epochs); this machine has {available / 2**30:.3g} GiB available",
        )


def _available_memory() -> float | None:
    """Bytes of memory available now (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _load(dataset: str, seed: int, config: FederatedTrainingConfig, client_column: str | None):
    """(x, y, keys or None, (x_test, y_test), train): every row of the data set, its evaluation rows, and
    None when they are a separate test split, else [n] bool marking the rows that may train (the others
    are the evaluation rows, private rows of the data set). A private run deals every row to its client
    before that mask applies, so a user all of whose rows are held out is still a client; it refuses no record
    for its values (`federated.data.screen`) and no data set for its row count, and reads CSV files and
    TFRecords against declared columns (`federated.data.declared`): ``config``'s label and features, and
    ``client_column``.

    Without a test split each row is held out by a keyed hash of its content (`keyed_hold_out`, salted
    apart from the partition's hash), so adding or removing one row moves no other row between training
    and evaluation.

    Raises:
      click.UsageError: naming --dataset (or the column option) for a missing, unreadable, corrupt or
        inconsistent data set.
    """
    private = config.private
    try:
        x, y, keys, test = _read(dataset, config, client_column)
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise _usage("--dataset", f"cannot read {dataset}: {err}") from None
    except ValueError as err:  # messages of column options start with the option's name
        message = " ".join(str(err).split())
        raise (click.UsageError(message) if message.startswith("--") else _usage("--dataset", message)) from None
    problem = _inconsistency(x, y, keys, test, private=private)
    if problem:
        raise _usage("--dataset", f"{dataset}: {problem}")
    if test is not None:
        return x, y, keys, test, None
    from federated.partitioners import content_keys, keyed_hold_out

    held_out = keyed_hold_out(content_keys(x, y), fraction=HOLD_OUT, seed=seed)
    if not private and (held_out.all() or not held_out.any()):  # a private run evaluates on what is held out
        raise _usage("--dataset", f"{dataset} has {len(y)} rows: too few to hold out {HOLD_OUT:.0%} for evaluation")
    return x, y, keys, (x[held_out], y[held_out]), ~held_out


def _read(dataset: str, config: FederatedTrainingConfig, client_column: str | None):
    if dataset == "digits":
        from federated.data import load_digits_split

        (x_train, y_train), test = load_digits_split()
        return x_train, y_train, None, test
    if dataset.endswith(".npz") and os.path.isfile(dataset):
        return _read_npz(dataset)
    csv_file = dataset.endswith(".csv") and os.path.isfile(dataset)
    files = [] if csv_file else sorted(f for f in glob.glob(dataset) if os.path.isfile(f))
    if config.private and (csv_file or files):
        return (*_declared(dataset, files, config, client_column), None)
    if csv_file:
        from federated.data.examples import read_csv_columns

        return (*_from_columns(read_csv_columns(dataset), dataset, config, client_column), None)
    if files:
        from federated.data import read_tf_examples

        return (*_from_columns(read_tf_examples(files), dataset, config, client_column), None)
    raise ValueError(
        f"--dataset must be 'digits', an existing .npz or .csv file, or TFRecord files (a path or "
        f"glob), got {dataset!r}"
    )


def _read_as_declared(dataset: str) -> bool:
    """Whether a private run reads ``dataset`` against declared columns (a CSV file or TFRecords, `_declared`)."""
    return dataset != "digits" and not dataset.endswith(".npz")


def _read_npz(dataset: str):
    loaded = np.load(dataset, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{dataset} holds a single array, not an .npz archive of arrays 'x' and 'y'")
    with loaded as arrays:
        if "x" not in arrays or "y" not in arrays or ("x_test" in arrays) != ("y_test" in arrays):
            raise ValueError(
                f"{dataset} must hold arrays 'x' and 'y' (and optionally 'keys', and 'x_test' with "
                f"'y_test'); it holds {sorted(arrays.files)}"
            )
        x, y = arrays["x"], arrays["y"]
        keys = arrays["keys"] if "keys" in arrays else None
        test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    if x.ndim < 1 or (test is not None and test[0].ndim < 1):
        raise ValueError(f"{dataset}: 'x' and 'x_test' must have one row per example")
    with np.errstate(over="ignore"):  # values beyond float32's range become inf, refused by `_inconsistency`
        rows = [np.asarray(a, np.float32).reshape(len(a), -1) for a in (x, *(test or ())[:1])]
    return rows[0], y, keys, None if test is None else (rows[1], test[1])


def _inconsistency(x, y, keys, test, *, private: bool) -> str | None:
    """What is wrong with the arrays' shapes or values (shapes and types only when ``private``), or None."""
    y_test = None if test is None else test[1]
    for name, labels in (("y", y), ("y_test", y_test)):
        if labels is None:
            continue
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            return f"'{name}' must be a non-empty 1-D array of labels, got shape {labels.shape}"
        if labels.dtype.kind not in "iuf" or not (
            private or labels.dtype.kind in "iu" or np.all(np.mod(labels, 1) == 0)
        ):
            return f"'{name}' must hold integer class labels, got dtype {labels.dtype}"
        if not private and labels.min() < 0:
            return f"'{name}' must hold labels >= 0, got {labels.min()}"
    if len(x) != len(y):
        return f"'x' has {len(x)} rows but 'y' has {len(y)}"
    if keys is not None and np.shape(keys) != np.shape(y):
        return f"'keys' has shape {np.shape(keys)}, 'y' {np.shape(y)}: one key per example"
    if test is not None and (len(test[0]) != len(y_test) or test[0].shape[1:] != x.shape[1:]):
        return f"'x_test' {test[0].shape} does not fit 'y_test' {np.shape(y_test)} and 'x' {x.shape}"
    if x.shape[1] == 0:
        return "'x' has no features"
    if not private and not (np.all(np.isfinite(x)) and (test is None or np.all(np.isfinite(test[0])))):
        return "'x' or 'x_test' has NaN or infinite values (or values beyond float32's range)"
    return None


def _from_columns(columns: dict, dataset: str, config: FederatedTrainingConfig, client_column: str | None):
    """(x, y, keys) of named columns of ``dataset``: the features are --feature-column, else every other
    numeric column."""
    from federated.data.examples import class_labels, feature_columns, stack_features

    if client_column is not None and client_column not in columns:
        raise ValueError(
            f"--client-column: {dataset} has no column {client_column!r}; the columns are {sorted(columns)}"
        )
    labels = class_labels(columns, config.label_key, setting=f"--label-column ({dataset})")
    _check_features(config.feature_keys, columns, dataset)
    x = stack_features(columns, config.feature_keys or feature_columns(columns, (config.label_key, client_column)))
    return x, labels, None if client_column is None else np.asarray(columns[client_column])


def _check_features(features, columns, dataset: str) -> None:
    """Refuses --feature-column names that ``dataset``'s ``columns`` lack (column names are public)."""
    missing = [name for name in features or () if name not in columns]
    if missing:
        raise ValueError(f"--feature-column: {dataset} has no column(s) {missing}; the columns are {sorted(columns)}")


def _declared(dataset: str, files: list[str], config: FederatedTrainingConfig, client_column: str | None):
    """(x, y, keys) of a private run's CSV file or TFRecord ``files``, read against declared columns
    (`federated.data.declared`): the features (--feature-column, else for a CSV every header column but
    the label and the client column), one number each; the label, a number; the client id, text. No
    value decides a type: a value that is not a number is NaN, so its row is left out after dealing."""
    from federated.data import declared

    named = [config.label_key, *([client_column] if client_column else [])]
    if files:
        if not config.feature_keys:
            raise ValueError(
                "--feature-column: under --dp name the features of TFRecords (one number each): the "
                "records may not decide them"
            )
        from federated.data.examples import read_tf_records

        read = lambda spec: declared.read_examples(  # noqa: E731
            read_tf_records(files, max_record_bytes=declared.MAX_RECORD_BYTES), spec
        )
    else:
        header = declared.csv_header(dataset)
        read = lambda spec: declared.read_csv(dataset, spec)  # noqa: E731
        _check_features(config.feature_keys, header, dataset)
    features = list(config.feature_keys or [c for c in header if c not in named])
    if not features:
        raise ValueError(f"{dataset} has no feature columns besides {named}")
    spec = [declared.Column(name) for name in (*features, config.label_key)]
    records = read(spec + ([declared.Column(client_column, "text")] if client_column else []))
    if not len(records.kept):
        raise ValueError(f"{dataset} has no rows")
    with np.errstate(over="ignore"):  # a value beyond float32 is infinite, left out with its row
        x = np.stack([records.columns[name] for name in features], axis=1).astype(np.float32)
    return x, records.columns[config.label_key], records.columns[client_column] if client_column else None


COMMANDS = [federated]
