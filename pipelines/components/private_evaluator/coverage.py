"""The gate's coverage check: does the ledger's epsilon cover everything the model carries?

A model can carry statistics of its training data outside the training's events: the constants of an
embedded Transform graph and of Keras preprocessing layers adapted on data. `artifact_problems` lists
every such statistic no epsilon covers (the ledger's preprocessing account, checked against the
records found in the model itself; a Transform graph in the model without a coverage record; adapted
Keras layers in a tf-keras SavedModel's metadata or a Keras archive's config, and a Keras 3 SavedModel or weights file,
whose layers cannot be seen (`keras_layer_problems`); Keras' compiled-metric accumulators in any checkpoint
under the pushed folder, which hold exact sums over the training examples unless reset:
`privacy.training_state.metric_state_problems`);
`delta_findings` checks the ledger's delta against 1/n. A model with any problem has, as an artifact,
no finite epsilon.
"""

from __future__ import annotations

import json
import os
import zipfile

from pipelines import privacy_ledger
from pipelines.transform.artifact import NO_COVERAGE_RECORD, embeds_transform_graph, records_in_saved_model
from privacy import training_state
from privacy.accounting import delta_below_one_over_n, delta_warning
from privacy.preprocessing import PreprocessingAccount, RecordError, adapted_layer_problem

KERAS_METADATA = "keras_metadata.pb"


def artifact_problems(serving_dir: str, ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    """Every statistic of the training data the model carries that the ledger's epsilon does not cover."""
    accounted = ledger.preprocessing.account if ledger.preprocessing is not None else PreprocessingAccount()
    problems = accounted.problems()
    try:
        carried = PreprocessingAccount.from_texts(records_in_saved_model(serving_dir))
    except RecordError as err:
        return problems + [f"the model's preprocessing records are unreadable: {err}"]
    if (carried.mechanisms, carried.coverage, carried.releases) != (
        accounted.mechanisms,
        accounted.coverage,
        accounted.releases,
    ):
        problems.append(
            f"the model carries {len(carried.mechanisms)} preprocessing release record(s) "
            f"{'and a coverage record ' if carried.coverage else ''}that differ from the "
            f"{len(accounted.mechanisms)} its ledger accounts: the ledger was written for another "
            f"Transform graph"
        )
    if carried.coverage is None and embeds_transform_graph(serving_dir):
        problems.append(
            f"the model embeds a tf.Transform graph without ppml's coverage record (fail closed): {NO_COVERAGE_RECORD}"
        )
    return problems + keras_layer_problems(serving_dir, ledger) + training_state.metric_state_problems(serving_dir)


def keras_layer_problems(serving_dir: str, ledger: privacy_ledger.PrivacyLedger | None = None) -> list[str]:
    """Adapted preprocessing layers among the layers recorded under ``serving_dir``, nested folders included: in
    every tf-keras SavedModel's Keras metadata, and in the config of every Keras archive, found by content, not
    name (a zip holding ``config.json``: ``.keras``; an HDF5 file holding ``model_config``: a full-model ``.h5``).
    For a DP-SGD ledger (a model of the author's run_fn) what records no layer classes is refused, saying so
    (fail closed): a Keras 3 SavedModel (``model.export``, or ``tf.saved_model.save`` of a Keras 3 model) at any
    depth, and an HDF5 file without a model config (``.weights.h5``: weights whose layers cannot be seen). The
    Federated Trainer's export holds ppml's own dense model, built with no preprocessing layer."""
    import tensorflow as tf

    dp_sgd = ledger is not None and ledger.mechanism == privacy_ledger.DP_SGD
    problems = []
    for folder, _, names in tf.io.gfile.walk(serving_dir):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name == KERAS_METADATA:
                problems += [_layer_problem(*layer) for layer in _metadata_layers(path)]
            elif name == "saved_model.pb" and dp_sgd and _keras3_saved_model(folder):
                problems.append(f"{folder}: {KERAS3_UNINSPECTABLE}")
            else:
                try:
                    config = _archive_config(path)
                except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, tf.errors.OpError) as err:
                    problems.append(f"the Keras archive {path} is unreadable, so its layers cannot be checked: {err}")
                    continue
                if config is _NO_CONFIG and dp_sgd:
                    problems.append(f"{path}: {WEIGHTS_UNINSPECTABLE}")
                elif config not in (None, _NO_CONFIG):
                    problems += [_layer_problem(*layer) for layer in _config_layers(config)]
    return [problem for problem in problems if problem]


