"""`ppml federated run`: simulate federated training from the command line.

Parses options into `federated` objects and runs a `FederatedSimulation`; writes history.json and a
PNG of accuracy (and epsilon) per round to --out.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import click
import numpy as np

from federated.client import EXECUTIONS
from federated.strategies import SERVER_OPTIMIZERS


@click.group()
def federated():
    """Federated averaging simulation (FedAvg family, client-level DP, secure aggregation)."""


@federated.command()
@click.option("--dataset", default="digits", show_default=True,
              help="'digits' (scikit-learn's bundled 8x8 digits, 25% held out); a .npz file with arrays x, y "
                   "(optional: keys, and x_test, y_test to evaluate on); a .csv file with a header; or tf.Example "
                   "TFRecord files (a path or glob, e.g. an ExampleGen split; .gz read as GZIP). CSV and "
                   "TFRecords: every numeric column but --label-column and --client-column is a feature. "
                   "Without a test split a seeded 20% of the rows is held out for evaluation, never trained on.")
@click.option("--label-column", default="label", show_default=True, help="Class column of a CSV or TFRecords.")
@click.option("--client-column", default=None,
              help="Column naming each example's client in a CSV or TFRecords (for --partition natural).")
@click.option("--partition", type=click.Choice(["iid", "dirichlet", "shards", "quantity", "natural"]), default="iid",
              show_default=True, help="How examples are split among clients ('natural' needs keys in the .npz, "
                                      "or --client-column).")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Dirichlet concentration (dirichlet, quantity).")
@click.option("--shards-per-client", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--clients", type=click.IntRange(min=1), default=100, show_default=True, help="Number of clients N.")
@click.option("--rounds", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--sampling", type=click.Choice(["uniform", "poisson"]), default="uniform", show_default=True,
              help="uniform: round(C*N) clients per round; poisson: each client with probability C.")
@click.option("--fraction", "-C", type=float, default=0.1, show_default=True, help="Client fraction C in (0, 1].")
@click.option("--model", type=click.Choice(["linear", "2nn", "mlp"]), default="linear", show_default=True,
              help="linear (softmax regression), 2nn (2x200 ReLU, McMahan et al.) or mlp (--hidden).")
@click.option("--hidden", type=click.IntRange(min=1), multiple=True, default=(64,), show_default=True)
@click.option("--epochs", "-E", type=click.IntRange(min=1), default=1, show_default=True, help="Local epochs E.")
@click.option("--batch-size", "-B", type=click.IntRange(min=0), default=10, show_default=True,
              help="Local batch size B; 0 = full batch (B = infinity).")
@click.option("--client-lr", type=float, default=0.1, show_default=True, help="Client SGD learning rate.")
@click.option("--server-optimizer", type=click.Choice(SERVER_OPTIMIZERS), default="sgd", show_default=True)
@click.option("--server-lr", type=float, default=None, help="Server learning rate (default 1.0; 0.01 for adaptive).")
@click.option("--server-momentum", type=float, default=0.9, show_default=True, help="For --server-optimizer avgm.")
@click.option("--prox-mu", type=float, default=0.0, show_default=True, help="FedProx mu (0: FedAvg).")
@click.option("--unweighted", is_flag=True, help="Weight clients equally (always so with --dp).")
@click.option("--dp", is_flag=True, help="Client-level DP-FedAvg (clipping + Gaussian noise, accounted per round).")
@click.option("--noise-multiplier", type=float, default=1.0, show_default=True)
@click.option("--clip", type=click.Choice(["fixed", "adaptive"]), default="adaptive", show_default=True)
@click.option("--clipping-norm", type=float, default=None,
              help="Fixed clipping norm C, or the initial one for adaptive (default 0.1).")
@click.option("--target-quantile", type=float, default=0.5, show_default=True, help="Adaptive clipping quantile.")
@click.option("--target-delta", type=float, default=None, help="delta (default: largest power of 10 below 1/N).")
@click.option("--max-epsilon", type=float, default=None, help="Stop before a round would exceed this epsilon.")
@click.option("--secure-noise", is_flag=True,
              help="Draw the DP noise and each round's client sample from CSPRNG-seeded generators (not "
                   "reproducible; needed for the guarantee of a released model); default: from --seed.")
@click.option("--secure-aggregation", is_flag=True, help="Simulate secure aggregation of the client contributions.")
@click.option("--secagg-bits", type=click.IntRange(1, 48), default=16, show_default=True)
@click.option("--secagg-range", type=float, default=None,
              help="Coordinate clipping range r (default: C with --dp, 4 C with --clip adaptive; without --dp "
                   "8 x the largest client, or 8 with --unweighted).")
@click.option("--secagg-modulus-bits", type=click.IntRange(2, 63), default=40, show_default=True)
@click.option("--dropout-rate", type=float, default=0.0, show_default=True, help="Client dropout probability.")
@click.option("--runner", type=click.Choice(["inprocess", "beam"]), default="inprocess", show_default=True)
@click.option("--beam-arg", multiple=True, help="Beam pipeline flag (repeatable), e.g. --beam-arg=--runner=FlinkRunner.")
@click.option("--execution", type=click.Choice([*EXECUTIONS, "auto"]), default="sequential", show_default=True,
              help="Local training: numpy covers Dense-only models and is the fastest for the smallest (e.g. "
                   "linear; slower than XLA once hidden layers are ~200 wide); auto times each on a probe and "
                   "keeps the cheapest.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None, help="Checkpoint/resume here.")
@click.option("--out", type=click.Path(file_okay=False), default="federated-run", show_default=True,
              help="Folder for history.json and accuracy.png.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON on stdout.")
def run(**o):
    """Run a federated simulation and report accuracy (and epsilon) per round."""
    import federated as fl  # pylint: disable=import-outside-toplevel
    from federated.aggregation import SecureAggregation  # pylint: disable=import-outside-toplevel
    from federated.models import DenseModel  # pylint: disable=import-outside-toplevel
    from federated.partitioners import partitioner_for  # pylint: disable=import-outside-toplevel
    from federated.strategies import build_strategy, with_client_dp  # pylint: disable=import-outside-toplevel
    from privacy.accounting import default_delta  # pylint: disable=import-outside-toplevel

    try:
        x, y, keys, test = _load(o["dataset"], o["seed"], o["label_column"], o["client_column"])
        partitioner = partitioner_for(o["partition"], num_clients=o["clients"], seed=o["seed"], alpha=o["alpha"],
                                      shards_per_client=o["shards_per_client"])
        data = fl.ClientData.from_arrays(x, y, partitioner, keys=keys)
        hidden = {"linear": (), "2nn": (200, 200), "mlp": tuple(o["hidden"])}[o["model"]]
        model_fn = DenseModel(x.shape[1], int(max(y.max(), test[1].max())) + 1, hidden, seed=o["seed"])
        client = fl.ClientConfig(epochs=o["epochs"], batch_size=o["batch_size"] or None,
                                 learning_rate=o["client_lr"], proximal_mu=o["prox_mu"])
        strategy = build_strategy(o["server_optimizer"], client, weighted=not (o["unweighted"] or o["dp"]),
                                  server_learning_rate=o["server_lr"], server_momentum=o["server_momentum"])
        sampler = (fl.UniformSampler(o["fraction"]) if o["sampling"] == "uniform" else fl.PoissonSampler(o["fraction"]))
        if o["dp"]:
            delta = o["target_delta"] or default_delta(data.num_clients)
            strategy = with_client_dp(strategy, clip=o["clip"], clipping_norm=o["clipping_norm"] or 0.1,
                                      noise_multiplier=o["noise_multiplier"], target_delta=delta,
                                      target_quantile=o["target_quantile"], max_epsilon=o["max_epsilon"],
                                      secure_noise=o["secure_noise"])
        aggregation = None
        if o["secure_aggregation"]:
            default_range = strategy.secure_aggregation_range(int(data.sizes().max()))
            aggregation = SecureAggregation(clipping_range=o["secagg_range"] or default_range, bits=o["secagg_bits"],
                                            modulus_bits=o["secagg_modulus_bits"])
        runner = None
        if o["runner"] == "beam":
            from federated.simulation.beam import BeamRunner  # pylint: disable=import-outside-toplevel
            runner = BeamRunner(list(o["beam_arg"]) or None)
        sim = fl.FederatedSimulation(model_fn, data, strategy, rounds=o["rounds"], sampler=sampler, seed=o["seed"],
                                     execution=o["execution"], evaluation=test, runner=runner, aggregation=aggregation,
                                     dropout_rate=o["dropout_rate"], checkpoint_dir=o["checkpoint_dir"])
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None

    err = click.get_text_stream("stderr")
    if not o["as_json"]:
        click.echo(data.summary(max_rows=5), err=True)
    with click.progressbar(length=o["rounds"], label="rounds", file=err, show_pos=True) as bar:
        def progress(record):
            bar.update(1)
            if not o["as_json"]:
                click.echo("\n" + record.line(), err=True)
        history = sim.run(progress)
    os.makedirs(o["out"], exist_ok=True)
    history.config["title"] = f"{strategy.to_dict()['name']} on {o['dataset']} ({o['partition']}, N={o['clients']})"
    history.save_json(os.path.join(o["out"], "history.json"))
    history.plot(os.path.join(o["out"], "accuracy.png"))
    if o["as_json"]:
        json.dump(history.to_dict(), sys.stdout, indent=2)
        click.echo()
        return
    if history.stopped:
        click.echo(f"stopped: {history.stopped}")
    last = history.rounds[-1] if history.rounds else None
    if last and last.evaluation:
        click.echo(f"final accuracy {last.evaluation['accuracy']:.4f} after {last.round} rounds")
    if sim.state.budget is not None:
        eps = sim.state.budget.epsilons()
        sampling, adjacency = sampler.accounting
        click.echo(f"client-level epsilon at delta={sim.state.budget.target_delta:g}: "
                   + ", ".join(f"{k.upper()} {v:.4g}" if v is not None else f"{k.upper()} n/a" for k, v in eps.items())
                   + f" ({sampling.value} sampling of clients, {adjacency.value} one client, dp-accounting)")
    click.echo(f"wrote {os.path.join(o['out'], 'history.json')} and accuracy.png")


def _load(dataset: str, seed: int, label_column: str, client_column: str | None):
    """(x, y, keys or None, (x_test, y_test)); evaluation rows are never among the training rows."""
    if dataset == "digits":
        from federated.data import load_digits_split  # pylint: disable=import-outside-toplevel
        (x_train, y_train), test = load_digits_split()
        return x_train, y_train, None, test
    if dataset.endswith(".npz") and os.path.exists(dataset):
        x, y, keys, test = _load_npz(dataset)
    elif dataset.endswith(".csv") and os.path.exists(dataset):
        from federated.data.examples import read_csv_columns  # pylint: disable=import-outside-toplevel
        x, y, keys, test = (*_from_columns(read_csv_columns(dataset), dataset, label_column, client_column), None)
    elif any(os.path.isfile(f) for f in glob.glob(dataset)):
        from federated.data import read_tf_examples  # pylint: disable=import-outside-toplevel
        files = sorted(f for f in glob.glob(dataset) if os.path.isfile(f))
        x, y, keys, test = (*_from_columns(read_tf_examples(files), dataset, label_column, client_column), None)
    else:
        raise ValueError(f"--dataset must be 'digits', an existing .npz or .csv file, or TFRecord files (a path or "
                         f"glob), got {dataset!r}")
    if test is not None:
        return x, y, keys, test
    held_out = np.zeros(len(y), bool)
    held_out[np.random.default_rng(seed).permutation(len(y))[:len(y) // 5]] = True
    if held_out.all() or not held_out.any():
        raise ValueError(f"{dataset} has {len(y)} rows: too few to hold out 20% for evaluation")
    train = ~held_out
    return x[train], y[train], None if keys is None else keys[train], (x[held_out], y[held_out])


def _load_npz(dataset: str):
    with np.load(dataset, allow_pickle=False) as arrays:
        if "x" not in arrays or "y" not in arrays or ("x_test" in arrays) != ("y_test" in arrays):
            raise ValueError(f"{dataset} must hold arrays 'x' and 'y' (and optionally 'keys', and 'x_test' with "
                             f"'y_test'); it holds {sorted(arrays.files)}")
        x = arrays["x"].reshape(len(arrays["x"]), -1).astype(np.float32)
        y, keys = arrays["y"], (arrays["keys"] if "keys" in arrays else None)
        test = None
        if "x_test" in arrays:
            test = (arrays["x_test"].reshape(len(arrays["x_test"]), -1).astype(np.float32), arrays["y_test"])
        return x, y, keys, test


def _from_columns(columns: dict, dataset: str, label_column: str, client_column: str | None):
    """(x, y, keys) of named columns of ``dataset``: the features are every other numeric column."""
    from federated.data.examples import (class_labels, feature_columns,  # pylint: disable=import-outside-toplevel
                                         stack_features)
    if client_column is not None and client_column not in columns:
        raise ValueError(f"--client-column: {dataset} has no column {client_column!r}; the columns are "
                         f"{sorted(columns)}")
    labels = class_labels(columns, label_column, setting=f"--label-column ({dataset})")
    x = stack_features(columns, feature_columns(columns, (label_column, client_column)))
    return x, labels, None if client_column is None else np.asarray(columns[client_column])


COMMANDS = [federated]
