"""The rules for state training leaves in a model besides its weights, shared by DP-SGD, federated clients
and the pipeline's checks of the files a Trainer writes.

Float non-trainable variables updated from training batches (BatchNormalization's moving statistics, a
running mean assigned in a layer's ``call``) hold exact statistics of the training data: no per-example
clipping, noise or client averaging covers them, and the saved model carries them. Both trainers refuse
a model whose training changes one, naming it. Integer state (random seed generators) is not data.

Keras' compiled-metric accumulators (the loss and metric totals and their count) are exact sums over the
examples a model was last fitted or evaluated on. tf-keras writes them into every SavedModel (checkpoint keys
``.../metrics/...``), a ModelCheckpoint's included; Keras 3 writes them into none of its formats (.keras,
.weights.h5, ``model.export``). `metric_state_problems` finds them in the TensorFlow checkpoints under a folder.
"""

from __future__ import annotations

import numpy as np


def variable_name(variable) -> str:
    """A variable's name with its layer: Keras 3's ``path``, else the TensorFlow name (tf-keras)."""
    return getattr(variable, "path", None) or variable.name


def is_float(variable) -> bool:
    return "float" in str(variable.dtype) or "bfloat" in str(variable.dtype)


def changed_float_state(variables, before, after) -> list[str]:
    """Names of the float ``variables`` whose value in ``after`` differs from ``before`` (aligned lists)."""
    return [
        variable_name(v)
        for v, a, b in zip(variables, before, after)
        if is_float(v) and not np.array_equal(np.asarray(a), np.asarray(b))
    ]


def updated_state_error(names: list[str]) -> str:
    """The one-line refusal of a model whose training changes the float non-trainable variables ``names``."""
    return (
        f"training updates the model's non-trainable weights {names} (e.g. BatchNormalization statistics, a "
        f"running mean assigned in call()): exact statistics of the training batches that private training "
        f"neither clips, noises nor averages; use LayerNormalization or GroupNormalization, or a model "
        f"without such state"
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
            names = sorted(name for name in reader.get_variable_to_shape_map() if METRIC_SCOPE in f"/{name}")
            held = [name.split("/.ATTRIBUTES")[0] for name in names if np.any(reader.get_tensor(name))]
        except (tf.errors.OpError, ValueError) as err:
            problems.append(f"the checkpoint {prefix} is unreadable, so its metric state cannot be checked: {err}")
            continue
        if held:
            problems.append(
                f"the checkpoint {prefix} holds Keras metric state {held} (exact sums over the examples last "
                f"fitted or evaluated, e.g. of the loss, and their count), which no epsilon covers: call "
                f"model.reset_metrics() before saving (a private model's fit and evaluate do)"
            )
    return problems