KERAS3_UNINSPECTABLE = (
    "a Keras 3 SavedModel (model.export or tf.saved_model.save of a Keras 3 model), which records "
    "no layer classes or configs: the gate cannot check it for preprocessing layers adapted on the training data "
    "or the constants they carry (fail closed); save the serving model with tf-keras "
    "(model.save(dir, save_format='tf')), whose Keras metadata the gate reads"
)
WEIGHTS_UNINSPECTABLE = (
    "an HDF5 file without a model config (e.g. .weights.h5): the layers its weights belong to cannot be checked for "
    "preprocessing layers adapted on the training data (fail closed); save the whole model (.keras) or leave the "
    "file out of the serving model"
)
KERAS3_MARKERS = ("_all_variables", "call_signature_parameters")
"""Names of children in a SavedModel's object graph that only Keras 3 writes: the archive of ``model.export``,
and an attribute of every Keras 3 layer."""
_ZIP, _HDF5 = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"
_NO_CONFIG = object()
"""`_archive_config` of an HDF5 file that holds weights without a model config."""


def _layer_problem(name: str, class_name: str, config) -> str | None:
    return adapted_layer_problem(name, class_name, config if isinstance(config, dict) else None)


def _metadata_layers(path: str):
    """(name, class name, config) of every layer a tf-keras SavedModel's ``keras_metadata.pb`` records."""
    import tensorflow as tf
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    with tf.io.gfile.GFile(path, "rb") as f:
        metadata.ParseFromString(f.read())
    for node in metadata.nodes:
        if node.identifier != "_tf_keras_layer":
            continue
        try:
            layer = json.loads(node.metadata)
        except json.JSONDecodeError:
            continue
        yield layer.get("name", node.node_path), layer.get("class_name", ""), layer.get("config")


def _archive_config(path: str):
    """The model config (parsed JSON) of the Keras archive at ``path``, whatever its name: a zip archive's
    ``config.json`` (``.keras``), an HDF5 file's ``model_config`` attribute (a full-model ``.h5``), `_NO_CONFIG`
    for an HDF5 file without one; None for any other file (a ``.keras`` file that is neither is unreadable:
    BadZipFile)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        magic = f.read(8)
        if magic.startswith(_ZIP) or path.endswith(".keras"):
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                if "config.json" not in archive.namelist() and not path.endswith(".keras"):
                    return None  # another zip file (no Keras archive)
                return json.loads(archive.read("config.json"))
        if magic != _HDF5:
            return None
        import h5py

        f.seek(0)
        with h5py.File(f, "r") as h5:
            config = h5.attrs.get("model_config")
    if config is None:
        return _NO_CONFIG
    return json.loads(config.decode() if isinstance(config, bytes) else config)


def _config_layers(config) -> list[tuple]:
    """(name, class name, config) of every layer, nested ones included, in a Keras model config."""
    stack, layers = [config], []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
                layers.append((node["config"].get("name", node["class_name"]), node["class_name"], node["config"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return layers


def _keras3_saved_model(folder: str) -> bool:
    """Whether ``folder`` holds a SavedModel without tf-keras metadata whose object graph Keras 3 wrote."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    if tf.io.gfile.exists(os.path.join(folder, KERAS_METADATA)):
        return False
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(folder, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    return any(
        child.local_name in KERAS3_MARKERS
        for graph in saved.meta_graphs
        for node in graph.object_graph_def.nodes
        for child in node.children
    )


PATE_DELTA_UNCHECKED = (
    "delta={delta:g} is not checked against 1/n: a PATE ledger publishes no count of its private records (private; "
    "its epsilon does not use it); choose delta well below 1/n of the private data yourself"
)
"""The warning of every PATE ledger's delta check (the same for every data set)."""


def delta_findings(
    ledger: privacy_ledger.PrivacyLedger, privacy_unit: str | None = None
) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the ledger's delta against 1/n, n the number of privacy units it accounts
    (`privacy.accounting.delta_warning`: at or above 1/n a problem, close to it a warning). For a budget per
    example (``privacy_unit``) met by a keyed client-level ledger's record-level figure, n is the public bound
    on its records (N x max_examples_per_client; without one the figure meets no such budget at all). A PATE
    ledger carries no n (its epsilon does not use one, and the private split's count is private): its delta is
    judged against no n, a warning that says so, never a problem decided by the private data."""
    if ledger.mechanism == privacy_ledger.PATE:
        return [], [PATE_DELTA_UNCHECKED.format(delta=ledger.delta)]
    try:
        n = ledger.accounted_mechanism().dataset_size
    except privacy_ledger.LedgerError:
        return [], []
    unit = ledger.privacy_unit if ledger.mechanism != privacy_ledger.DP_SGD else "example"  # what n counts
    if privacy_unit == "example" and ledger.record_count_bound() is not None:
        n, unit = ledger.record_count_bound(), "record"
    finding = delta_warning(ledger.delta, n, unit=unit)
    if finding is None:
        return [], []
    return ([], [finding]) if delta_below_one_over_n(ledger.delta, n) else ([finding], [])
