"""The gate's coverage check: does the ledger's epsilon cover everything the model carries?

A model can carry statistics of its training data outside the training's events: the constants of an
embedded Transform graph and of Keras preprocessing layers adapted on data. `artifact_problems` lists
every such statistic no epsilon covers (the ledger's preprocessing account, checked against the
records found in the model itself; a Transform graph in the model without a coverage record; adapted
Keras layers in a tf-keras SavedModel's metadata; Keras' compiled-metric accumulators in any checkpoint
under the pushed folder, which hold exact sums over the training examples unless reset:
`privacy.training_state.metric_state_problems`);
`delta_findings` checks the ledger's delta against 1/n. A model with any problem has, as an artifact,
no finite epsilon.
"""

from __future__ import annotations

import json
import os

from pipelines import privacy_ledger
from pipelines.transform.artifact import NO_COVERAGE_RECORD, embeds_transform_graph, records_in_saved_model
from privacy import training_state
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
    return problems + keras_layer_problems(serving_dir) + training_state.metric_state_problems(serving_dir)


def keras_layer_problems(serving_dir: str) -> list[str]:
    """Adapted preprocessing layers among the layers a tf-keras SavedModel records in its Keras metadata."""
    import tensorflow as tf

    path = os.path.join(serving_dir, KERAS_METADATA)
    if not tf.io.gfile.exists(path):
        return []
    from tf_keras.protobuf import saved_metadata_pb2

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
        problem = adapted_layer_problem(
            layer.get("name", node.node_path), layer.get("class_name", ""), layer.get("config")
        )
        if problem:
            problems.append(problem)
    return problems


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
    return ([finding], []) if ledger.delta * n >= 1 else ([], [finding])
