"""Keras preprocessing layers adapted on data, or given another vocabulary after construction, are found (Keras 3
and tf-keras, each in a subprocess); layers given their constants are not."""

import json

import numpy as np

from privacy.preprocessing import adapted_layers

CHECK = """
import json, numpy as np
from privacy.preprocessing import adapted_layers
keras = {keras}
data = np.array([[1.0], [2.0], [4.0]], dtype="float32")
words = np.array([["a"], ["b"], ["a"]])
adapted = [keras.layers.Normalization(name="norm"), keras.layers.Discretization(num_bins=2, name="bins"),
           keras.layers.StringLookup(name="lookup"), keras.layers.IntegerLookup(name="ints"),
           keras.layers.TextVectorization(name="text")]
for layer, sample in zip(adapted, [data, data, words, np.array([[1], [2]]), np.array(["a b", "b c"])]):
    layer.adapt(sample)
set_later = keras.layers.StringLookup(vocabulary=["a"], name="lookup_set")
set_later.set_vocabulary(["a", "b", "rare"])   # e.g. tokens read from the training data
adapted.append(set_later)
given = [keras.layers.Normalization(mean=2.0, variance=1.5, name="norm_given"),
         keras.layers.Discretization(bin_boundaries=[0.0, 1.0], name="bins_given"),
         keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup_given"),
         keras.layers.IntegerLookup(vocabulary=[1, 2], name="ints_given"),
         keras.layers.TextVectorization(vocabulary=["a", "b"], name="text_given"),
         keras.layers.Dense(2, name="dense")]
print(json.dumps(adapted_layers(adapted + given)))
"""


def _problems(python_subprocess, keras: str, legacy: bool) -> list[str]:
    return json.loads(python_subprocess(CHECK.format(keras=keras), legacy_keras=legacy).stdout.splitlines()[-1])


def test_adapted_layers_are_named_with_their_replacement_on_keras_3(python_subprocess):
    problems = _problems(python_subprocess, "__import__('keras')", legacy=False)
    assert [p.split("'")[1] for p in problems] == ["norm", "bins", "lookup", "ints", "text", "lookup_set"]
    assert "Normalization(mean=..., variance=...)" in problems[0] and "no epsilon covers" in problems[0]
    assert "set_vocabulary after construction" in problems[-1] and "3 tokens" in problems[-1]


def test_adapted_layers_are_named_with_their_replacement_on_tf_keras(python_subprocess):
    problems = _problems(python_subprocess, "__import__('tf_keras')", legacy=True)
    assert [p.split("'")[1] for p in problems] == ["norm", "bins", "lookup", "ints", "text", "lookup_set"]
    assert "Discretization(bin_boundaries=...)" in problems[1]


def test_objects_that_are_not_layers_of_these_classes_are_ignored():
    assert adapted_layers([object(), np.zeros(2)]) == []
