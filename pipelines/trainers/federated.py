"""TFX ``run_fn`` of the Federated Trainer: FedAvg over the training split divided among simulated clients.

The Trainer reads raw examples (ExampleGen's output) and, when it has a transform graph, applies the
graph itself. A private Trainer reads each record alone against a public spec (`declared_spec`: the
graph's raw feature spec, the schema's, or ``feature_keys``), so no record decides the features. Each
training record is keyed by its raw content (`federated.partitioners.record_keys`)
before any preprocessing: Transform's analyzers (a z-score's mean and standard deviation) move with
every record, so keys of transformed records would move every record when one is added. The split is
then divided by the ``client_key`` column, or dealt to N clients by key (`KeyedPartitioner`: one record
changes one client), and trained with `federated.FederatedSimulation` (FedAvg family; client-level
DP-FedAvg when ``private``), all built by the settings' plan
(`pipelines.components.federated_trainer.spec` keys in the Trainer's ``custom_config``, shared with
``ppml federated run``). The model is an MLP on the feature vector (ReLU layers of ``hidden_units``,
softmax logits). The partition never depends on Transform's constants; the model's inputs do, so a
private run composes the transform graph's private releases (`pipelines.transform.artifact`) before the
rounds, as one client's ``max_examples_per_client`` records move them (a private run trains each client on
at most that many records, its first by raw record key, rather than refusing a larger client, whose size is
private), and the Private Evaluator refuses a
graph whose statistics are neither private nor declared public.

Outputs, like the DP Trainer's:

* ``serving_model_dir``: a SavedModel whose ``serving_default`` signature takes serialized raw
  tf.Examples, applies the Transform graph (if any) and returns ``{"probabilities": ...}``
  (P(label = 1), shape [n, 1], for two classes; [n, classes] otherwise);
* for private runs, the privacy ledger (`pipelines.privacy_ledger`, mechanism ``dp-fedavg``) in
  ``serving_model_dir/assets.extra``;
* ``model_run_dir``: the simulation's ``history.json`` (per-round accuracy on the evaluation split, a
  private split of the same data, so a private run lists it outside its guarantee; epsilon) and
  ``accuracy.png``. The ledger lists the same.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from pipelines import privacy_ledger
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting

PREDICTION_KEY = "probabilities"
TRANSFORM_BATCH = 1024
"""Records per call of the transform graph."""
PREPROCESSING_CAVEAT = {
    "preprocessing beyond K records per client": "training takes at most max_examples_per_client (K) records of a "
    "client, but Transform's analyzers read every training record and are accounted as K records per client: for "
    "a client holding more than K, the preprocessing releases are covered per record, not per client"
}
"""Listed outside the guarantee of a private run whose Transform graph has private releases."""
INFERRED_SPEC = privacy_ledger.INFERRED_SPEC


def run_fn(fn_args) -> None:
    """Trains on ``fn_args.train_files`` (evaluating on ``fn_args.eval_files``) and exports the model."""
    import federated as fl
    from federated.data.examples import stack_features
    from federated.data.screen import largest_label, trainable
    from federated.models import DenseModel

    config = FederatedTrainingConfig.for_trainer(fn_args.custom_config)
    transform = _transform_output(fn_args)
    spec = declared_spec(config, transform, getattr(fn_args, "schema_path", None)) if config.private else None
    train = read_split(fn_args.train_files, transform, spec)
    feature_keys = resolve_feature_keys(config, train)
    evaluated = read_split(fn_args.eval_files, transform, spec)
    evaluation = (stack_features(evaluated.columns, feature_keys), _labels(evaluated, config))
    num_classes = config.model_classes(largest_label(_labels(train, config), evaluation[1]))
    data = client_data(config, train, feature_keys, num_classes, held_out=evaluated)
    scored = trainable(*evaluation, num_classes)
    if config.private:  # each evaluation record it cannot score is left out alone (federated.data.screen)
        evaluation = (evaluation[0][scored], evaluation[1][scored].astype(np.int64))
    elif not scored.all():
        raise ValueError(
            f"evaluation record {int(np.flatnonzero(~scored)[0])} has a NaN or infinite feature or a "
            f"label outside 0..{num_classes - 1}"
        )
    preprocessing = None
    if config.private and transform is not None:
        from pipelines.transform.artifact import transform_graph_account

        preprocessing = transform_graph_account(fn_args.transform_output)
    plan = config.plan(data.num_clients, preprocessing=preprocessing)
    if plan.delta_warning:  # also in the ledger's parameters
        from absl import logging

        logging.warning("Federated Trainer: %s", plan.delta_warning)
    model_fn = DenseModel(data.x.shape[1], num_classes, tuple(config.hidden_units), seed=config.seed)
    algorithm = plan.strategy()
    simulation = fl.FederatedSimulation(
        model_fn,
        data,
        algorithm,
        rounds=config.rounds,
        sampler=config.sampler(),
        seed=config.seed,
        evaluation=evaluation,
        outside_guarantee=("evaluation",) + ("clients",) * bool(config.client_key),
        aggregation=plan.aggregation(algorithm, int(data.sizes().max())),
        execution=config.execution,
    )
    history = simulation.run()
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    history.config["title"] = f"Federated Trainer: {history.config['strategy']['name']}, N={data.num_clients}"
    history.save_json(os.path.join(fn_args.model_run_dir, "history.json"))
    history.plot(os.path.join(fn_args.model_run_dir, "accuracy.png"))
    export(model_fn, simulation.state.weights, fn_args, train.columns, feature_keys, config, spec)
    if plan.private:
        spec_outside = spec_caveat(config, transform, getattr(fn_args, "schema_path", None))
        ledger = plan.ledger(
            simulation.state.budget,
            rounds=simulation.state.round,
            trainer={"run_fn": f"{__name__}.run_fn"},
            noise_draws=algorithm.noise_draws(simulation.state.weights),
            outside_guarantee={
                **history.config["outside_guarantee"],
                **(PREPROCESSING_CAVEAT if plan.preprocessing is not None else {}),
                **spec_outside,
            },
        )
        privacy_ledger.write_ledger(fn_args.serving_model_dir, ledger)


# --- data ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Split:
    """One split's records.

    Attributes:
      columns: the records as the model sees them: Transform's outputs when there is a transform
        graph, else the raw features.
      raw: the records as ExampleGen wrote them.
      keys: one key per record, from its raw content (`record_keys`).
    """

    columns: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    keys: list[bytes]


def read_split(file_patterns, transform=None, spec=None) -> Split:
    """The raw tf.Examples of the files matching ``file_patterns`` (a TFX split's ``*`` globs), keyed by
    their raw content and, with ``transform`` (a ``tft.TFTransformOutput``), transformed by its graph.

    With ``spec`` (`declared_spec`, for a private run) each record is read alone against it
    (`federated.data.declared`): no record decides the features, their kinds or lengths; a record that
    does not conform (one that is not a tf.Example, or longer than `MAX_RECORD_BYTES`, included) keeps its
    place with NaN model inputs (left out after dealing), one without a readable client id is left out, and
    a split may have no record.

    Raises:
      ValueError: when no file matches, a public run's split has no record or one that is not a tf.Example,
        or the examples lack the transform graph's raw features (they are Transform's output: give the
        Trainer ExampleGen's examples).
    """
    import tensorflow as tf

    from federated.data.examples import examples_to_columns, read_tf_records
    from federated.partitioners import record_keys

    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no example files match {list(file_patterns)}")
    from federated.data.declared import MAX_RECORD_BYTES

    records = read_tf_records(files, max_record_bytes=None if spec is None else MAX_RECORD_BYTES)
    if spec is not None:  # a private run refuses no split for its number of records, none included
        return _declared_split(records, transform, spec)
    if not records:
        raise ValueError(f"no records in {files}")
    raw = examples_to_columns(records)
    if transform is None:
        return Split(columns=raw, raw=raw, keys=record_keys(raw))
    spec = transform.raw_feature_spec()
    missing = sorted(set(spec) - set(raw))
    if missing:
        raise ValueError(
            f"the examples lack the transform graph's raw features {missing}: the Federated Trainer "
            f"keys each record by its raw content and applies the transform graph itself, so give "
            f"it ExampleGen's examples, not Transform's"
        )
    return Split(columns=_transformed(records, transform, spec), raw=raw, keys=record_keys(raw))


def _declared_split(records: list[bytes], transform, spec) -> Split:
    """`read_split` against a declared spec: the records that conform go through the transform graph; the
    others get NaN model inputs (None for text outputs) in their place."""
    from federated.data import declared
    from federated.partitioners import record_keys

    read = declared.read_examples(records, spec)
    if transform is None:
        return Split(columns=read.columns, raw=read.columns, keys=record_keys(read.columns))
    conforming = [records[i] for i in read.kept[read.conforming]]
    columns = {}
    for key, value in _transformed(conforming, transform, transform.raw_feature_spec()).items():
        numeric = value.dtype.kind in "biuf"
        full = np.full(
            (len(read.kept), *value.shape[1:]), np.nan if numeric else None, np.float64 if numeric else object
        )
        full[read.conforming] = value
        columns[key] = full
    return Split(columns=columns, raw=read.columns, keys=record_keys(read.columns))


def spec_caveat(config: FederatedTrainingConfig, transform, schema_path: str | None) -> dict[str, str]:
    """`INFERRED_SPEC` when a private run's `declared_spec` comes from a Transform graph or a schema that
    ``public_schema`` does not declare public, else nothing (``feature_keys`` are settings: public)."""
    inferred = config.private and not config.public_schema and (transform is not None or bool(schema_path))
    return dict(INFERRED_SPEC) if inferred else {}


def declared_spec(config: FederatedTrainingConfig, transform, schema_path: str | None):
    """The public spec a private Trainer reads each record against (`federated.data.declared.Column`s): the
    transform graph's raw feature spec, else the schema's, else ``feature_keys`` (one float each, as the
    model serves them) and the label (a number); the ``client_key`` is read as text.

    Raises:
      InvalidFederatedSetting: naming ``feature_keys`` when there is neither a graph, a schema nor that setting.
      ValueError: for a spec with a feature that is not of fixed length, or without the label.
    """
    import tensorflow as tf

    from federated.data.declared import Column

    client = [Column(config.client_key, "text")] if config.client_key else []
    if transform is not None:
        feature_spec = transform.raw_feature_spec()
    elif schema_path:
        from tensorflow_metadata.proto.v0 import schema_pb2
        from tensorflow_transform.tf_metadata import schema_utils
        from tfx.utils import io_utils

        schema = io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())
        feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    elif config.feature_keys:
        return [Column(key, "float") for key in config.feature_keys] + [Column(config.label_key)] + client
    else:
        raise InvalidFederatedSetting(
            "feature_keys",
            "a private Trainer reads each record against a public spec: "
            "give it a Transform graph or a schema, or name the features "
            "(one float each)",
        )
    if config.label_key not in feature_spec:
        raise ValueError(
            f"custom_config['label_key']: no feature {config.label_key!r} in the raw feature spec "
            f"{sorted(feature_spec)}"
        )
    kinds = {tf.int64: ("int", "int64_list"), tf.float32: ("float", "float_list"), tf.string: ("bytes", "bytes_list")}
    columns = []
    for name, feature in sorted(feature_spec.items()):
        if not isinstance(feature, tf.io.FixedLenFeature) or feature.dtype not in kinds:
            raise ValueError(
                f"raw feature {name!r} is {feature}: a private Federated Trainer reads fixed-length "
                f"int64, float or bytes features only"
            )
        kind, accepts = kinds[feature.dtype]
        if name == config.client_key:  # text, but of the declared kind, as the transform graph parses it
            columns.append(Column(name, "text", accepts=(accepts,)))
        else:
            columns.append(Column(name, kind, int(np.prod(feature.shape, dtype=int))))
    return columns + ([] if config.client_key in feature_spec else client)


def _transformed(records: list[bytes], transform, spec) -> dict[str, np.ndarray]:
    """Transform's outputs for serialized raw ``records``, as numpy columns ([n], or [n, L] for L > 1 values)."""
    import tensorflow as tf

    layer = transform.transform_features_layer()
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, max(len(records), 1), TRANSFORM_BATCH):  # no record: empty columns, all outputs
        outputs = layer(tf.io.parse_example(tf.constant(records[start : start + TRANSFORM_BATCH], tf.string), spec))
        for key, value in outputs.items():
            if isinstance(value, tf.SparseTensor):
                raise ValueError(f"Transform output {key!r} is sparse; the Federated Trainer takes dense features")
            array = value.numpy()
            array = array.reshape(len(array), int(np.prod(array.shape[1:])))  # [n] for one value, as read_tf_examples
            parts.setdefault(key, []).append(array[:, 0] if array.shape[1] == 1 else array)
    return {key: np.concatenate(values) for key, values in parts.items()}


