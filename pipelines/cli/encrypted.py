"""`ppml encrypted ...`: private prediction by three parties holding secret shares.

\b
  ppml encrypted setup         certificates and party list for three parties
  ppml encrypted add-client    admit a client (its own certificate)
  ppml encrypted revoke-client refuse a client's certificate from now on
  ppml encrypted share-model   secret-share a Keras model into the parties' bundles
  ppml encrypted serve         run one party
  ppml encrypted predict       the client: share an input, reconstruct the prediction
  ppml encrypted verify        encrypted vs plaintext predictions of a model on a dataset
  ppml encrypted bench         latency, rounds and bytes of the reference models

Bad options and files end in one line naming the option and exit 2; failures of a run (a party down,
a rejected result) end in one line and exit 1; nothing is half written.
"""

from __future__ import annotations

import json
import os
import zipfile

import click
import numpy as np

from pipelines.cli.types import FiniteFloatRange
from pipelines.keras_env import VARIABLE, use_tf_keras

DEFAULT_DEPLOYMENT = "ppml-encrypted"
MAX_TIMEOUT_S = 86400.0
MAX_BENCH_BATCH = 10_000


class _Commands(click.Group):
    """Expected failures of any command (files, memory) end in one line, never in a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MemoryError:
            raise click.ClickException("not enough memory for this request; use a smaller batch") from None
        except OSError as err:
            where = f": {err.filename}" if err.filename else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None


def _keras_env(tf_keras: bool) -> None:
    """Before TensorFlow loads: tf-keras if asked (`use_tf_keras`), else Keras 3 unless TF_USE_LEGACY_KERAS is set."""
    if tf_keras:
        try:
            use_tf_keras()
        except RuntimeError as err:  # TensorFlow was loaded with Keras 3 before this command ran
            raise click.UsageError(f"--tf-keras: {err}") from None
    else:
        os.environ.setdefault(VARIABLE, "0")


def _load_plan(path: str):
    """The saved Keras model at `path` and its `ModelPlan`; one-line errors naming MODEL."""
    if not os.path.exists(path):
        raise click.BadParameter(f"no such file: {path}", param_hint="'MODEL'")
    import tensorflow as tf

    from privacy.encrypted import UnsupportedModelError, import_keras_model

    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise click.BadParameter(f"cannot load a Keras model from {path}: {first}", param_hint="'MODEL'") from None
    try:
        return model, import_keras_model(model)
    except UnsupportedModelError as err:
        raise click.BadParameter(str(err), param_hint="'MODEL'") from None


def _load_array(path: str, what: str) -> np.ndarray:
    """Reads .npy, .npz (first array) or .csv (comma separated, numbers only)."""
    if not os.path.isfile(path):
        raise click.BadParameter(f"no such file: {path}", param_hint=what)
    try:
        if path.endswith(".npy"):
            x = np.load(path, allow_pickle=False)
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                if not data.files:
                    raise ValueError("the archive holds no arrays")
                x = data[data.files[0]]
        else:
            x = np.atleast_2d(np.loadtxt(path, delimiter=",", dtype=np.float64))
        x = np.asarray(x, dtype=np.float64)
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as err:
        first = (str(err).splitlines() or [err.__class__.__name__])[0]
        raise click.BadParameter(f"cannot read numbers from {path}: {first}", param_hint=what) from None
    if not np.all(np.isfinite(x)):
        raise click.BadParameter(f"{path} contains NaN or infinite values", param_hint=what)
    return x


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
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT with a port in 1..65535, got {value!r}", param_hint="'--party'")
    return host, int(port)


def _deployment(directory: str):
    from privacy.encrypted.network.certificates import Deployment

    try:
        return Deployment.load(directory)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--deployment'") from None


def _check_bound_options(input_range, calibration_path, *, required: bool, input_check=None, half_open=False) -> str:
    """The --input-check choice (--half-open is short for --input-check half-open; a contradiction is refused)."""
    if half_open and input_check not in (None, "half-open"):
        raise click.UsageError(
            f"--half-open is short for --input-check half-open: it contradicts --input-check {input_check}"
        )
    input_check = "half-open" if half_open else input_check or INPUT_CHECKS[0]
    if input_check == "half-open" and not input_range:
        raise click.UsageError(
            "--input-check half-open (--half-open) applies to --input-range: bounds from data (--calibration, or "
            "DATA's range) are widened outward, never narrowed, so every such example is served as itself"
        )
    if input_range and calibration_path:
        raise click.UsageError("give --input-range or --calibration, not both")
    if required and not (input_range or calibration_path):
        raise click.UsageError(
            "declare the inputs' bounds with --input-range LO HI or --calibration FILE: the "
            "parties' arithmetic is proven correct only inside them"
        )
    return input_check


def _check_input_frac_bits(input_frac_bits: int | None, frac_bits: int) -> None:
    if input_frac_bits is not None and input_frac_bits > frac_bits:
        raise click.BadParameter(
            f"{input_frac_bits} exceeds the model's fractional bits ({frac_bits})", param_hint="'--input-frac-bits'"
        )


def _check_half_open(bounds, fixed) -> None:
    """Refuses half-open bounds that `InputBounds.encoded` refuses for the model's format `fixed`, naming the option."""
    if bounds.half_open:
        try:
            bounds.encoded(fixed)
        except ValueError as err:
            raise click.BadParameter(
                str(err), param_hint="'--input-range' / '--input-check half-open' / '--half-open'"
            ) from None


