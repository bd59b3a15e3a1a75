"""`ppml encrypted ...`: private prediction by three parties holding secret shares.

\b
  ppml encrypted setup         certificates and party list for three parties
  ppml encrypted share-model   secret-share a Keras model into the parties' bundles
  ppml encrypted serve         run one party
  ppml encrypted predict       the client: share an input, reconstruct the prediction
  ppml encrypted verify        encrypted vs plaintext predictions of a model on a dataset
  ppml encrypted bench         latency, rounds and bytes of the reference models
"""

from __future__ import annotations

import json
import os

import click
import numpy as np

from pipelines.keras_env import VARIABLE, use_tf_keras

DEFAULT_DEPLOYMENT = "ppml-encrypted"


def _keras_env(tf_keras: bool) -> None:
    """Before TensorFlow loads: tf-keras if asked (`use_tf_keras`), else Keras 3 unless TF_USE_LEGACY_KERAS is set."""
    if tf_keras:
        try:
            use_tf_keras()
        except RuntimeError as err:   # TensorFlow was loaded with Keras 3 before this command ran
            raise click.UsageError(f"--tf-keras: {err}") from None
    else:
        os.environ.setdefault(VARIABLE, "0")


def _load_keras_model(path: str):
    if not os.path.exists(path):
        raise click.BadParameter(f"no such file: {path}", param_hint="'MODEL'")
    import tensorflow as tf  # noqa: PLC0415  (after TF_USE_LEGACY_KERAS is set)
    try:
        return tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as err:
        raise click.BadParameter(f"cannot load a Keras model from {path}: {err}", param_hint="'MODEL'") from None


def _load_array(path: str, what: str) -> np.ndarray:
    """Reads .npy, .npz (first array) or .csv (comma separated, numbers only)."""
    if not os.path.exists(path):
        raise click.BadParameter(f"no such file: {path}", param_hint=what)
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        if path.endswith(".npz"):
            data = np.load(path, allow_pickle=False)
            return data[data.files[0]]
        return np.atleast_2d(np.loadtxt(path, delimiter=",", dtype=np.float64))
    except (OSError, ValueError) as err:
        raise click.BadParameter(f"cannot read numbers from {path}: {err}", param_hint=what) from None


def _as_batch(x: np.ndarray, input_shape) -> np.ndarray:
    """Rows of flattened examples, or one unbatched example, as a batch of `input_shape` examples."""
    input_shape = tuple(input_shape)
    if x.shape[1:] == input_shape:
        return x
    if x.shape == input_shape:
        return x[None]
    if x.ndim == 2 and x.shape[1] == int(np.prod(input_shape)):
        return x.reshape((-1,) + input_shape)
    return x  # the engine rejects it with both shapes named


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="'--party'")
    return host, int(port)


def _fail(err: Exception):
    raise click.ClickException(str(err))


deployment_option = click.option("--deployment", "deployment_dir", default=DEFAULT_DEPLOYMENT, show_default=True,
                                 type=click.Path(file_okay=False), help="Folder written by `ppml encrypted setup`.")


@click.group("encrypted")
def encrypted():
    """Encrypted inference: three parties predict on secret shares (3-party replicated sharing, semi-honest,
    honest majority); no party sees the input or the weights, only the client sees the output."""


@encrypted.command()
@click.option("--out", "out_dir", default=DEFAULT_DEPLOYMENT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the party list and credentials.")
@click.option("--party", "parties", multiple=True, metavar="HOST:PORT",
              help="Address of party 0, 1, 2 (give it three times) [default: 127.0.0.1:7400-7402].")
@click.option("--valid-days", type=click.IntRange(min=1), default=365, show_default=True)
def setup(out_dir, parties, valid_days):
    """Create a private CA, certificates for the three parties and the client, and the party list.

    Copy OUT/party-<i>/ to party i's machine and OUT/client/ plus OUT/deployment.json to clients.
    The CA key is discarded after signing.
    """
    from privacy.encrypted.certificates import create_deployment

    addresses = [_address(p) for p in parties] or [("127.0.0.1", 7400 + i) for i in range(3)]
    try:
        create_deployment(out_dir, addresses, valid_days=valid_days)
    except ValueError as err:
        _fail(err)
    click.echo(f"wrote {out_dir}/deployment.json and credentials for party-0, party-1, party-2, client")


@encrypted.command("share-model")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=True))
@deployment_option
@click.option("--frac-bits", type=click.IntRange(1, 24), default=16, show_default=True,
              help="Fractional bits of the fixed-point encoding.")