def _transform_output(fn_args):
    if not fn_args.transform_output:
        return None
    import tensorflow_transform as tft

    return tft.TFTransformOutput(fn_args.transform_output)


def resolve_feature_keys(config: FederatedTrainingConfig, split: Split) -> list[str]:
    """``feature_keys``, or every numeric model-input column but the label and the client key (sorted)."""
    for key, role in ((config.label_key, "label_key"), (config.client_key, "client_key")):
        if key is not None and key not in split.columns and key not in split.raw:
            raise ValueError(
                f"custom_config[{role!r}]: no column {key!r} in the training examples; "
                f"they have {sorted(split.columns)}"
            )
    if config.feature_keys is not None:
        return list(config.feature_keys)
    from federated.data.examples import feature_columns

    return feature_columns(split.columns, (config.label_key, config.client_key))


def client_data(
    config: FederatedTrainingConfig,
    split: Split,
    feature_keys: list[str],
    num_classes: int,
    *,
    held_out: Split | None = None,
):
    """The training split as `ClientData`: by the raw ``client_key`` column, or dealt by raw record key; a
    private run leaves out, one by one, the records it cannot train on and, with ``max_examples_per_client``
    K, each client's records past its K of smallest raw record key (`ClientData.for_private_run`; how many
    were capped is not reported). A private run deals the ``held_out`` (evaluation) split's records too and
    then leaves them out, so a user all of whose records are held out is still a client (an empty one): N
    counts the users of both splits."""
    from federated.data import ClientData
    from federated.data.examples import stack_features

    splits = [split] + ([held_out] if config.private and held_out is not None else [])
    keys = [s.raw[config.client_key] if config.client_key else s.keys for s in splits]
    x = [stack_features(s.columns, feature_keys) for s in splits]
    y = [_labels(s, config) for s in splits]
    if config.private:
        train = np.arange(sum(len(a) for a in y)) < len(y[0])
        return ClientData.for_private_run(
            np.concatenate(x),
            np.concatenate(y),
            config.partitioner(),
            num_classes=num_classes,
            keys=np.concatenate(keys) if config.client_key else sum(keys, []),
            max_examples_per_client=config.max_examples_per_client,
            record_keys=[k for s in splits for k in s.keys],
            train=train,
        )
    return ClientData.from_arrays(x[0], y[0], config.partitioner(), keys=keys[0])