def _bounds(plan, input_range, calibration_path, input_check, *, default_data=None, frac_bits=None):
    """`InputBounds` from --input-range LO HI or --calibration FILE (else from `default_data`), with the
    inputs' precision `frac_bits` (None: the model's), checked by the servers as `input_check` says."""
    from privacy.encrypted import InputBounds

    shape = plan.architecture.input_shape
    try:
        if input_range:
            return InputBounds.declared(*input_range, shape, frac_bits=frac_bits, input_check=input_check)
        if calibration_path:
            data = _as_batch(_load_array(calibration_path, "'--calibration'"), shape)
            return InputBounds.from_data(data, shape, frac_bits=frac_bits, input_check=input_check)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--input-range' / '--calibration'") from None
    return InputBounds.from_data(default_data, shape, frac_bits=frac_bits, input_check=input_check)


def _fail(err: Exception):
    raise click.ClickException(str(err))


deployment_option = click.option(
    "--deployment",
    "deployment_dir",
    default=DEFAULT_DEPLOYMENT,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder written by `ppml encrypted setup`.",
)
timeout_option = click.option(
    "--timeout",
    type=FiniteFloatRange(min=0.1, max=MAX_TIMEOUT_S),
    default=30.0,
    show_default=True,
    help="Seconds to wait for a party's message before failing.",
)
valid_days_option = click.option(
    "--valid-days",
    type=click.IntRange(1, 36500),
    default=365,
    show_default=True,
    help="Lifetime of the certificates, in days.",
)
DEFAULT_FRAC_BITS = 16
"""The model's fractional bits unless share-model's --frac-bits says otherwise (`FixedPoint`'s default: the CLI
does not import privacy.encrypted before it has validated its options)."""
INPUT_CHECKS = ("widened", "exact", "half-open")
"""`privacy.encrypted.model.ranges.INPUT_CHECKS`, default first (a test keeps them equal; not imported, as above)."""
input_range_option = click.option(
    "--input-range", nargs=2, type=float, metavar="LO HI", help="Bounds every input feature must lie in."
)
input_check_option = click.option(
    "--input-check",
    type=click.Choice(INPUT_CHECKS),
    default=None,
    help="What the parties check of a client's input [default: widened]. widened: the declared bounds widened "
    "outward, per feature, to the narrowest window of 2^k values of the inputs' grid around them (k the bits of the "
    "widest span), which one comparison per value checks, if that at most doubles every feature's declared grid "
    "values (--input-range's equal spans do; --calibration bounds with a constant feature beside one wider than a "
    "grid step do not) "
    "and the interval "
    "analysis proves the model safe over it (else exact, and the output says why); no input is moved, the client "
    "still refuses inputs outside the declared bounds, and a client that bypasses that check gets the model's exact "
    "output for inputs in the window. exact: "
    "the declared bounds (two comparisons per value unless they already are such a window). half-open: --input-range "
    "checked as [LO, HI): the top grid value (multiples of 2^-N, N the inputs' fractional bits) is dropped and an "
    "input at HI is computed on as HI - 2^-N; only where every feature spans the same power of two (as [0, 1]).",
)
half_open_option = click.option(
    "--half-open", is_flag=True, help="Short for --input-check half-open (refused with another --input-check)."
)
input_frac_bits_option = click.option(
    "--input-frac-bits",
    type=click.IntRange(0, 24),
    default=None,
    help="The inputs' precision: clients round inputs to multiples of 2^-N (at most the model's fractional bits, "
    "share-model's --frac-bits or verify's 16; default: those). --input-range bounds must be multiples of 2^-N; "
    "bounds from data (--calibration, verify's DATA) are widened to them. "
    "The parties' input check costs in proportion to the bits of the inputs' encoded span, so e.g. 8 for "
    "pixel values p/255 about halves it.",
)
calibration_option = click.option(
    "--calibration",
    "calibration_path",
    metavar="FILE",
    help="Examples (.npy, .npz or .csv) whose per-feature min and max become the bounds.",
)


