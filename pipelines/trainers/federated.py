"""TFX ``run_fn`` of the Federated Trainer: FedAvg over the training split divided among simulated clients.

The training split (Transform's output when the Trainer has a transform graph, else ExampleGen's) is
read into a `federated.ClientData`, split by the ``client_key`` column or a partitioner, and trained
with `federated.FederatedSimulation` (FedAvg family; client-level DP-FedAvg when ``private``). The
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
from typing import Any

import numpy as np

from pipelines import privacy_ledger
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, FederatedTrainingPlan

PREDICTION_KEY = "probabilities"


def run_fn(fn_args) -> None:
    """Trains on ``fn_args.train_files`` (evaluating on ``fn_args.eval_files``) and exports the model."""
    import federated as fl  # pylint: disable=import-outside-toplevel
    from federated.data.examples import stack_features  # pylint: disable=import-outside-toplevel
    from federated.models import DenseModel  # pylint: disable=import-outside-toplevel

    config = FederatedTrainingConfig.from_custom_config(fn_args.custom_config)
    columns = read_split(fn_args.train_files)
    feature_keys = resolve_feature_keys(config, columns)
    data = client_data(config, columns, feature_keys)
    preprocessing = None
    if config.private and fn_args.transform_output:
        from pipelines.transform.artifact import transform_graph_account  # pylint: disable=import-outside-toplevel
        preprocessing = transform_graph_account(fn_args.transform_output)
    plan = config.plan(data.num_clients, preprocessing=preprocessing, largest_client=int(data.sizes().max()))
    eval_columns = read_split(fn_args.eval_files)
    evaluation = (stack_features(eval_columns, feature_keys),
                  _labels(eval_columns, config.label_key))
    num_classes = max(2, data.num_classes, int(evaluation[1].max()) + 1)
    model_fn = DenseModel(data.x.shape[1], num_classes, tuple(config.hidden_units), seed=config.seed)
    algorithm = strategy(config, plan)
    simulation = fl.FederatedSimulation(model_fn, data, algorithm, rounds=config.rounds,
                                        sampler=config.sampler(), seed=config.seed, evaluation=evaluation,
                                        aggregation=_aggregation(config, algorithm, int(data.sizes().max())),
                                        execution=config.execution)
    history = simulation.run()
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    history.config["title"] = f"Federated Trainer: {history.config['strategy']['name']}, N={data.num_clients}"
    history.save_json(os.path.join(fn_args.model_run_dir, "history.json"))
    history.plot(os.path.join(fn_args.model_run_dir, "accuracy.png"))
    export(model_fn, simulation.state.weights, fn_args, columns, feature_keys, config)
    if plan.private:
        privacy_ledger.write_ledger(fn_args.serving_model_dir,
                                    ledger(plan, simulation.state.budget, rounds=simulation.state.round))


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
    """The training examples as `ClientData`: by the ``client_key`` column, or by the partitioner."""
    from federated.data import ClientData  # pylint: disable=import-outside-toplevel
    from federated.data.examples import stack_features  # pylint: disable=import-outside-toplevel
    from federated.partitioners import partitioner_for  # pylint: disable=import-outside-toplevel
    name = "natural" if config.client_key else config.partition
    partitioner = partitioner_for(name, num_clients=config.num_clients, seed=config.seed, alpha=config.alpha,
                                  shards_per_client=config.shards_per_client)
    keys = columns[config.client_key] if config.client_key else None
    return ClientData.from_arrays(stack_features(columns, feature_keys), _labels(columns, config.label_key),
                                  partitioner, keys=keys)


def _labels(columns, label_key: str) -> np.ndarray:
    from federated.data.examples import class_labels  # pylint: disable=import-outside-toplevel
    return class_labels(columns, label_key, setting="custom_config['label_key']")


# --- the algorithm ---------------------------------------------------------------------------------
def strategy(config: FederatedTrainingConfig, plan: FederatedTrainingPlan):
    """The FedAvg-family strategy of ``config`` (wrapped in DP-FedAvg for a private plan)."""
    from federated import ClientConfig  # pylint: disable=import-outside-toplevel
    from federated.strategies import build_strategy, with_client_dp  # pylint: disable=import-outside-toplevel
    client = ClientConfig(epochs=config.local_epochs, batch_size=config.batch_size,
                          learning_rate=config.client_learning_rate)
    algorithm = build_strategy(config.server_optimizer, client, weighted=not plan.private,
                               server_learning_rate=config.server_learning_rate)
    if not plan.private:
        return algorithm
    return with_client_dp(algorithm, clip=config.clip, clipping_norm=config.clipping_norm,
                          noise_multiplier=plan.mechanism.noise_multiplier, target_delta=plan.delta,
                          max_epsilon=config.max_epsilon, accountant=config.accountant,
                          secure_noise=True)  # a released model: noise nobody can regenerate from the ledger


def _aggregation(config: FederatedTrainingConfig, algorithm, max_client_size: int):
    """Secure aggregation when asked: coordinates clipped to the strategy's `secure_aggregation_range`,
    quantized to 32 bits."""
    if not config.secure_aggregation:
        return None
    from federated.aggregation import SecureAggregation  # pylint: disable=import-outside-toplevel
    return SecureAggregation(clipping_range=algorithm.secure_aggregation_range(max_client_size), bits=32,
                             modulus_bits=48)


def ledger(plan: FederatedTrainingPlan, budget, *, rounds: int) -> privacy_ledger.PrivacyLedger:
    """The ledger of a DP-FedAvg run of ``rounds`` rounds (the budget the simulation composed), with the
    plan's preprocessing releases composed before the rounds.

    Raises:
      privacy_ledger.LedgerError: if ``budget`` does not account exactly those rounds of the plan.
    """
    mechanism = plan.mechanism.replace(steps=rounds)
    budget = privacy_ledger.with_preprocessing(budget, mechanism, privacy_ledger.accountant_delta_of(
        plan.delta, plan.preprocessing), plan.preprocessing)
    parameters: dict[str, Any] = {
        "unit": "client", "dataset_size": plan.num_clients, "batch_size": mechanism.batch_size,
        "noise_multiplier": mechanism.noise_multiplier, "steps": rounds, "sampling": mechanism.sampling.value,
        "adjacency": mechanism.adjacency.value, "l2_norm_clip": plan.config.clipping_norm, "clip": plan.config.clip,
        "delta_is_default": plan.config.delta is None, "noise": "CSPRNG-seeded"}
    return privacy_ledger.PrivacyLedger(budget=budget, mechanism=privacy_ledger.DP_FEDAVG, parameters=parameters,
                                        trainer={"run_fn": f"{__name__}.run_fn",
                                                 "settings": plan.config.to_custom_config()},
                                        preprocessing=plan.preprocessing)


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
