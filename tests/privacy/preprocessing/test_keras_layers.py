"""Keras preprocessing layers adapted on data, or given another vocabulary (or idf weights) after construction, are
found (Keras 3 and tf-keras, each in a subprocess); layers given their constants are not."""

import json

import numpy as np

from privacy.preprocessing import adapted_layers

CHECK = """
import json, os, tempfile, numpy as np
from privacy.preprocessing import adapted_layers
keras = {keras}
vocabulary_file = os.path.join(tempfile.mkdtemp(), "vocabulary.txt")
with open(vocabulary_file, "w") as handle:
    handle.write("a\\nb\\n")
data = np.array([[1.0], [2.0], [4.0]], dtype="float32")
words = np.array([["a"], ["b"], ["a"]])
adapted = [keras.layers.Normalization(name="norm"), keras.layers.Discretization(num_bins=2, name="bins"),
           keras.layers.StringLookup(name="lookup"), keras.layers.IntegerLookup(name="ints"),
           keras.layers.TextVectorization(name="text")]
for layer, sample in zip(adapted, [data, data, words, np.array([[1], [2]]), np.array(["a b", "b c"])]):
    layer.adapt(sample)
set_later = keras.layers.StringLookup(vocabulary=["a"], name="lookup_set")
set_later.set_vocabulary(["a", "b", "rare"])   # e.g. tokens read from the training data
file_set_later = keras.layers.StringLookup(vocabulary=vocabulary_file, name="file_set")
file_set_later.set_vocabulary(["secret1", "secret2"])
assigned = keras.layers.Normalization(mean=0.0, variance=1.0, name="norm_assigned")
assigned.build((None, 1))
exact_mean = np.array([[5.0]], dtype="float32")   # e.g. the training data's exact mean, set after construction
if hasattr(assigned.mean, "assign"):
    assigned.mean.assign(exact_mean)
else:   # a constant tensor: replaced
    assigned.mean = keras.backend.constant(exact_mean) if hasattr(keras.backend, "constant") else exact_mean
idf_set_later = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="tf_idf", idf_weights=[1.0, 1.0],
                                          name="idf_set")
idf_set_later.set_vocabulary(["a", "b"], idf_weights=[0.4, 1.3])   # e.g. the training data's document frequencies
text_idf_set_later = keras.layers.TextVectorization(vocabulary=["a", "b"], output_mode="tf_idf",
                                                    idf_weights=[1.0, 1.0], name="text_idf_set")
text_idf_set_later.set_vocabulary(["a", "b"], idf_weights=[0.4, 1.3])
idf_nudged = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="tf_idf", idf_weights=[1.0, 1.0],
                                       name="idf_nudged")
idf_nudged.set_vocabulary(["a", "b"], idf_weights=[1.0 + 5e-7, 1.0 - 9e-7])   # data in the low digits (float32 ulps)
adapted += [set_later, file_set_later, assigned, idf_set_later, text_idf_set_later, idf_nudged]
built = keras.layers.Normalization(mean=[2.0, 1.0], variance=[1.5, 1.0], name="norm_built")
built.build((None, 2))
given = [keras.layers.Normalization(mean=2.0, variance=1.5, name="norm_given"),
         keras.layers.Discretization(bin_boundaries=[0.0, 1.0], name="bins_given"),
         keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup_given"),
         keras.layers.IntegerLookup(vocabulary=[1, 2], name="ints_given"),
         keras.layers.TextVectorization(vocabulary=["a", "b"], name="text_given"),
         keras.layers.StringLookup(vocabulary=vocabulary_file, name="file_given"), built,
         keras.layers.IntegerLookup(vocabulary=[1, 2], output_mode="tf_idf", idf_weights=[0.5, 2.0], name="idf_given"),
         keras.layers.TextVectorization(vocabulary=["a", "b"], output_mode="tf_idf", idf_weights=[0.3, 1.7],
                                        name="idf_given_float32"),   # stored rounded to float32: not flagged
         keras.layers.Dense(2, name="dense")]
print(json.dumps(adapted_layers(adapted + given)))
"""


NAMES = [
    "norm",
    "bins",
    "lookup",
    "ints",
    "text",
    "lookup_set",
    "file_set",
    "norm_assigned",
    "idf_set",
    "text_idf_set",
    "idf_nudged",
]


def _problems(python_subprocess, keras: str, legacy: bool) -> list[str]:
    return json.loads(python_subprocess(CHECK.format(keras=keras), legacy_keras=legacy).stdout.splitlines()[-1])


def test_adapted_layers_are_named_with_their_replacement_on_keras_3(python_subprocess):
    problems = _problems(python_subprocess, "__import__('keras')", legacy=False)
    # Keras 3 keeps no vocabulary file in the config, so a file vocabulary cannot be told from adapt: flagged
    assert [p.split("'")[1] for p in problems] == NAMES + ["file_given"]
    assert "Normalization(mean=..., variance=...)" in problems[0] and "no epsilon covers" in problems[0]
    assert "set_vocabulary after construction" in problems[5] and "3 tokens" in problems[5]
    assert "mean that is not its config's" in problems[7]
    assert all("idf weights that are not the ones its config records" in p for p in problems[8:11])


def test_adapted_layers_are_named_with_their_replacement_on_tf_keras(python_subprocess):
    problems = _problems(python_subprocess, "__import__('tf_keras')", legacy=True)
    assert [p.split("'")[1] for p in problems] == NAMES
    assert "Discretization(bin_boundaries=...)" in problems[1]
    assert "2 tokens" in problems[6] and "mean that is not its config's" in problems[7]
    assert all("idf weights that are not the ones its config records" in p for p in problems[8:11])


def test_objects_that_are_not_layers_of_these_classes_are_ignored():
    assert adapted_layers([object(), np.zeros(2)]) == []