@click.group("encrypted", cls=_Commands)
def encrypted():
    """Encrypted inference: three parties predict on secret shares (3-party replicated sharing, semi-honest,
    honest majority); no party sees the input or the weights, only the client sees the output."""


@encrypted.command()
@click.option(
    "--out",
    "out_dir",
    default=DEFAULT_DEPLOYMENT,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the party list and credentials.",
)
@click.option(
    "--party",
    "parties",
    multiple=True,
    metavar="HOST:PORT",
    help="Address of party 0, 1, 2 (give it three times) [default: 127.0.0.1:7400-7402].",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    metavar="NAME",
    help="Admit a client with its own certificate (repeat for more) [default: one named 'client'].",
)
@valid_days_option
def setup(out_dir, parties, clients, valid_days):
    """Create a private CA, certificates for the three parties and for each client, and the party list.

    Copy OUT/party-<i>/ plus OUT/deployment.json and OUT/revoked.json to party i's machine, and
    OUT/clients/<name>/ plus OUT/deployment.json to client <name>. Keep OUT/ca/ (the CA key, mode 0600)
    where clients are admitted and revoked; never copy it to a party.
    """
    from privacy.encrypted.network.certificates import create_deployment

    addresses = [_address(p) for p in parties] or [("127.0.0.1", 7400 + i) for i in range(3)]
    if len(addresses) != 3:
        raise click.BadParameter(f"give exactly three addresses, got {len(addresses)}", param_hint="'--party'")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise click.BadParameter(f"{out_dir} is a file", param_hint="'--out'")
    clients = clients or ("client",)
    try:
        create_deployment(out_dir, addresses, clients=clients, valid_days=valid_days)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--client'") from None
    click.echo(
        f"wrote {out_dir}/deployment.json and credentials for party-0, party-1, party-2 and client(s) "
        f"{', '.join(clients)}"
    )


@encrypted.command("add-client")
@click.argument("name")
@deployment_option
@valid_days_option
def add_client_command(name, deployment_dir, valid_days):
    """Admit client NAME: its own key and certificate in DEPLOYMENT/clients/NAME/ (needs DEPLOYMENT/ca/)."""
    from privacy.encrypted.network.certificates import add_client

    _deployment(deployment_dir)
    try:
        folder = add_client(deployment_dir, name, valid_days=valid_days)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'NAME'") from None
    click.echo(f"wrote {folder}/ (copy it and {deployment_dir}/deployment.json to the client)")


@encrypted.command("revoke-client")
@click.argument("name")
@deployment_option
def revoke_client_command(name, deployment_dir):
    """Refuse client NAME's certificate: listed in DEPLOYMENT/revoked.json, which parties re-read when it
    changes (copy the file to every party's deployment folder)."""
    from privacy.encrypted.network.certificates import revoke_client

    _deployment(deployment_dir)
    try:
        serial = revoke_client(deployment_dir, name)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'NAME'") from None
    click.echo(f"revoked client {name} (certificate serial {serial:x}) in {deployment_dir}/revoked.json")


