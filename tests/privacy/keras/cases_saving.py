"""A private model saved before its first step trains as one never saved (the class's call tf-keras's saving leaves
on each layer is recorded), and a caller's wrapper of a layer's call is not taken for that class call."""

import os
import tempfile

import numpy as np
import tensorflow as tf

from privacy.keras import compat, make_private

K = compat.default_keras()
L = K.layers


def _trained_weights(save) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The initial weights and those after one seeded private epoch of a fresh seeded model, ``save(model,
    folder)`` run before the epoch."""
    K.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, size=32)
    model = K.Sequential([K.Input((4,)), L.Dense(3, activation="relu"), L.Dense(2)])
    model.compile(optimizer=K.optimizers.SGD(0.5), loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=8, dataset_size=32, seed=3)
    initial = model.get_weights()
    with tempfile.TemporaryDirectory() as folder:
        save(model, os.path.join(folder, "saved"))
        model.fit(x, y, epochs=1, verbose=0)
    return initial, model.get_weights()


def _export(model, folder):
    """The flavour's SavedModel export: tf-keras's `model.save` to a folder, Keras 3's `model.export`."""
    if compat.is_tf_keras(model):
        model.save(folder)
    else:
        model.export(folder)


def case_a_model_saved_before_its_first_step_trains_as_one_never_saved():
    """tf-keras's SavedModel saving leaves each layer's own `call` bound on the layer; the recorder took that for a
    caller's wrapper, recorded no layer call and refused every weight as read outside its layer."""
    initial, unsaved = _trained_weights(lambda model, folder: None)
    assert not np.array_equal(initial[0], unsaved[0])  # the epoch ran
    for save in (_export, lambda model, folder: tf.saved_model.save(model, folder)):
        saved_initial, saved = _trained_weights(save)
        for a, b in zip(initial + unsaved, saved_initial + saved, strict=True):
            np.testing.assert_array_equal(a, b)


def case_a_callers_proxy_of_the_class_call_is_not_taken_for_it():
    """A caller's wrapper set as a layer's own `call` changes what the model computes; wrapt's proxy (TensorFlow
    installs wrapt) passes on the bound method's ``__self__`` and ``__func__``. The recorder must not replace it with
    the class's call (training a model other than the one the caller calls): the fit is refused, as for any wrapper.
    The class's call bound on the layer itself (what tf-keras's saving leaves) is still taken for it."""
    import types

    import wrapt

    from privacy.keras import DPConfigurationError, recording

    @wrapt.decorator
    def doubled(wrapped, instance, args, kwargs):
        return 2.0 * wrapped(*args, **kwargs)

    dense = L.Dense(2)
    model = K.Sequential([K.Input((4,)), dense])
    dense.call = doubled(dense.call)
    x = np.ones((8, 4), "float32")
    np.testing.assert_allclose(model(x).numpy(), 2.0 * (x @ dense.kernel.numpy() + dense.bias.numpy()), rtol=1e-6)
    assert dense.call.__self__ is dense and dense.call.__func__ is type(dense).call
    assert not recording._is_class_call(dense, vars(dense)["call"])
    assert recording._is_class_call(dense, types.MethodType(type(dense).call, dense))
    model.compile(optimizer=K.optimizers.SGD(0.5), loss="mse")
    make_private(model, l2_norm_clip=1.0, noise_multiplier=1.0, expected_batch_size=8, dataset_size=8, seed=3)
    try:
        model.fit(x, np.zeros((8, 2), "float32"), epochs=1, verbose=0)
    except DPConfigurationError as err:
        assert "outside the layer that owns them" in str(err), str(err)
    else:
        raise AssertionError("a fit recorded the class's call in place of the caller's wrapper")
