"""The preprocessing records inside a transform graph or a model, and what they account for.

The private analyzers leave their `privacy.preprocessing` records as string constants in the transform
graph; a model that embeds the graph (through ``TFTransformOutput.transform_features_layer``) carries
them too. `records_in_saved_model` finds them in any SavedModel; `transform_graph_account` reads a
Transform output into a `privacy.preprocessing.PreprocessingAccount`. A graph without a coverage record
(a preprocessing_fn not built with `private_preprocessing_fn`) is unaccounted in itself, whatever else is
found (fail closed: a tf.compat.v1 graph keeps its constants where no search here looks); the constants
its TF2 transform function captures and its asset files are listed too, to name the analyzers.
"""

from __future__ import annotations

import os

from pipelines.transform.spec import REPLACEMENTS, replacement_for
from privacy.preprocessing import PreprocessingAccount
from privacy.preprocessing.records import RECORD_PREFIX

TRANSFORM_FN_DIR = "transform_fn"
TRANSFORM_FUNCTION_PREFIX = "__inference_pruned"
"""How a SavedModel names tf.Transform's transform function (TF2 export, or a tf.compat.v1 graph wrapped by
``TFTransformOutput.transform_features_layer``)."""
TRANSFORMED_EXAMPLES_PREFIX = "transformed_examples"
"""How TFX's Transform names the files of its ``transformed_examples`` (tfx.components.transform.executor_utils)."""
NO_TRANSFORM_GRAPH = (
    "the training examples are a Transform's transformed_examples but no transform_graph is given, "
    "so the ledger would miss its preprocessing: pass transform_graph=transform.outputs["
    "'transform_graph']"
)
NO_COVERAGE_RECORD = (
    "the transform graph has no ppml coverage record, so its statistics are exact and unaccounted: "
    "build its preprocessing_fn with pipelines.transform.private_preprocessing_fn"
)


def transformed_without_graph(files: list[str], transform_output: str | None) -> bool:
    """Whether ``files`` (paths, not patterns) include a Transform's ``transformed_examples`` while no transform
    graph (``transform_output``) is given: a private trainer refuses that (`NO_TRANSFORM_GRAPH`)."""
    return not transform_output and any(os.path.basename(f).startswith(TRANSFORMED_EXAMPLES_PREFIX) for f in files)


def records_in_saved_model(saved_model_dir: str) -> list[str]:
    """The texts of every preprocessing record stored as a string constant in the SavedModel (sorted, once each)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.saved_model import loader_impl

    saved_model = loader_impl.parse_saved_model(saved_model_dir)
    prefix = RECORD_PREFIX.encode("utf-8")
    texts = set()
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        for node in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]:
            if node.op == "Const" and node.attr["dtype"].type == types_pb2.DT_STRING:
                texts.update(v.decode("utf-8") for v in node.attr["value"].tensor.string_val if v.startswith(prefix))
    return sorted(texts)


def released_values(saved_model_dir: str) -> dict[str, list[float]]:
    """{release name: the noisy values it released} of the private analyzers recorded in a SavedModel, e.g.
    {'mean_radius/mean_and_var': [noisy count, noisy sum, noisy sum of squares]}."""
    return {
        name: list(values)
        for name, values in PreprocessingAccount.from_texts(records_in_saved_model(saved_model_dir)).releases.items()
    }


def embeds_transform_graph(saved_model_dir: str) -> bool:
    """Whether the SavedModel holds a tf.Transform transform function (a model serving a Transform graph)."""
    from tensorflow.python.saved_model import loader_impl

    return any(
        f.signature.name.startswith(TRANSFORM_FUNCTION_PREFIX)
        for meta_graph in loader_impl.parse_saved_model(saved_model_dir).meta_graphs
        for f in meta_graph.graph_def.library.function
    )


def transform_graph_account(transform_output: str) -> PreprocessingAccount:
    """The account of the Transform output folder ``transform_output`` (with its ``transform_fn``)."""
    saved_model = os.path.join(transform_output, TRANSFORM_FN_DIR)
    texts = records_in_saved_model(saved_model)
    account = PreprocessingAccount.from_texts(texts)
    if account.coverage is not None:
        return account
    return PreprocessingAccount.from_texts(
        texts, unaccounted=_statistics_without_records(saved_model) + [NO_COVERAGE_RECORD]
    )


def _statistics_without_records(saved_model_dir: str) -> list[str]:
    """The constants tf.Transform's TF2 transform function captures (analyzer outputs become captured constants),
    grouped by the tft analyzer whose ops use them, and its asset files.

    A captured tensor enters the traced function as an argument named after its first use (e.g.
    'scale_to_z_score_sub_y'); the traced feature inputs are the arguments named 'inputs...'.
    """
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.saved_model import loader_impl

    uses: dict[str, int] = {}
    for meta_graph in loader_impl.parse_saved_model(saved_model_dir).meta_graphs:
        for function in meta_graph.graph_def.library.function:
            if not function.signature.name.startswith(TRANSFORM_FUNCTION_PREFIX):
                continue
            for arg in function.signature.input_arg:
                if arg.name.startswith("inputs") or arg.type == types_pb2.DT_RESOURCE:
                    continue
                analyzer = max((a for a in REPLACEMENTS if arg.name.startswith(a)), key=len, default=arg.name)
                uses[analyzer] = uses.get(analyzer, 0) + 1
    found = [
        f"{count} constant(s) of the transform graph used by {analyzer} (tft.{analyzer}? use "
        f"{replacement_for(analyzer)})"
        for analyzer, count in sorted(uses.items())
    ]
    assets = os.path.join(saved_model_dir, "assets")
    if tf.io.gfile.isdir(assets):
        found += [
            f"the asset file {name} of the transform graph (a vocabulary? use {replacement_for('vocabulary')})"
            for name in sorted(tf.io.gfile.listdir(assets))
        ]
    return found