@encrypted.command("share-model")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=True))
@deployment_option
@input_range_option
@calibration_option
@click.option(
    "--frac-bits",
    type=click.IntRange(1, 24),
    default=DEFAULT_FRAC_BITS,
    show_default=True,
    help="Fractional bits of the fixed-point encoding.",
)
@input_frac_bits_option
@click.option(
    "--allow-logits",
    is_flag=True,
    help="Let the parties reveal logits to clients that ask (default: only labels). Logits give a "
    "client the model's exact outputs: far fewer queries recover weights from them. Refused if "
    "the logits could need more than the 63 bits a 64-bit ring element holds.",
)
@input_check_option
@half_open_option
@click.option("--tf-keras", is_flag=True, help="Load MODEL with tf-keras (Keras 2) instead of Keras 3.")
def share_model_command(
    model_path,
    deployment_dir,
    input_range,
    calibration_path,
    frac_bits,
    input_frac_bits,
    allow_logits,
    input_check,
    half_open,
    tf_keras,
):
    """Secret-share the weights of a saved Keras MODEL (run by the model owner).

    The inputs' bounds (--input-range or --calibration) are required: an interval analysis proves from
    them that no value of the computation can leave the 64-bit ring's headroom, and refuses the model
    otherwise; clients refuse inputs outside them. The parties check the bounds widened outward to a window one
    comparison per value checks, where it at most doubles each feature's declared grid values and the analysis
    proves it safe too (else the declared bounds exactly; the output says which): --input-check says otherwise
    (exact, or half-open [LO, HI)). The parties release only predicted labels unless --allow-logits is given (the
    policy is in the bundles; clients cannot change it). Writes
    DEPLOYMENT/party-<i>/model.npz (mode 0600): party i's two random components of every weight, plus the
    public architecture, range plan and release policy. Hand each file to its party, then delete the local
    copies: any two files together give the plaintext weights; no single party ever sees them.
    """
    input_check = _check_bound_options(
        input_range, calibration_path, required=True, input_check=input_check, half_open=half_open
    )
    _check_input_frac_bits(input_frac_bits, frac_bits)
    _keras_env(tf_keras)
    from privacy.encrypted import FixedPoint, LogitsOutOfRange, ModelRangeError
    from privacy.encrypted.network.processes import save_model_shares
    from privacy.encrypted.protocol.model_shares import PartyModel

    _, plan = _load_plan(model_path)
    bounds = _bounds(plan, input_range, calibration_path, input_check, frac_bits=input_frac_bits)
    _check_half_open(bounds, FixedPoint(frac_bits))
    try:
        paths = save_model_shares(plan, deployment_dir, FixedPoint(frac_bits), bounds, allow_logits=allow_logits)
    except LogitsOutOfRange as err:
        raise click.BadParameter(str(err), param_hint="'--allow-logits'") from None
    except ModelRangeError as err:
        raise click.BadParameter(str(err), param_hint="'MODEL' / '--input-range' / '--calibration'") from None
    for path in paths:
        click.echo(f"wrote {path}")
    click.echo(PartyModel.load(paths[0]).ranges.describe_check())  # as the bundles record it


@encrypted.command("reshare")
@deployment_option
def reshare_command(deployment_dir):
    """Renew the weights' sharing in DEPLOYMENT/party-<i>/model.npz (run where all three bundles are).

    Replaces the three bundles by a fresh, independent sharing of the same weights with a new model id,
    each written in place (mode 0600): a party that kept its old file learns nothing from it together with
    another party's new one. Stop the parties first and hand each its new file, then delete the local copies
    (any two files together give the plaintext weights); clients refuse parties that serve different model
    ids. (`serve` already re-randomizes the shares in memory whenever the parties connect and every
    --refresh-every sessions; this renews the files those sessions start from.)
    """
    from privacy.encrypted.network.processes import model_path, reshare_model_shares

    try:
        model_id = reshare_model_shares([model_path(deployment_dir, i) for i in range(3)])
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--deployment'") from None
    click.echo(f"renewed the sharing of the bundles in {deployment_dir}: model id {model_id}")


