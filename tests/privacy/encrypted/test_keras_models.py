"""Private prediction of trained Keras models against plaintext Keras and the fixed-point simulation."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from privacy.encrypted import (  # noqa: E402
    InProcessCluster,
    InputBounds,
    UnsupportedModelError,
    import_keras_model,
    simulate,
)
from privacy.encrypted.model.activations import SIGMOID_MAX_ERROR  # noqa: E402
from privacy.encrypted.protocol.client import encode_input  # noqa: E402


def cluster_for(model, x):
    """An in-process cluster serving `model`, with input bounds calibrated on `x`."""
    plan = import_keras_model(model)
    return InProcessCluster(plan, InputBounds.from_data(x, plan.architecture.input_shape), allow_logits=True)


def check_against_keras_and_simulation(model, x):
    plan = import_keras_model(model)
    cluster = InProcessCluster(plan, InputBounds.from_data(x, plan.architecture.input_shape), allow_logits=True)
    got = cluster.predict(x, output="logits")
    expected = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    labels = (expected[:, 0] > 0.5) if expected.shape[1] == 1 else expected.argmax(1)
    assert np.array_equal(got.labels, labels)
    assert np.abs(got.outputs - expected).max() <= 1e-3
    sim = simulate(
        plan.architecture,
        plan.encode(cluster.fixed),
        encode_input(x, plan.architecture.input_shape, cluster.fixed),
        cluster.fixed,
    )
    frac = (2 if sim.logits.wide else 1) * cluster.fixed.frac_bits
    assert np.array_equal(np.rint(got.logits * 2.0**frac).astype(np.int64), sim.logits.point)  # exact
    only_labels = cluster.predict(x, output="label")
    assert only_labels.outputs is None and np.array_equal(only_labels.labels, got.labels)
    return cluster


def test_tabular_mlp_with_sigmoid_output(tabular):
    check_against_keras_and_simulation(*tabular)


def test_digits_mlp_with_batch_norm_folded_and_softmax_output(digits_mlp):
    cluster = check_against_keras_and_simulation(*digits_mlp)
    assert [layer.name for layer in cluster.architecture.layers] == [
        "hidden",
        "hidden.relu",
        "narrow",
        "act.relu",
        "out",
    ]
    cost = cluster.last_cost  # of the label-only prediction
    # A ReLU takes 3 rounds (the truncation's round carries the comparison's first message), the next
    # Dense 1 (re-sharing its input); the logits are opened untruncated; the label of 10 classes: all 45
    # pairs compared at once, a one-hot vector (5 rounds, `layers.one_hot_argmax`).
    assert {name: c["rounds"] for name, c in cost.layers.items()} == {
        "hidden.relu": 3,
        "narrow": 1,
        "act.relu": 3,
        "out": 1,
        "label": 5,
    }


def test_functional_cnn_with_pooling_and_batch_norm(digits_cnn):
    check_against_keras_and_simulation(*digits_cnn)


def test_hidden_sigmoid_is_piecewise_linear_within_its_error(train):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(8, activation="sigmoid", name="squash")(inputs)
    model = train(
        keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden)),
        x,
        y,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        2,
    )
    plan = import_keras_model(model)
    got = (
        InProcessCluster(plan, InputBounds.declared(0.0, 1.0, (64,)), allow_logits=True)
        .predict(x[:40], output="logits")
        .logits
    )
    # Logit error = sum_j |w_j| * (sigmoid error) plus fixed-point rounding.
    kernel = plan.weights["logits"][0]
    bound = np.abs(kernel).sum(axis=0).max() * SIGMOID_MAX_ERROR + 1e-3
    assert np.abs(got - model.predict(x[:40], verbose=0)).max() <= bound


def test_wrong_input_shape_is_named(digits_mlp):
    cluster = cluster_for(*digits_mlp)
    with pytest.raises(ValueError, match=r"input has shape \(2, 63\), expected \(batch,\) \+ \(64,\)"):
        cluster.predict(np.zeros((2, 63)))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(2, name="memory")]), "'memory' \\(LSTM\\)"),
        (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh", name="d")]), "'tanh'"),
        (
            lambda: keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(3, activation="softmax"), keras.layers.Dense(2)]
            ),
            "softmax",
        ),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((4,)),
                    keras.layers.Dense(3, activation="relu"),
                    keras.layers.BatchNormalization(name="bn"),
                ]
            ),
            "'bn'.*folded",
        ),
        (
            lambda: keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, dilation_rate=2, name="c")]),
            "'c'.*dilated",
        ),
    ],
)
def test_unsupported_models_are_rejected_with_the_layer_named(build, message):
    with pytest.raises(UnsupportedModelError, match=message):
        import_keras_model(build())


def test_branching_functional_model_is_rejected():
    inputs = keras.Input((4,))
    a, b = keras.layers.Dense(3)(inputs), keras.layers.Dense(3)(inputs)
    model = keras.Model(inputs, keras.layers.Add(name="join")([a, b]))
    with pytest.raises(UnsupportedModelError, match="'dense_\\d+'.*takes inputs from|'join'"):
        import_keras_model(model)


TF_KERAS_SCRIPT = """
import numpy as np, tf_keras as keras
from sklearn.datasets import load_digits
from privacy.encrypted import InProcessCluster, InputBounds, import_keras_model
x, y = load_digits(return_X_y=True); x = (x / 16.0).astype("float32")
keras.utils.set_random_seed(0)
seq = keras.Sequential([keras.layers.InputLayer(input_shape=(64,)), keras.layers.Dense(16),
                        keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                        keras.layers.Dense(10, activation="softmax")])
