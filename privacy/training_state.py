"""The rule for non-trainable state that training changes, shared by DP-SGD and federated clients.

Float non-trainable variables updated from training batches (BatchNormalization's moving statistics, a
running mean assigned in a layer's ``call``) hold exact statistics of the training data: no per-example
clipping, noise or client averaging covers them, and the saved model carries them. Both trainers refuse
a model whose training changes one, naming it. Integer state (random seed generators) is not data.
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