@encrypted.command()
@click.option("--party", "index", type=click.IntRange(0, 2), required=True, help="Which party this is.")
@deployment_option
@click.option(
    "--model",
    "model_file",
    type=click.Path(dir_okay=False),
    help="This party's share bundle [default: DEPLOYMENT/party-<i>/model.npz].",
)
@timeout_option
@click.option(
    "--memory-budget",
    type=click.IntRange(1, 1 << 20),
    default=1024,
    show_default=True,
    metavar="MB",
    help="MiB for requests and their sessions.",
)
@click.option(
    "--client-quota",
    type=click.IntRange(1, 1 << 20),
    metavar="MB",
    help="MiB of the budget one client may hold at once; the largest batch follows from it "
    "[default: a quarter of --memory-budget].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="Client connections held at once (a new one evicts one not yet authenticated, else the client idle longest).",
)
@click.option(
    "--idle-timeout",
    type=FiniteFloatRange(min=0.1, max=MAX_TIMEOUT_S),
    default=120.0,
    show_default=True,
    help="Seconds a client connection may stay silent.",
)
@click.option(
    "--refresh-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Renew the parties' keys and re-randomize the weight shares every N sessions (0: only when the parties "
    "connect).",
)
def serve(
    index,
    deployment_dir,
    model_file,
    timeout,
    memory_budget,
    client_quota,
    max_connections,
    idle_timeout,
    refresh_every,
):
    """Run party --party; prints `ready` once connected to the other two parties, then serves until killed.

    A party that loses a peer keeps running, tells waiting clients, and connects again when the peer is back.
    """
    from privacy.encrypted.network.processes import model_path, run_party
    from privacy.encrypted.protocol.model_shares import PartyModel
    from privacy.encrypted.protocol.transport import TransportError

    deployment = _deployment(deployment_dir)
    path = model_file or model_path(deployment_dir, index)
    try:
        model = PartyModel.load(path)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--model'") from None
    if model.index != index:
        raise click.BadParameter(f"{path} is party {model.index}'s share, not party {index}'s", param_hint="'--model'")
    if client_quota is not None and client_quota > memory_budget:
        raise click.BadParameter(
            f"{client_quota} MiB exceeds --memory-budget ({memory_budget} MiB)", param_hint="'--client-quota'"
        )
    limits = dict(
        memory_budget=memory_budget << 20,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        refresh_every=refresh_every,
        client_quota=None if client_quota is None else client_quota << 20,
    )
    try:
        run_party(index, deployment.directory, path, timeout=timeout, **limits)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--memory-budget' / '--client-quota'") from None
    except TransportError as err:
        _fail(err)