inputs = keras.Input((8, 8, 1)); h = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
h = keras.layers.MaxPooling2D(2)(h); h = keras.layers.Flatten()(h)
fun = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
for model, data in ((seq, x[:40]), (fun, x[:40].reshape(-1, 8, 8, 1))):
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data if model is fun else x, y if model is seq else y[:40], epochs=2, verbose=0)
    got = InProcessCluster(import_keras_model(model), InputBounds.declared(0, 1, data.shape[1:]),
                           allow_logits=True).predict(data, output="logits")
    ref = model.predict(data, verbose=0)
    assert (got.labels == ref.argmax(1)).all(), "labels differ"
    assert np.abs(got.outputs - ref).max() <= 1e-3, np.abs(got.outputs - ref).max()
print("ok", keras.__version__)
"""


def test_tf_keras_sequential_and_functional_models(python_subprocess):
    result = python_subprocess(TF_KERAS_SCRIPT, legacy_keras=True, timeout=300)
    assert result.stdout.strip().startswith("ok 2.")


def test_verify_decides_a_single_linear_output_at_logit_zero():
    """A one-unit model with a linear output gives logits: class 1 means logit > 0, not > 0.5."""
    from privacy.encrypted.verify import verify_model

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.layers[-1].set_weights([np.array([[1.0], [0.0]]), np.zeros(1)])
    x = np.array([[0.25, 0.0], [-0.25, 0.0], [0.75, 0.0], [-0.75, 0.0]])
    y = np.array([1, 0, 1, 0])
    report = verify_model(model, x, y, cluster_for(model, x))
    assert report.plaintext_accuracy == report.encrypted_accuracy == 1.0 and report.decision_agreement == 1.0


def test_verify_compares_labels_for_a_model_whose_logits_cannot_be_released():
    """Logits of about 2^31 (2^63 in 2f = 32 fractional bits: a constant hidden unit of 2^16 weighted 2^15 into both
    classes) cannot be released, but labels can: verified on labels, with no output error to report."""
    from privacy.encrypted import LogitsOutOfRange
    from privacy.encrypted.verify import verify_model

    model = keras.Sequential(
        [
            keras.Input((2,), dtype="float64"),
            keras.layers.Dense(2, "relu", dtype="float64"),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    model.layers[0].set_weights([np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.0, 2.0**16])])
    model.layers[1].set_weights([np.array([[0.0, 1.0], [2.0**15, 2.0**15]]), np.array([0.5, 0.0])])
    x = np.array([[0.25, 0.0], [1.0, 0.5], [0.75, 0.0], [0.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    plan = import_keras_model(model)
    bounds = InputBounds.from_data(x, (2,))
    with pytest.raises(LogitsOutOfRange):
        InProcessCluster(plan, bounds, allow_logits=True)
    report = verify_model(model, x, y, InProcessCluster(plan, bounds), output="label")
    assert (report.output, report.max_abs_error, report.decision_agreement, report.encrypted_accuracy) == (
        "label",
        None,
        1.0,
        1.0,
    )
    assert "not measured (labels only)" in report.format_text()
