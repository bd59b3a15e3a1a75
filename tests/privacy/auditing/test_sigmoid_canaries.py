"""The Dirac slot around a sigmoid model (`privacy.auditing.sigmoid_canaries`): a canary row's binary cross-entropy
gradient is exactly -A / 2 on its own slot weight and zero on every other variable; a real row's output is the
wrapped model's and gives the slot no gradient. Checked per row with tf.GradientTape against A = DIRAC_AMPLITUDE."""

import numpy as np
import pytest
import tensorflow as tf

from privacy.auditing.canaries import DIRAC_AMPLITUDE, dirac_slot_rows, with_empty_slot
from privacy.auditing.sigmoid_canaries import CANARY_LABEL, with_sigmoid_slot


def _gradients(model, row: np.ndarray, label: float):
    with tf.GradientTape() as tape:
        output = model(row[None, :])
        loss = tf.keras.losses.BinaryCrossentropy()(np.array([[label]], np.float32), output)
    return output.numpy(), {
        v.name: g.numpy()
        for v, g in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables), strict=True)
    }


def test_a_canary_row_has_a_dirac_gradient_and_a_real_row_none_on_the_slot():
    tf.keras.utils.set_random_seed(3)
    base = tf.keras.Sequential([tf.keras.Input(shape=(3,)), tf.keras.layers.Dense(1, activation="sigmoid")])
    model = with_sigmoid_slot(base, 3, 4)
    canaries = dirac_slot_rows(3, 4, label=int(CANARY_LABEL))
    slot_name = next(name for name in _gradients(model, canaries.x[0], 0.0)[1] if "canary_slot" in name)
    for i in range(4):
        output, grads = _gradients(model, canaries.x[i], CANARY_LABEL)
        assert output[0, 0] == 0.5  # whatever the weights
        expected = np.zeros(4)
        expected[i] = -DIRAC_AMPLITUDE / 2
        np.testing.assert_allclose(grads[slot_name], expected, rtol=1e-6)
        assert all(not np.any(g) for name, g in grads.items() if name != slot_name)
    real = with_empty_slot(np.array([[0.3, -1.0, 2.0]], np.float32))[0]
    output, grads = _gradients(model, real, 1.0)
    assert output[0, 0] == pytest.approx(float(base(real[None, :3])[0, 0]), rel=1e-6)
    assert not np.any(grads[slot_name]) and any(np.any(g) for name, g in grads.items() if name != slot_name)


def test_a_model_without_one_probability_output_is_refused():
    base = tf.keras.Sequential([tf.keras.Input(shape=(3,)), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"must map \[batch, 3\] features to \[batch, 1\] probabilities, got \(1, 2\)"):
        with_sigmoid_slot(base, 3, 4)


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        ([0.0, 1.5], "got a non-integer"),
        ([0.0, -1.0], "got a negative id"),
        ([5.0, 0.0], "got a larger id"),
        ([2.0, 2.0], "got a canary id twice in one batch"),
    ],
    ids=["standardised", "negative", "out of range", "repeated"],
)
def test_canary_ids_the_fit_moved_are_refused(ids, why):
    """A fit that transforms its inputs (e.g. standardises every column) moves canaries off their slots and the
    audit would pass with no power: the head refuses any id column but integers in [0, m], each canary id once."""
    model = with_sigmoid_slot(tf.keras.Sequential([tf.keras.Input(shape=(3,)), tf.keras.layers.Dense(1)]), 3, 4)
    rows = np.zeros((2, 4), np.float32)
    rows[:, 3] = ids
    with pytest.raises(tf.errors.InvalidArgumentError, match=why):
        model(rows)
    rows[:, 3] = [0.0, 4.0]
    model(rows)  # the ids the audit appends