@click.option("--tf-keras", is_flag=True, help="Load MODEL with tf-keras (Keras 2) instead of Keras 3.")
def share_model_command(model_path, deployment_dir, frac_bits, tf_keras):
    """Secret-share the weights of a saved Keras MODEL (run by the model owner).

    Writes DEPLOYMENT/party-<i>/model.npz (mode 0600): party i's two random components of every weight,
    plus the public architecture. Hand each file to its party, then delete the local copies: any two
    files together give the plaintext weights; no single party ever sees them.
    """
    _keras_env(tf_keras)
    from privacy.encrypted import FixedPoint, UnsupportedModelError, import_keras_model
    from privacy.encrypted.processes import save_model_shares

    model = _load_keras_model(model_path)
    try:
        paths = save_model_shares(import_keras_model(model), deployment_dir, FixedPoint(frac_bits))
    except (UnsupportedModelError, ValueError) as err:
        _fail(err)
    for path in paths:
        click.echo(f"wrote {path}")


@encrypted.command()
@click.option("--party", "index", type=click.IntRange(0, 2), required=True, help="Which party this is.")
@deployment_option
@click.option("--model", "model_file", type=click.Path(dir_okay=False),
              help="This party's share bundle [default: DEPLOYMENT/party-<i>/model.npz].")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds to wait for a peer's message before failing.")
def serve(index, deployment_dir, model_file, timeout):
    """Run party --party; prints `ready` once connected to the other two parties."""
    from privacy.encrypted.processes import run_party
    from privacy.encrypted.transport import TransportError

    try:
        run_party(index, deployment_dir, model_file, timeout=timeout)
    except (TransportError, ValueError, OSError) as err:
        _fail(err)


