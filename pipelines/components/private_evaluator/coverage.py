"""The gate's coverage check: does the ledger's epsilon cover everything the model carries?

A model can carry statistics of its training data outside the training's events: the constants of an
embedded Transform graph and of Keras preprocessing layers adapted on data. `artifact_problems` lists
every such statistic no epsilon covers (the ledger's preprocessing account, checked against the
records found in the model itself; a Transform graph in the model without a coverage record; adapted
Keras layers in a tf-keras SavedModel's metadata);
`delta_findings` checks the ledger's delta against 1/n. A model with any problem has, as an artifact,
no finite epsilon.
"""

from __future__ import annotations

import json
import os

from pipelines import privacy_ledger
from pipelines.transform.artifact import NO_COVERAGE_RECORD, embeds_transform_graph, records_in_saved_model
from privacy.accounting import delta_warning
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
    if (carried.mechanisms, carried.coverage, carried.releases) != \
            (accounted.mechanisms, accounted.coverage, accounted.releases):
        problems.append(f"the model carries {len(carried.mechanisms)} preprocessing release record(s) "
                        f"{'and a coverage record ' if carried.coverage else ''}that differ from the "
                        f"{len(accounted.mechanisms)} its ledger accounts: the ledger was written for another "
                        f"Transform graph")
    if carried.coverage is None and embeds_transform_graph(serving_dir):
        problems.append(f"the model embeds a tf.Transform graph without ppml's coverage record (fail closed): "
                        f"{NO_COVERAGE_RECORD}")
    return problems + keras_layer_problems(serving_dir)


def keras_layer_problems(serving_dir: str) -> list[str]:
    """Adapted preprocessing layers among the layers a tf-keras SavedModel records in its Keras metadata."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = os.path.join(serving_dir, KERAS_METADATA)
    if not tf.io.gfile.exists(path):
        return []
    from tf_keras.protobuf import saved_metadata_pb2  # pylint: disable=import-outside-toplevel
    metadata = saved_metadata_pb2.SavedMetadata()
    with tf.io.gfile.GFile(path, "rb") as f:
        metadata.ParseFromString(f.read())
    problems = []
    for node in metadata.nodes:
        if node.identifier != "_tf_keras_layer":
            continue
        try:
            layer = json.loads(node.metadata)
        except json.JSONDecodeError:
            continue
        problem = adapted_layer_problem(layer.get("name", node.node_path), layer.get("class_name", ""),
                                        layer.get("config"))
        if problem:
            problems.append(problem)
    return problems


def delta_findings(ledger: privacy_ledger.PrivacyLedger) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the ledger's delta against 1/n, n the number of privacy units it accounts
    (`privacy.accounting.delta_warning`: at or above 1/n a problem, close to it a warning)."""
    if ledger.mechanism == privacy_ledger.PATE:   # the private split's records (users with a holder key)
        n = ledger.parameters.get("dataset_size")
        if not isinstance(n, int) or n < 1:
            return [], []
    else:
        try:
            n = ledger.accounted_mechanism().dataset_size
        except privacy_ledger.LedgerError:
            return [], []
    unit = ledger.privacy_unit if ledger.mechanism != privacy_ledger.DP_SGD else "example"   # what n counts
    finding = delta_warning(ledger.delta, n, unit=unit)
    if finding is None:
        return [], []
    return ([finding], []) if ledger.delta * n >= 1 else ([], [finding])