@encrypted.command()
@click.option("--input", "input_path", required=True, help="Examples (.npy, .npz or .csv), one per row/first axis.")
@deployment_option
@click.option(
    "--output",
    type=click.Choice(["label", "logits"]),
    default="label",
    show_default=True,
    help="Reveal only the predicted labels, or the model outputs (if the model was shared with --allow-logits).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    help="Also save the outputs as .npy (mode 0600: they are the client's secret).",
)
@click.option(
    "--client",
    "client",
    metavar="NAME",
    help="Whose credentials (DEPLOYMENT/clients/NAME/) [default: the only client].",
)
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(input_path, deployment_dir, output, out_path, client, timeout, as_json):
    """Private prediction: share the input with the three parties and reconstruct the result."""
    from privacy.encrypted import InputOutOfBounds, OutputNotAllowed, ResultRejected, TransportError
    from privacy.encrypted.network.remote import RemoteClient

    x = _load_array(input_path, "'--input'")
    if out_path and os.path.isdir(out_path):
        raise click.BadParameter(f"{out_path} is a folder", param_hint="'--out'")
    deployment = _deployment(deployment_dir)
    try:
        remote = RemoteClient(deployment, client=client, timeout=timeout)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--client'") from None
    try:
        with remote:
            result = remote.predict(_as_batch(x, remote.info["input_shape"]), output=output)
            cost = remote.last_cost
    except OutputNotAllowed as err:
        raise click.BadParameter(str(err), param_hint="'--output'") from None
    except InputOutOfBounds as err:
        raise click.BadParameter(str(err), param_hint="'--input'") from None
    except (TransportError, ResultRejected, ValueError) as err:
        _fail(err)
    values = result.labels if output == "label" else result.outputs
    if out_path:
        from io import BytesIO

        from privacy.atomic_files import write_atomically

        buffer = BytesIO()
        np.save(buffer, values)
        write_atomically(out_path, buffer.getvalue())  # owner-only: the client's secret
    if as_json:
        click.echo(
            json.dumps(
                {
                    "labels": result.labels.tolist(),
                    "outputs": None if result.outputs is None else result.outputs.tolist(),
                    "cost": cost.to_dict(),
                }
            )
        )
        return
    for row, label in zip(values if output == "logits" else [None] * len(result.labels), result.labels, strict=True):
        click.echo(f"label {label}" + ("" if row is None else "  outputs " + " ".join(f"{v:.6g}" for v in row)))
    click.echo(f"({cost.rounds} rounds, {cost.bytes / 1e6:.3f} MB between parties)", err=True)


@encrypted.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data_path", metavar="DATA")
@click.option("--labels", "labels_path", help="Integer labels (.npy/.csv) for the accuracy comparison.")
@click.option(
    "--n", "limit", type=click.IntRange(min=1), default=100, show_default=True, help="Number of examples (the first N)."
)
@click.option("--batch-size", type=click.IntRange(1, MAX_BENCH_BATCH), default=100, show_default=True)
@click.option(
    "--processes",
    is_flag=True,
    help="Run the parties as three processes on 127.0.0.1 with TLS (default: threads in this process).",
)
@input_range_option
@input_frac_bits_option
@input_check_option
@half_open_option
@click.option("--min-agreement", type=FiniteFloatRange(0, 1), default=0.995, show_default=True)
@click.option(
    "--max-accuracy-drop",
    type=FiniteFloatRange(0, 100),
    default=0.5,
    show_default=True,
    help="Largest accuracy difference allowed, in percentage points.",
)
@click.option("--tf-keras", is_flag=True, help="Load MODEL with tf-keras (Keras 2).")
@click.option("--json", "as_json", is_flag=True)
def verify(
    model_path,
    data_path,
    labels_path,
    limit,
    batch_size,
    processes,
    input_range,
    input_frac_bits,
    input_check,
    half_open,
    min_agreement,
    max_accuracy_drop,
    tf_keras,
    as_json,
):
    """Compare encrypted and plaintext predictions of MODEL on DATA; exit 1 if below the thresholds.

    The model is shared for inputs within --input-range, or within DATA's per-feature minimum and maximum, and
    the parties check them as --input-check says, as share-model serves it. A model
    whose logits could need more than 63 bits there is checked on its labels only, the release policy it can be
    served with (share-model without --allow-logits); the output says so.
    """
    input_check = _check_bound_options(input_range, None, required=False, input_check=input_check, half_open=half_open)
    _check_input_frac_bits(input_frac_bits, DEFAULT_FRAC_BITS)
    x = _load_array(data_path, "'DATA'")[:limit]
    y = None
    if labels_path:
        y = _load_array(labels_path, "'--labels'").reshape(-1)[:limit]
        if not np.array_equal(y, np.round(y)):
            raise click.BadParameter("labels must be integers", param_hint="'--labels'")
        if len(y) != len(x):
            raise click.BadParameter(f"{len(y)} labels for {len(x)} examples", param_hint="'--labels'")
        y = y.astype(np.int64)
    _keras_env(tf_keras)
    from privacy.encrypted import (
        FixedPoint,
        InProcessCluster,
        InputOutOfBounds,
        LogitsOutOfRange,
        ModelRangeError,
        ResultRejected,
        TransportError,
    )
    from privacy.encrypted.network.processes import loopback_parties
    from privacy.encrypted.network.remote import RemoteClient
    from privacy.encrypted.verify import verify_model

    model, plan = _load_plan(model_path)
    x = _as_batch(x, plan.architecture.input_shape)
    try:
        bounds = _bounds(plan, input_range, None, input_check, default_data=x, frac_bits=input_frac_bits)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'DATA'") from None
    _check_half_open(bounds, FixedPoint())
    labels_only = None
    try:
        try:
            cluster = InProcessCluster(plan, bounds, allow_logits=True)
        except LogitsOutOfRange:
            # Released logits could wrap the ring, labels cannot: check the model for the labels-only release
            # policy it can be served with (share-model without --allow-logits), as the pipeline's gate does.
            cluster = InProcessCluster(plan, bounds)
            labels_only = (
                f"labels only: the logits can need {cluster.ranges.output_bits} bits for these input bounds, more "
                f"than a ring element holds, so the model is checked for the labels-only release policy (share it "
                f"without --allow-logits)"
            )
        output = "label" if labels_only else "logits"
        if processes:
            with (
                loopback_parties(plan, bounds, allow_logits=not labels_only) as parties,
                RemoteClient(parties.deployment) as client,
            ):
                report = verify_model(model, x, y, client, batch_size=batch_size, output=output)
        else:
            report = verify_model(model, x, y, cluster, batch_size=batch_size, output=output)
    except (ModelRangeError, InputOutOfBounds) as err:
        raise click.BadParameter(str(err), param_hint="'MODEL' / 'DATA' / '--input-range'") from None
    except (ResultRejected, TransportError, ValueError, RuntimeError) as err:
        _fail(err)
    passed = report.passes(min_agreement=min_agreement, max_accuracy_drop=max_accuracy_drop)
    if as_json:
        checked = cluster.ranges.describe_check()
        click.echo(
            json.dumps(dict(report.to_dict(), output=output, labels_only=labels_only, checked=checked, passed=passed))
        )
    else:
        if labels_only:
            click.echo(labels_only)
        click.echo(cluster.ranges.describe_check())
        click.echo(report.format_text())
        click.echo(
            "PASS"
            if passed
            else f"FAIL (needs agreement >= {min_agreement:g} and accuracy difference <= {max_accuracy_drop:g} points)"
        )
    if not passed:
        raise SystemExit(1)


@encrypted.command()
@click.option(
    "--model", "models", type=click.Choice(["mlp", "cnn"]), multiple=True, help="Reference model(s) [default: both]."
)
@click.option(
    "--batch",
    "batches",
    type=click.IntRange(1, MAX_BENCH_BATCH),
    multiple=True,
    help="Batch size(s) [default: 1, 100].",
)
@click.option("--repeats", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--processes", is_flag=True, help="Also measure three processes on 127.0.0.1 with TLS.")
@click.option("--json", "as_json", is_flag=True)
def bench(models, batches, repeats, processes, as_json):
    """Latency, rounds and bytes per prediction of the reference MLP 784-128-128-10 and small CNN."""
    from privacy.encrypted import InProcessCluster
    from privacy.encrypted.benchmark import reference_bounds, reference_plan, time_predictions
    from privacy.encrypted.network.processes import loopback_parties
    from privacy.encrypted.network.remote import RemoteClient

    rows = []
    for name in models or ("mlp", "cnn"):
        plan = reference_plan(name)
        bounds = reference_bounds(plan)
        data = np.random.default_rng(1).random((max(batches or (100,)),) + plan.architecture.input_shape)
        for batch in batches or (1, 100):
            rows.append(
                dict(
                    model=name,
                    mode="in-process",
                    **time_predictions(InProcessCluster(plan, bounds), data[:batch], repeats=repeats),
                )
            )
        if processes:
            with loopback_parties(plan, bounds) as parties, RemoteClient(parties.deployment) as client:
                for batch in batches or (1, 100):
                    rows.append(
                        dict(model=name, mode="3 processes", **time_predictions(client, data[:batch], repeats=repeats))
                    )
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'model':<6} {'mode':<12} {'batch':>5} {'median ms':>10} {'rounds':>7} {'MB':>9}")
    for r in rows:
        click.echo(
            f"{r['model']:<6} {r['mode']:<12} {r['batch']:>5} {r['median_ms']:>10.1f} {r['rounds']:>7} "
            f"{r['bytes'] / 1e6:>9.3f}"
        )


COMMANDS = [encrypted]
