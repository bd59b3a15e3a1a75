"""The gate's lineage check: the preprocessing the model's Trainer read is the one its ledger accounts (ML Metadata).

A Trainer can read a Transform's output without embedding its graph in the model (``transformed_examples``
without ``transform_graph``): the model then carries no preprocessing record for the artifact check to find,
but its weights depend on the Transform's statistics. `lineage_problems` walks ML Metadata's whole upstream
subgraph of the model (artifact -> the executions that output it -> their inputs -> ..., any number of
hops, so a filter, a sampler or an Importer between Transform and Trainer hides nothing), collects every
``TransformGraph`` an upstream execution read or wrote, and compares each graph's mechanisms, coverage AND
released values with the ledger's preprocessing part: a graph of another Transform run (fresh noise on the
same data) is a second release the ledger does not account.
"""

from __future__ import annotations

from pipelines import privacy_ledger
from privacy.preprocessing import PreprocessingAccount, RecordError

TRANSFORM_GRAPH_TYPE = "TransformGraph"


def transform_graph_account(uri: str) -> PreprocessingAccount:
    from pipelines.transform.artifact import transform_graph_account as read

    return read(uri)


def open_store(metadata_path: str):
    """A read-only ML Metadata store on the SQLite file ``metadata_path``."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def transform_graphs_upstream(store, model_id: int) -> list[str]:
    """URIs of the Transform graphs anywhere upstream of the artifact ``model_id``: every ``TransformGraph`` an
    execution in its upstream subgraph read or wrote."""
    from ml_metadata.proto import metadata_store_pb2

    output, input_ = metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INPUT
    seen_artifacts, seen_executions, frontier = {model_id}, set(), [model_id]
    while frontier:
        producers = {e.execution_id for e in store.get_events_by_artifact_ids(frontier) if e.type == output}
        producers -= seen_executions
        seen_executions |= producers
        events = store.get_events_by_execution_ids(sorted(producers)) if producers else []
        inputs = {e.artifact_id for e in events if e.type == input_} - seen_artifacts
        seen_artifacts |= {e.artifact_id for e in events}  # outputs too: a Transform's graph beside its examples
        frontier = sorted(inputs)
    return sorted(
        {
            a.uri
            for a in store.get_artifacts_by_id(sorted(seen_artifacts))
            if _type_name(store, a) == TRANSFORM_GRAPH_TYPE
        }
    )


def lineage_problems(store, model_id: int, ledger: privacy_ledger.PrivacyLedger) -> list[str]:
    """Transform graphs upstream of the model whose releases (or exact statistics) its ledger does not account:
    their mechanisms, coverage or released values differ from the ledger's preprocessing part."""
    accounted = ledger.preprocessing.account if ledger.preprocessing is not None else PreprocessingAccount()
    problems = []
    for uri in transform_graphs_upstream(store, model_id):
        try:
            account = transform_graph_account(uri)
        except (RecordError, OSError, ValueError) as err:
            problems.append(f"the Transform graph {uri} upstream of the model is unreadable: {err}")
            continue
        if not (account.mechanisms or account.coverage or account.unaccounted):
            continue  # it computes nothing from the data
        if (account.mechanisms, account.coverage) != (accounted.mechanisms, accounted.coverage):
            exact = ", exact statistics" if account.unaccounted else ""
            problems.append(
                f"the model's Trainer read the output of the Transform graph {uri} "
                f"({len(account.mechanisms)} release(s){exact}), which its ledger does not account (ML "
                f"Metadata lineage); give the Trainer that transform_graph"
            )
        elif account.releases != accounted.releases:
            problems.append(
                f"the Transform graph {uri} upstream of the model released other values than the ones "
                f"its ledger accounts (another Transform run: a second release of the same "
                f"statistics, ML Metadata lineage); train on one Transform run's outputs"
            )
    return problems


def _type_name(store, artifact) -> str:
    [artifact_type] = store.get_artifact_types_by_id([artifact.type_id])
    return artifact_type.name
