"""The gate's lineage check: the preprocessing the model's Trainer read is the one its ledger accounts (ML Metadata).

A Trainer can read a Transform's output without embedding its graph in the model (``transformed_examples``
without ``transform_graph``): the model then carries no preprocessing record for the artifact check to find,
but its weights depend on the Transform's statistics. `lineage_problems` follows ML Metadata from the model to
the execution that produced it, then to every Transform execution upstream of that execution's inputs (a
``TransformGraph`` input, or examples a Transform produced), and compares the releases of each such
Transform graph with the ledger's preprocessing part.
"""

from __future__ import annotations

from pipelines import privacy_ledger
from privacy.preprocessing import PreprocessingAccount, RecordError

TRANSFORM_GRAPH_TYPE = "TransformGraph"


def transform_graph_account(uri: str) -> PreprocessingAccount:
    from pipelines.transform.artifact import transform_graph_account as read  # pylint: disable=import-outside-toplevel
    return read(uri)


def open_store(metadata_path: str):
    """A read-only ML Metadata store on the SQLite file ``metadata_path``."""
    from ml_metadata.metadata_store import metadata_store  # pylint: disable=import-outside-toplevel
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def transform_graphs_upstream(store, model_id: int) -> list[str]:
    """URIs of the Transform graphs upstream of the execution that produced the artifact ``model_id``: its
    ``TransformGraph`` inputs and the graphs of the Transform executions that produced its other inputs."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    output, input_ = metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INPUT
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([model_id]) if e.type == output]
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers) if e.type == input_]
    graphs = set()
    for artifact in store.get_artifacts_by_id(inputs):
        if _type_name(store, artifact) == TRANSFORM_GRAPH_TYPE:
            graphs.add(artifact.uri)
            continue
        upstream = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id]) if e.type == output]
        siblings = [e.artifact_id for e in store.get_events_by_execution_ids(upstream) if e.type == output]
        graphs.update(a.uri for a in store.get_artifacts_by_id(siblings)
                      if _type_name(store, a) == TRANSFORM_GRAPH_TYPE)
    return sorted(graphs)


def lineage_problems(store, model_id: int, ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    """Transform graphs the model's Trainer read whose releases (or exact statistics) its ledger does not account."""
    accounted = ledger.preprocessing.account if ledger.preprocessing is not None else PreprocessingAccount()
    problems = []
    for uri in transform_graphs_upstream(store, model_id):
        try:
            account = transform_graph_account(uri)
        except (RecordError, OSError, ValueError) as err:
            problems.append(f"the Transform graph {uri} the model's Trainer read is unreadable: {err}")
            continue
        if not (account.mechanisms or account.coverage or account.unaccounted):
            continue   # it computes nothing from the data
        if (account.mechanisms, account.coverage) != (accounted.mechanisms, accounted.coverage):
            exact = ", exact statistics" if account.unaccounted else ""
            problems.append(f"the model's Trainer read the output of the Transform graph {uri} "
                            f"({len(account.mechanisms)} release(s){exact}), which its ledger does not account (ML "
                            f"Metadata lineage); give the Trainer that transform_graph")
    return problems


def _type_name(store, artifact) -> str:
    [artifact_type] = store.get_artifact_types_by_id([artifact.type_id])
    return artifact_type.name