@encrypted.command()
@click.option("--input", "input_path", required=True, help="Examples (.npy, .npz or .csv), one per row/first axis.")
@deployment_option
@click.option("--output", type=click.Choice(["logits", "label"]), default="logits", show_default=True,
              help="Reveal the model outputs, or only the predicted labels.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Also save the outputs as .npy.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(input_path, deployment_dir, output, out_path, timeout, as_json):
    """Private prediction: share the input with the three parties and reconstruct the result."""
    from privacy.encrypted import OverflowDetected, TransportError
    from privacy.encrypted.certificates import Deployment
    from privacy.encrypted.network import RemoteClient

    x = _load_array(input_path, "'--input'")
    try:
        with RemoteClient(Deployment.load(deployment_dir), timeout=timeout) as client:
            result = client.predict(_as_batch(x, client.info["input_shape"]), output=output)
            cost = client.last_cost
    except (TransportError, OverflowDetected, ValueError) as err:
        _fail(err)
    values = result.labels if output == "label" else result.outputs
    if out_path:
        np.save(out_path, values)
    if as_json:
        click.echo(json.dumps({"labels": result.labels.tolist(),
                               "outputs": None if result.outputs is None else result.outputs.tolist(),
                               "cost": cost.to_dict()}))
        return
    for row, label in zip(values if output == "logits" else [None] * len(result.labels), result.labels):
        click.echo(f"label {label}" + ("" if row is None else "  outputs " + " ".join(f"{v:.6g}" for v in row)))
    click.echo(f"({cost.rounds} rounds, {cost.bytes / 1e6:.3f} MB between parties)", err=True)


@encrypted.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data_path", metavar="DATA")
@click.option("--labels", "labels_path", help="Integer labels (.npy/.csv) for the accuracy comparison.")
@click.option("--n", "limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of examples (the first N).")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--processes", is_flag=True,
              help="Run the parties as three processes on 127.0.0.1 with TLS (default: threads in this process).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.995, show_default=True)
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Largest accuracy difference allowed, in percentage points.")
@click.option("--tf-keras", is_flag=True, help="Load MODEL with tf-keras (Keras 2).")
@click.option("--json", "as_json", is_flag=True)
def verify(model_path, data_path, labels_path, limit, batch_size, processes, min_agreement, max_accuracy_drop,
           tf_keras, as_json):
    """Compare encrypted and plaintext predictions of MODEL on DATA; exit 1 if below the thresholds."""
    _keras_env(tf_keras)
    from privacy.encrypted import InProcessCluster, UnsupportedModelError, import_keras_model
    from privacy.encrypted.network import RemoteClient
    from privacy.encrypted.processes import loopback_parties
    from privacy.encrypted.verify import verify_model

    model = _load_keras_model(model_path)
    x = _load_array(data_path, "'DATA'")[:limit]
    y = _load_array(labels_path, "'--labels'").reshape(-1)[:limit].astype(np.int64) if labels_path else None
    try:
        plan = import_keras_model(model)
        x = _as_batch(x, plan.architecture.input_shape)
        if processes:
            with loopback_parties(plan) as deployment, RemoteClient(deployment) as client:
                report = verify_model(model, x, y, client, batch_size=batch_size)
        else:
            report = verify_model(model, x, y, InProcessCluster(plan), batch_size=batch_size)
    except (UnsupportedModelError, ValueError) as err:
        _fail(err)
    passed = report.passes(min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)
    if as_json:
        click.echo(json.dumps(dict(report.to_dict(), passed=passed)))
    else:
        click.echo(report.format_text())
        click.echo("PASS" if passed else f"FAIL (needs agreement >= {min_agreement:g} and accuracy difference "
                                         f"<= {max_accuracy_drop:g} points)")
    if not passed:
        raise SystemExit(1)


@encrypted.command()
@click.option("--model", "models", type=click.Choice(["mlp", "cnn"]), multiple=True,
              help="Reference model(s) [default: both].")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, help="Batch size(s) [default: 1, 100].")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--processes", is_flag=True, help="Also measure three processes on 127.0.0.1 with TLS.")
@click.option("--json", "as_json", is_flag=True)
def bench(models, batches, repeats, processes, as_json):
    """Latency, rounds and bytes per prediction of the reference MLP 784-128-128-10 and small CNN."""
    from privacy.encrypted import InProcessCluster
    from privacy.encrypted.benchmark import reference_plan, time_predictions
    from privacy.encrypted.network import RemoteClient
    from privacy.encrypted.processes import loopback_parties

    rows = []
    for name in models or ("mlp", "cnn"):
        plan = reference_plan(name)
        data = np.random.default_rng(1).random((max(batches or (100,)),) + plan.architecture.input_shape)
        for batch in batches or (1, 100):
            rows.append(dict(model=name, mode="in-process",
                             **time_predictions(InProcessCluster(plan), data[:batch], repeats=repeats)))
        if processes:
            with loopback_parties(plan) as deployment, RemoteClient(deployment) as client:
                for batch in batches or (1, 100):
                    rows.append(dict(model=name, mode="3 processes",
                                     **time_predictions(client, data[:batch], repeats=repeats)))
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'model':<6} {'mode':<12} {'batch':>5} {'median ms':>10} {'rounds':>7} {'MB':>9}")
    for r in rows:
        click.echo(f"{r['model']:<6} {r['mode']:<12} {r['batch']:>5} {r['median_ms']:>10.1f} {r['rounds']:>7} "
                   f"{r['bytes'] / 1e6:>9.3f}")


COMMANDS = [encrypted]