def _labels(split: Split, config: FederatedTrainingConfig) -> np.ndarray:
    """The label column: Transform's output of that name when there is one, else the raw column (a private
    run's as read, numbers with NaN where a record's label is no number: `federated.data.screen` leaves it out)."""
    from federated.data.examples import class_labels

    columns = split.columns if config.label_key in split.columns else split.raw
    if config.private:
        return np.asarray(columns[config.label_key], np.float64)
    return class_labels(columns, config.label_key, setting="custom_config['label_key']")


# --- export ----------------------------------------------------------------------------------------
def export(
    model_fn, weights, fn_args, columns, feature_keys: list[str], config: FederatedTrainingConfig, spec=None
) -> None:
    """Saves the serving SavedModel: serialized raw tf.Examples -> (Transform) -> model -> probabilities.
    Without a transform graph, raw features parse as ``spec`` declares them (`declared_spec`), else as read."""
    import tensorflow as tf

    model = model_fn()
    for variable, value in zip(model.trainable_variables, weights, strict=True):
        variable.assign(value)
    module = tf.Module()
    module.model = model
    widths = {k: int(np.prod(np.asarray(columns[k]).shape[1:], dtype=int)) for k in feature_keys}
    if fn_args.transform_output:
        import tensorflow_transform as tft

        tft_output = tft.TFTransformOutput(fn_args.transform_output)
        module.tft_layer = tft_output.transform_features_layer()
        raw_spec = {
            k: v for k, v in tft_output.raw_feature_spec().items() if k not in (config.label_key, config.client_key)
        }
    else:
        integer = (
            {c.name for c in spec if c.kind == "int"}
            if spec is not None
            else {k for k in feature_keys if columns[k].dtype.kind != "f"}
        )
        raw_spec = {
            k: tf.io.FixedLenFeature([widths[k]], tf.int64 if k in integer else tf.float32) for k in feature_keys
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        features = tf.io.parse_example(serialized, raw_spec)
        if fn_args.transform_output:
            features = module.tft_layer(features)
        x = tf.concat([tf.reshape(tf.cast(features[k], tf.float32), [-1, widths[k]]) for k in feature_keys], axis=1)
        probabilities = tf.nn.softmax(module.model(x, training=False))
        return {PREDICTION_KEY: probabilities[:, 1:] if probabilities.shape[-1] == 2 else probabilities}

    tf.saved_model.save(module, fn_args.serving_model_dir, signatures={"serving_default": serve})
