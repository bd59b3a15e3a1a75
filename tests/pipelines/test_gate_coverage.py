"""The privacy gate's coverage check: adapted Keras preprocessing layers in a saved model, preprocessing
records that differ from the ledger's, and delta against 1/n."""

import json

from privacy.accounting import DpSgdMechanism
from pipelines import privacy_ledger as pl
from pipelines.components.private_evaluator import coverage

SAVE = """
import json, sys
import numpy as np
import tf_keras as keras
from pipelines.components.private_evaluator import coverage
from pipelines import privacy_ledger as pl
from privacy.accounting import DpSgdMechanism
x = np.array([[1.0, 2.0], [3.0, 5.0]], dtype="float32")
adapted = keras.layers.Normalization(name="adapted_norm")
adapted.adapt(x)
given = keras.layers.Normalization(mean=[0.0, 0.0], variance=[1.0, 1.0], name="given_norm")
inputs = keras.Input((2,))
model = keras.Model(inputs, keras.layers.Dense(1)(given(adapted(inputs))))
model.save(sys.argv[1], save_format="tf")
ledger = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10),
                                     l2_norm_clip=1.0, delta=1e-5)
print("PROBLEMS " + json.dumps(coverage.artifact_problems(sys.argv[1], ledger)))
"""


def test_a_tf_keras_model_with_an_adapted_normalization_is_not_covered(tmp_path, python_subprocess):
    code = f"import sys; sys.argv[1:] = [{str(tmp_path / 'model')!r}]\n" + SAVE
    out = python_subprocess(code, legacy_keras=True).stdout
    [line] = [line for line in out.splitlines() if line.startswith("PROBLEMS ")]
    [problem] = json.loads(line[len("PROBLEMS "):])
    assert "layer 'adapted_norm' (Normalization)" in problem and "Normalization(mean=..., variance=...)" in problem


def _ledger(delta: float, n: int = 1000) -> pl.PrivacyLedger:
    mechanism = DpSgdMechanism(dataset_size=n, batch_size=10, noise_multiplier=1.0, steps=10)
    return pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=delta)


def test_delta_close_to_one_over_n_is_a_warning_and_at_one_over_n_a_problem():
    assert coverage.delta_findings(_ledger(1e-5)) == ([], [])
    assert coverage.delta_findings(_ledger(5e-4)) == ([], [])   # 1/(2n), the largest delta commonly used
    problems, warnings = coverage.delta_findings(_ledger(6e-4))
    assert problems == [] and "delta=0.0006 is 0.6/n (n=1000 examples), close to 1/n" in warnings[0]
    problems, warnings = coverage.delta_findings(_ledger(2e-3))  # a foreign ledger: the trainers refuse this
    assert warnings == [] and "delta=0.002 is not below 1/n=0.001" in problems[0]
