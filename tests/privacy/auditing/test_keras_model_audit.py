"""`privacy.auditing.run_dp_sgd_audit(..., build_model=...)`: a one-run audit of a Keras model of the caller's, on the
caller's data. The model built is the one trained; its claims are recomputed from dp-accounting; an honest run
bounds below its claim and a noiseless one above it; a model with the wrong output is refused before training."""

import dp_accounting as dpa
import numpy as np
import pytest
import tensorflow as tf

from privacy.auditing import AuditPlan, run_dp_sgd_audit

PLAN = dict(num_canaries=300, epochs=4, batch_size=100, noise_multiplier=2.0, delta=1e-5)
"""About 750 rows with the canaries, 8 Poisson steps per epoch: a claim near 1, which a noiseless run refutes."""


def _data(rows: int = 600, features: int = 8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


class _Builder:
    """A caller's model: two hidden layers (not the default's one), remembered so the test can inspect it."""

    def __init__(self, classes: int | None = None):
        self.classes, self.models = classes, []

    def __call__(self, features: int, classes: int):
        model = tf.keras.Sequential(
            [
                tf.keras.Input(shape=(features,)),
                tf.keras.layers.Dense(6, activation="tanh"),
                tf.keras.layers.Dense(4, activation="relu"),
                tf.keras.layers.Dense(self.classes or classes),
            ]
        )
        self.models.append((model, [w.copy() for w in model.get_weights()]))
        return model


def _claims(result) -> dict[str, float]:
    event = dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(
            PLAN["batch_size"] / result.dataset_size, dpa.GaussianDpEvent(PLAN["noise_multiplier"])
        ),
        result.steps,
    )
    return {
        "rdp": dpa.rdp.RdpAccountant().compose(event).get_epsilon(PLAN["delta"]),
        "pld": dpa.pld.PLDAccountant(value_discretization_interval=1e-4).compose(event).get_epsilon(PLAN["delta"]),
    }


@pytest.mark.parametrize("fault", ["none", "no-noise"])
def test_a_callers_model_is_the_one_audited(fault):
    x, y = _data()
    builder = _Builder()
    result = run_dp_sgd_audit(AuditPlan(fault=fault, **PLAN), x, y, build_model=builder)
    [(model, initial)] = builder.models
    assert len(model.layers) == 3 and any(
        not np.allclose(a, b) for a, b in zip(initial, model.get_weights(), strict=True)
    )
    claims = _claims(result)
    assert result.claims[-1] == pytest.approx(claims, rel=1e-6)
    assert 600 <= result.dataset_size <= 900 and len(result.lower_bound) == PLAN["epochs"]
    if fault == "none":
        assert result.lower_bound[-1] <= min(claims.values()) and not result.violated
    else:
        assert result.lower_bound[-1] > min(claims.values()) and result.violated


def test_a_model_with_the_wrong_output_is_refused_before_training():
    x, y = _data()
    with pytest.raises(
        ValueError,
        match=r"build_model: the model must map \[batch, 8\] features to \[batch, 2\] "
        r"logits, got output shape \(1, 3\)",
    ):
        run_dp_sgd_audit(AuditPlan(**PLAN), x, y, build_model=_Builder(classes=3))
