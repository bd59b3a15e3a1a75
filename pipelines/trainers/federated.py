"""TFX ``run_fn`` of the Federated Trainer: FedAvg over the training split divided among simulated clients.

The training split (Transform's output when the Trainer has a transform graph, else ExampleGen's) is
read into a `federated.ClientData`, split by the ``client_key`` column or dealt to N clients by each
record's content (`KeyedPartitioner`: one record changes one client), and trained with
`federated.FederatedSimulation` (FedAvg family; client-level DP-FedAvg when ``private``), all built by
the settings' plan (`pipelines.components.federated_trainer.spec`, shared with ``ppml federated run``). The
settings are `pipelines.components.federated_trainer.spec` keys in the Trainer's ``custom_config``.
The model is an MLP on the feature vector (ReLU layers of ``hidden_units``, softmax logits).

Outputs, like the DP Trainer's:

* ``serving_model_dir``: a SavedModel whose ``serving_default`` signature takes serialized raw
  tf.Examples, applies the Transform graph (if any) and returns ``{"probabilities": ...}``
  (P(label = 1), shape [n, 1], for two classes; [n, classes] otherwise);
* for private runs, the privacy ledger (`pipelines.privacy_ledger`, mechanism ``dp-fedavg``) in
  ``serving_model_dir/assets.extra``;
* ``model_run_dir``: the simulation's ``history.json`` (per-round accuracy, epsilon) and ``accuracy.png``.
"""

from __future__ import annotations

import os

import numpy as np

from pipelines import privacy_ledger
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig

PREDICTION_KEY = "probabilities"


def run_fn(fn_args) -> None:
    """Trains on ``fn_args.train_files`` (evaluating on ``fn_args.eval_files``) and exports the model."""
    import federated as fl  # pylint: disable=import-outside-toplevel
    from federated.data.examples import stack_features  # pylint: disable=import-outside-toplevel
    from federated.models import DenseModel  # pylint: disable=import-outside-toplevel

    config = FederatedTrainingConfig.for_trainer(fn_args.custom_config)
    columns = read_split(fn_args.train_files)
    feature_keys = resolve_feature_keys(config, columns)
    data = client_data(config, columns, feature_keys)
    plan = config.plan(data.num_clients)
    eval_columns = read_split(fn_args.eval_files)
    evaluation = (stack_features(eval_columns, feature_keys),
                  _labels(eval_columns, config.label_key))
    num_classes = max(2, data.num_classes, int(evaluation[1].max()) + 1)
    model_fn = DenseModel(data.x.shape[1], num_classes, tuple(config.hidden_units), seed=config.seed)
    algorithm = plan.strategy()
    simulation = fl.FederatedSimulation(model_fn, data, algorithm, rounds=config.rounds,
                                        sampler=config.sampler(), seed=config.seed, evaluation=evaluation,
                                        aggregation=plan.aggregation(algorithm, int(data.sizes().max())),
                                        execution=config.execution)
    history = simulation.run()
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    history.config["title"] = f"Federated Trainer: {history.config['strategy']['name']}, N={data.num_clients}"
    history.save_json(os.path.join(fn_args.model_run_dir, "history.json"))
    history.plot(os.path.join(fn_args.model_run_dir, "accuracy.png"))
    export(model_fn, simulation.state.weights, fn_args, columns, feature_keys, config)
    if plan.private:
        ledger = plan.ledger(simulation.state.budget, rounds=simulation.state.round,
                             trainer={"run_fn": f"{__name__}.run_fn"})
        privacy_ledger.write_ledger(fn_args.serving_model_dir, ledger)


# --- data ------------------------------------------------------------------------------------------
def read_split(file_patterns) -> dict[str, np.ndarray]:
    """All columns of the tf.Example files matching ``file_patterns`` (a TFX split's ``*`` globs)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from federated.data import read_tf_examples  # pylint: disable=import-outside-toplevel
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no example files match {list(file_patterns)}")
    return read_tf_examples(files)


def resolve_feature_keys(config: FederatedTrainingConfig, columns: dict[str, np.ndarray]) -> list[str]:
    """``feature_keys``, or every numeric column but the label and the client key (sorted)."""
    for key, role in ((config.label_key, "label_key"), (config.client_key, "client_key")):
        if key is not None and key not in columns:
            raise ValueError(f"custom_config[{role!r}]: no column {key!r} in the training examples; "
                             f"they have {sorted(columns)}")
    if config.feature_keys is not None:
        return list(config.feature_keys)
    from federated.data.examples import feature_columns  # pylint: disable=import-outside-toplevel
    return feature_columns(columns, (config.label_key, config.client_key))


def client_data(config: FederatedTrainingConfig, columns: dict[str, np.ndarray], feature_keys: list[str]):
    """The training examples as `ClientData`: by the ``client_key`` column, or dealt by record key."""
    from federated.data import ClientData  # pylint: disable=import-outside-toplevel
    from federated.data.examples import stack_features  # pylint: disable=import-outside-toplevel
    keys = columns[config.client_key] if config.client_key else None
    return ClientData.from_arrays(stack_features(columns, feature_keys), _labels(columns, config.label_key),
                                  config.partitioner(), keys=keys)


def _labels(columns, label_key: str) -> np.ndarray:
    from federated.data.examples import class_labels  # pylint: disable=import-outside-toplevel
    return class_labels(columns, label_key, setting="custom_config['label_key']")


# --- export ----------------------------------------------------------------------------------------
def export(model_fn, weights, fn_args, columns, feature_keys: list[str], config: FederatedTrainingConfig) -> None:
    """Saves the serving SavedModel: serialized raw tf.Examples -> (Transform) -> model -> probabilities."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    model = model_fn()
    for variable, value in zip(model.trainable_variables, weights):
        variable.assign(value)
    module = tf.Module()
    module.model = model
    widths = {k: int(np.prod(np.asarray(columns[k]).shape[1:], dtype=int)) for k in feature_keys}
    if fn_args.transform_output:
        import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
        tft_output = tft.TFTransformOutput(fn_args.transform_output)
        module.tft_layer = tft_output.transform_features_layer()
        raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items()
                    if k not in (config.label_key, config.client_key)}
    else:
        raw_spec = {k: tf.io.FixedLenFeature([widths[k]], tf.float32 if columns[k].dtype.kind == "f" else tf.int64)
                    for k in feature_keys}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        features = tf.io.parse_example(serialized, raw_spec)
        if fn_args.transform_output:
            features = module.tft_layer(features)
        x = tf.concat([tf.reshape(tf.cast(features[k], tf.float32), [-1, widths[k]]) for k in feature_keys], axis=1)
        probabilities = tf.nn.softmax(module.model(x, training=False))
        return {PREDICTION_KEY: probabilities[:, 1:] if probabilities.shape[-1] == 2 else probabilities}

    tf.saved_model.save(module, fn_args.serving_model_dir, signatures={"serving_default": serve})
