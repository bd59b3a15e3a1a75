"""The rules for state training leaves in a model besides its weights, shared by DP-SGD, federated clients
and the pipeline's checks of the files a Trainer writes.

Non-trainable variables updated from training batches (BatchNormalization's moving statistics, a running
mean assigned in a layer's ``call``, an integer counter of the examples seen) hold exact statistics of the
training data: no per-example clipping, noise or client averaging covers them, and the saved model carries
them. Both trainers refuse a model whose training changes one, whatever its dtype, naming it
(`changed_state`). One kind is allowed, by adversary: the state of a Keras 3 ``keras.random.SeedGenerator``
(Dropout, GaussianNoise, random augmentation), a pair (seed, counter) whose counter advances by one per draw
whatever the values drawn on; allowed only when its seed is unchanged and its counter advanced by a
multiple of the steps run (the same draws every step); private fit also refuses a generator drawing another
number of times in a batch than in the first (`uneven_draws_error`), so a layer drawing a data-dependent number
of times passes only if that number is the same in every batch (not detected; Keras' layers draw once per call;
the federated client checks one step only). Optimizer iterations are not the model's variables (public: the
steps run).

Keras' compiled-metric accumulators (the loss and metric totals and their count) are exact sums over the
examples a model was last fitted or evaluated on. tf-keras writes them into every SavedModel (checkpoint keys
``.../metrics/...``), a ModelCheckpoint's included; Keras 3 writes them into none of its formats (.keras,
.weights.h5, ``model.export``). `metric_state_problems` finds them in the TensorFlow checkpoints under a folder,
and in a tf-keras SavedModel the state of every metric its Keras metadata records (a Metric a layer holds and
updates in ``call``, e.g. during ``predict`` on training records, included).
"""

from __future__ import annotations

import numpy as np


def variable_name(variable) -> str:
    """A variable's name with its layer: Keras 3's ``path``, else the TensorFlow name (tf-keras)."""
    return getattr(variable, "path", None) or variable.name


def seed_states(model) -> set[int]:
    """``id`` of the state variable of every Keras 3 SeedGenerator of ``model``'s layers (none on tf-keras)."""
    return {
        id(generator.state)
        for layer in model._flatten_layers(include_self=True, recursive=True)
        for generator in getattr(layer, "_seed_generators", None) or ()
    }


def changed_state(variables, before, after, *, seeds: set[int], steps: int) -> list[str]:
    """Names of ``variables`` (any dtype) whose value in ``after`` differs from ``before`` (aligned lists),
    but a seed generator's state (``id`` in ``seeds``) whose seed is unchanged and whose counter advanced by a
    multiple of ``steps``, the training steps between ``before`` and ``after``."""
    changed = []
    for v, b, a in zip(variables, before, after, strict=True):
        b, a = np.asarray(b), np.asarray(a)
        if np.array_equal(a, b):
            continue
        advance = int(a[1]) - int(b[1]) if a.shape == b.shape == (2,) and a[0] == b[0] else None
        if id(v) in seeds and advance is not None and steps > 0 and advance % steps == 0:
            continue
        changed.append(variable_name(v))
    return changed


def updated_state_error(names: list[str]) -> str:
    """The one-line refusal of a model whose training changes the non-trainable variables ``names``."""
    return (
        f"training updates the model's non-trainable weights {names} (e.g. BatchNormalization statistics, a "
        f"running mean assigned in call(), a counter of the examples seen): exact statistics of the training "
        f"batches that private training neither clips, noises nor averages; use LayerNormalization or "
        f"GroupNormalization, or a model without such state"
    )


def uneven_draws_error(names: list[str]) -> str:
    """The one-line refusal of a fit whose seed generators ``names`` drew a different number of times per step."""
    return (
        f"the seed generators {names} draw a different number of times from one training step to another: a "
        f"count that can depend on the batch (a draw under a condition on the data), which their saved counter "
        f"would carry and private training does not cover; draw a fixed number of times per call (as Dropout does)"
    )


METRIC_SCOPE = "/metrics/"
"""What the checkpoint key of every Keras metric variable contains (``keras_api/metrics/0/total/...``)."""


def checkpoint_prefixes(root: str) -> list[str]:
    """Every TensorFlow checkpoint (its ``.index`` file, without the suffix) under the folder ``root``."""
    import tensorflow as tf

    return sorted(
        f"{folder}/{name[: -len('.index')]}"
        for folder, _, names in tf.io.gfile.walk(root)
        for name in names
        if name.endswith(".index")
    )


def metric_state_problems(root: str) -> list[str]:
    """One line for each TensorFlow checkpoint under ``root`` whose Keras metric variables are not all zero
    (statistics of the examples last fitted or evaluated, which no epsilon covers), or that cannot be read
    (fail closed). Empty when every checkpoint holds none."""
    import tensorflow as tf

    problems = []
    for prefix in checkpoint_prefixes(root):
        try:
            reader = tf.train.load_checkpoint(prefix)
            recorded = _recorded_metric_keys(prefix, reader)
            names = sorted(
                name for name in reader.get_variable_to_shape_map() if METRIC_SCOPE in f"/{name}" or name in recorded
            )
            held = [name.split("/.ATTRIBUTES")[0] for name in names if np.any(reader.get_tensor(name))]
        except (tf.errors.OpError, ValueError, KeyError) as err:
            problems.append(f"the checkpoint {prefix} is unreadable, so its metric state cannot be checked: {err}")
            continue
        if held:
            problems.append(
                f"the checkpoint {prefix} holds Keras metric state {held} (exact sums over the examples last "
                f"fitted or evaluated, e.g. of the loss, and their count), which no epsilon covers: call "
                f"model.reset_metrics() before saving (a private model's fit and evaluate do)"
            )
    return problems


def _recorded_metric_keys(prefix: str, reader) -> set[str]:
    """Checkpoint keys of the variables of every metric a tf-keras SavedModel's Keras metadata records, when
    ``prefix`` is such a model's checkpoint (``<model>/variables/variables``): besides the compiled ones
    (``keras_api/metrics/...``), a Metric held by a layer or the model as an attribute (updated in ``call``, e.g.
    during ``predict``), whose keys need not contain ``/metrics/`` (nor the metric's own path: a variable is saved
    under its shortest path). Found through the checkpoint's object graph; KeyError for a recorded metric the
    graph lacks (fail closed)."""
    import os

    import tensorflow as tf

    metadata_path = os.path.join(os.path.dirname(os.path.dirname(prefix)), "keras_metadata.pb")
    if not prefix.endswith("/variables/variables") or not tf.io.gfile.exists(metadata_path):
        return set()
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    with tf.io.gfile.GFile(metadata_path, "rb") as f:
        metadata.ParseFromString(f.read())
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    keys = set()
    for node in metadata.nodes:
        if node.identifier != "_tf_keras_metric":
            continue
        node_id = 0
        for name in node.node_path.split(".")[1:]:  # "root.layer-0.seen"
            node_id = {child.local_name: child.node_id for child in graph.nodes[node_id].children}[name]
        stack, seen = [node_id], set()
        while stack:  # the metric's variables, and those of any metric inside it
            node_id = stack.pop()
            if node_id not in seen:
                seen.add(node_id)
                keys.update(attribute.checkpoint_key for attribute in graph.nodes[node_id].attributes)
                stack.extend(child.node_id for child in graph.nodes[node_id].children)
    return keys
