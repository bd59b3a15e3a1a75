"""The few places where Keras 3 (TensorFlow backend) and tf-keras 2.21 differ, behind one interface.

Everything else in `privacy.keras` is written once against `tf` and the attributes both Keras flavours
share. The flavour is read from each object's class, so one process may hold models of both kinds.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import tensorflow as tf
from tensorflow.python.ops import control_flow_util


def is_tf_keras(obj) -> bool:
    """True when ``obj`` (a layer, model, optimizer or loss) comes from tf-keras, False for Keras 3."""
    return any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(obj).__mro__)


def keras_of(obj) -> ModuleType:
    """The Keras package ``obj`` belongs to: `tf_keras` or `keras`."""
    return importlib.import_module("tf_keras" if is_tf_keras(obj) else "keras")


def default_keras() -> ModuleType:
    """The Keras behind `tf.keras` in this process (set by TF_USE_LEGACY_KERAS before TF is imported)."""
    return keras_of(tf.keras.layers.Layer())


def in_xla_context() -> bool:
    """Whether the code being traced will be compiled by XLA (e.g. inside ``jit_compile=True``)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def sublayers(layer) -> list:
    """The layers directly inside ``layer`` (not recursive, not ``layer`` itself)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def own_trainable_variables(layer) -> list:
    """Trainable variables created by ``layer`` itself, not by its sublayers."""
    if not layer.trainable:
        return []
    if is_tf_keras(layer):
        return list(layer._trainable_weights)
    return list(layer._trainable_variables)


def class_call(layer):
    """``layer``'s own `call` method as its class defines it (bypassing instance-level wrappers).

    tf-keras converts subclassed layers' `call` with AutoGraph when it traces them; so do we.
    """
    bound = type(layer).call.__get__(layer)
    if is_tf_keras(layer) and layer._should_use_autograph():
        return tf.__internal__.autograph.tf_convert(bound, tf.__internal__.autograph.control_status_ctx())
    return bound


def call_accepts_training(model) -> bool:
    """Whether ``model.call`` takes a `training` argument."""
    if is_tf_keras(model):
        return model._expects_training_arg
    return model._call_has_training_arg


def update_loss_metric(model, y_pred, loss, count) -> None:
    """Feeds the model's built-in "loss" metric (a weighted mean) with ``loss`` over ``count`` examples."""
    if is_tf_keras(model):
        container = model.compiled_loss
        if not container._built:
            container.build(y_pred)
        metric = container._total_loss_mean
    else:
        metric = model._loss_tracker
    if metric is not None:
        metric.update_state(loss, sample_weight=count)


def loss_weights(model):
    """The ``loss_weights`` given to `compile` (a list, a dict by output name, or None)."""
    container = model.compiled_loss if is_tf_keras(model) else getattr(model, "_compile_loss", None)
    return getattr(container, "_user_loss_weights", None) if container is not None else None


def data_dependent_losses(model) -> list:
    """Losses added with `add_loss` during the last forward pass (activity regularizers and the like)."""
    out = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        out.extend(layer._losses)
    return out


def clear_data_dependent_losses(model) -> None:
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if is_tf_keras(layer):
            layer._clear_losses()
        else:
            layer._losses.clear()


def weight_regularization_loss(model):
    """The sum of the weight regularizers' penalties (a function of the weights only), or None."""
    terms = []
    if is_tf_keras(model):
        for layer in model._flatten_layers(include_self=True, recursive=True):
            terms.extend(fn() for fn in layer._callable_losses)
    else:
        for variable in model.trainable_variables:
            if getattr(variable, "regularizer", None) is not None:
                terms.append(tf.cast(variable.regularizer(variable), tf.float32))
    if not terms:
        return None
    return tf.add_n([tf.cast(t, tf.float32) for t in terms])


def steps_per_execution(model) -> int:
    if is_tf_keras(model):
        value = getattr(model, "_steps_per_execution", None)
        return int(value.numpy()) if value is not None else 1
    return int(getattr(model, "steps_per_execution", 1) or 1)
