"""The TFX encrypted-inference gate, run by calling its executor's Do on real artifacts (tf-keras process)."""

GATE_SCRIPT = """
import json, os
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_breast_cancer
from tfx import types
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from pipelines.components.encrypted_gate import EncryptedInferenceGate
from pipelines.components.encrypted_gate.executor import Executor
from pipelines.components.encrypted_gate.spec import GateSettings

root = {root!r}
x, y = load_breast_cancer(return_X_y=True)
x = ((x - x.mean(0)) / x.std(0)).astype("float32")
keys = [f"f{{i:02d}}" for i in range(30)]
split = os.path.join(root, "examples", "Split-eval")
os.makedirs(split)
with tf.io.TFRecordWriter(os.path.join(split, "data.gz"), options="GZIP") as writer:
    for row, label in zip(x, y):
        feature = {{k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in zip(keys, row)}}
        feature["diagnosis"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
examples = standard_artifacts.Examples(); examples.uri = os.path.dirname(split); examples.split_names = '["eval"]'

def saved_model(name, activation):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((30,)), tf.keras.layers.Dense(8, activation=activation),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy"); model.fit(x, y, epochs=5, verbose=0)
    artifact = standard_artifacts.Model(); artifact.uri = os.path.join(root, name)
    model.save(path_utils.serving_model_path(artifact.uri, path_utils.is_old_model_artifact(artifact)))
    return artifact, model

def run(name, model, upstream=None, upstream_model_id=0, **settings):
    blessing = standard_artifacts.ModelBlessing(); blessing.uri = os.path.join(root, "blessing-" + name)
    inputs = {{"examples": [examples], "model": [model]}}
    if upstream is not None:
        up = standard_artifacts.ModelBlessing(); up.set_int_custom_property("blessed", upstream)
        inputs["model_blessing"] = [up]
        up.set_int_custom_property("current_model_id", upstream_model_id)
    props = GateSettings(feature_keys=tuple(keys), label_key="diagnosis", **settings).exec_properties()
    Executor().Do(inputs, {{"blessing": [blessing]}}, props)
    with open(os.path.join(blessing.uri, "encrypted_inference.json")) as fh:
        report = json.load(fh)
    files = sorted(f for f in os.listdir(blessing.uri) if f.endswith("BLESSED"))
    props = {{k: v for k, v in blessing.mlmd_artifact.custom_properties.items()}}
    return files, report, blessing

relu_model, keras_model = saved_model("relu", "relu")
files, report, blessing = run("ok", relu_model, num_examples=120, batch_size=50)
plain = (keras_model.predict(x[:120], verbose=0)[:, 0] > 0.5).astype(int)
print("OK", files, report["report"]["examples"], report["report"]["decision_agreement"],
      report["report"]["max_abs_error"] <= 1e-3, report["report"]["plaintext_accuracy"] == (plain == y[:120]).mean(),
      blessing.get_int_custom_property("blessed"), blessing.get_float_custom_property("encrypted_decision_agreement"))
print("PRIVACY", report["privacy"] == blessing.get_string_custom_property("encrypted_gate_privacy"), report["privacy"])
files, report, blessing = run("upstream", relu_model, upstream=0, num_examples=10)
print("UPSTREAM", files, report["reason"], report["report"])
files, report, blessing = run("other", relu_model, upstream=1, upstream_model_id=99, num_examples=10)
print("OTHER", files, report["reason"])
tanh_model, _ = saved_model("tanh", "tanh")
files, report, blessing = run("tanh", tanh_model, num_examples=10)
print("TANH", files, blessing.get_int_custom_property("blessed"), report["reason"])
files, report, blessing = run("strict", relu_model, num_examples=40, max_accuracy_drop=0.0, min_agreement=1.0)
print("STRICT", files)
files, report, blessing = run("range", relu_model, num_examples=10, input_lo=-1e8, input_hi=1e8)
print("RANGE", files, blessing.get_int_custom_property("blessed"), report["reason"])
files, report, blessing = run("outside", relu_model, num_examples=10, input_lo=-0.5, input_hi=0.5)
print("OUTSIDE", files, report["reason"])
# Half-open [-16, 16): checked as [-16, 16 - 2^-16] (2^21 grid values, one comparison), as share-model --half-open.
files, report, blessing = run("halfopen", relu_model, num_examples=10, input_lo=-16.0, input_hi=16.0, half_open=True)
_, checked, _ = run("checked", relu_model, num_examples=10, input_lo=-16.0, input_hi=16.0 - 2.0 ** -16)
_, closed, _ = run("closed", relu_model, num_examples=10, input_lo=-16.0, input_hi=16.0, input_check="exact")
_, widened, blessing = run("widened", relu_model, num_examples=10, input_lo=-16.0, input_hi=16.0)
print("WIDENED", widened["input_check"] == blessing.get_string_custom_property("encrypted_input_check"),
      widened["input_check"], closed["input_check"], report["input_check"],
      checked["report"]["bytes_per_batch"] < widened["report"]["bytes_per_batch"] < closed["report"]["bytes_per_batch"])
print("HALFOPEN", files, report["report"]["bytes_per_batch"] == checked["report"]["bytes_per_batch"],
      report["report"]["bytes_per_batch"] < closed["report"]["bytes_per_batch"])
# 8-bit inputs (share-model --input-frac-bits 8): checked at 13 bits, not 21: fewer bytes than closed at 16.
files, report, blessing = run("eightbit", relu_model, num_examples=10, input_lo=-16.0, input_hi=16.0, input_frac_bits=8)
print("EIGHTBIT", files, report["report"]["bytes_per_batch"] < closed["report"]["bytes_per_batch"])
# Logits of about 2^31 (2^63 in the ring's 2f = 32 fractional bits): a hidden unit constant at 2^16 (kernel 0)
# weighted 2^15 into both classes, under class 1's logit of the relu model (float64, so plaintext labels stay exact).
(hidden_k, hidden_b), (out_k, out_b) = (layer.get_weights() for layer in keras_model.layers)
wide = tf.keras.Sequential([tf.keras.Input((30,), dtype="float64"),
                            tf.keras.layers.Dense(9, activation="relu", dtype="float64"),
                            tf.keras.layers.Dense(2, activation="softmax", dtype="float64")])
wide.layers[0].set_weights([np.hstack([hidden_k, np.zeros((30, 1))]), np.append(hidden_b, 2.0 ** 16)])
wide.layers[1].set_weights([np.vstack([np.hstack([np.zeros((8, 1)), out_k]), [[2.0 ** 15, 2.0 ** 15]]]),
                            np.array([0.0, out_b[0]])])
wide_model = standard_artifacts.Model(); wide_model.uri = os.path.join(root, "wide")
wide.save(path_utils.serving_model_path(wide_model.uri, path_utils.is_old_model_artifact(wide_model)))
files, report, blessing = run("wide", wide_model, num_examples=40)
same = (wide.predict(x[:40], verbose=0).argmax(1) == plain[:40]).all()
print("WIDE", files, *(report["report"][k] for k in ("output", "max_abs_error", "decision_agreement")),
      blessing.get_string_custom_property("encrypted_output"), same)
print("WIDEREASON", report["reason"])
gate = EncryptedInferenceGate(examples=types.Channel(type=standard_artifacts.Examples),
                              model=types.Channel(type=standard_artifacts.Model), feature_keys=keys,
                              label_key="diagnosis", num_examples=50)
print("COMPONENT", gate.exec_properties["num_examples"], json.loads(gate.exec_properties["feature_keys"])[:2],
      type(gate.outputs["blessing"]).__name__)
gate = EncryptedInferenceGate(examples=types.Channel(type=standard_artifacts.Examples),
                              model=types.Channel(type=standard_artifacts.Model), feature_keys=keys,
                              label_key="diagnosis", input_lo=-16.0, input_hi=16.0, half_open=True)
print("HALFCOMPONENT", gate.exec_properties["half_open"],
      GateSettings.from_exec_properties(gate.exec_properties).half_open)
gate = EncryptedInferenceGate(examples=types.Channel(type=standard_artifacts.Examples),
                              model=types.Channel(type=standard_artifacts.Model), feature_keys=keys,
                              label_key="diagnosis", input_check="exact")
print("CHECKCOMPONENT", gate.exec_properties["input_check"],
      GateSettings.from_exec_properties(gate.exec_properties).input_check)
try:
    EncryptedInferenceGate(examples=types.Channel(type=standard_artifacts.Examples),
                           model=types.Channel(type=standard_artifacts.Model), feature_keys=keys,
                           label_key="diagnosis", min_agreement=1.5)
except ValueError as err:
    print("INVALID", err)
"""


def test_gate_blesses_matching_models_and_blocks_others(tmp_path, python_subprocess):
    out = python_subprocess(GATE_SCRIPT.format(root=str(tmp_path)), legacy_keras=True, timeout=600).stdout
    lines = {line.split(" ", 1)[0]: line for line in out.splitlines() if line.split(" ", 1)[0].isupper()}
    assert lines["OK"] == "OK ['BLESSED'] 120 1.0 True True 1 1.0"
    # The figures are exact statistics of the eval rows that decide the push: labelled so in MLMD and the report.
    assert lines["PRIVACY"].startswith("PRIVACY True outside the differential-privacy guarantee")
    assert lines["UPSTREAM"] == "UPSTREAM ['NOT_BLESSED'] the upstream blessing is NOT_BLESSED None"
    # A blessing of another model (e.g. a non-private branch's) is not passed on.
    assert lines["OTHER"] == "OTHER ['NOT_BLESSED'] the upstream blessing is for model 99, not for this model (0)"
    assert lines["TANH"].startswith("TANH ['NOT_BLESSED'] 0 the model cannot run encrypted: layer ")
    assert "activation 'tanh' is not supported" in lines["TANH"]
    assert lines["STRICT"] == "STRICT ['BLESSED']"
    # A model that cannot be proven within the ring's headroom for the declared range fails closed, with
    # the reason recorded (the run itself completes: `ppml report` has something to show).
    assert lines["RANGE"].startswith(
        "RANGE ['NOT_BLESSED'] 0 the model cannot run encrypted within the ring's headroom"
    )
    assert "bits" in lines["RANGE"] or "re-run" in lines["RANGE"]
    assert lines["OUTSIDE"].startswith("OUTSIDE ['NOT_BLESSED'] the examples exceed the declared input range")
    # half_open: the gate checks the bounds share-model --half-open serves (one comparison, fewer bytes).
    assert lines["HALFOPEN"] == "HALFOPEN ['BLESSED'] True True"
    assert lines["EIGHTBIT"] == "EIGHTBIT ['BLESSED'] True"
    # By default the gate, like share-model, has the servers check the declared bounds widened to one comparison
    # (here [-32 + 2^-16, 32]: 2^22 values of 2^-16 around [-16, 16]) and records it; input_check exact keeps them.
    assert lines["WIDENED"] == (
        "WIDENED True the servers check the declared input bounds widened to [-31.999984741210938, 32.0] (one "
        "comparison per value) the servers check the declared input bounds [-16.0, 16.0] the servers check the "
        "declared input bounds [-16.0, 16.0) True"
    )
    # A model whose logits could wrap the ring is checked and blessed for the labels-only release policy.
    assert lines["WIDE"] == "WIDE ['BLESSED'] label None 1.0 label True"
    assert lines["WIDEREASON"].startswith(
        "WIDEREASON labels only: the logits can need 64 bits for these input "
        "bounds, more than the 63 a ring element holds"
    )
    assert "decision agreement 100.00 %" in lines["WIDEREASON"]
    assert lines["COMPONENT"] == "COMPONENT 50 ['f00', 'f01'] OutputChannel"
    assert lines["HALFCOMPONENT"] == "HALFCOMPONENT 1 True"
    assert lines["CHECKCOMPONENT"] == "CHECKCOMPONENT exact exact"
    assert lines["INVALID"] == "INVALID min_agreement must be in [0, 1], got 1.5"


def test_gate_settings_refuse_input_bounds_that_hold_no_grid_value_before_tfx_runs():
    """input_lo = input_hi = 0.3 at 16 fractional bits holds no multiple of 2^-16: the executor would refuse the
    model after loading TFX and the examples, so the settings refuse it when built, naming the grid values on
    either side; 0.25 (on the grid) and [0.1, 0.3] (which hold grid values) are accepted."""
    import pytest

    from pipelines.components.encrypted_gate.spec import GateSettings

    settings = dict(feature_keys=("f00",), label_key="diagnosis")
    with pytest.raises(ValueError, match=r"hold no multiple of 2\^-16 .*nearest are 0\.29998779296875 and 0\.30000305"):
        GateSettings(**settings, input_lo=0.3, input_hi=0.3)
    assert GateSettings(**settings, input_lo=0.25, input_hi=0.25).input_lo == 0.25
    assert GateSettings(**settings, input_lo=0.1, input_hi=0.3, frac_bits=8).input_hi == 0.3


def test_gate_settings_half_open_need_declared_bounds_that_halve_the_check_and_round_trip_through_tfx():
    """half_open (as `share-model --half-open`) needs input_lo / input_hi whose span is a power of two of grid steps,
    refused when the settings are built, before TFX runs; it travels as 0 / 1 (TFX has no bool parameter) and reads
    back as the bool, anything else refused."""
    import pytest

    from pipelines.components.encrypted_gate.spec import GateSettings
    from privacy.encrypted.model.ring import FixedPoint, as_signed

    settings = dict(feature_keys=("f00",), label_key="diagnosis")
    with pytest.raises(ValueError, match="half_open applies to input_lo / input_hi"):
        GateSettings(**settings, half_open=True)
    with pytest.raises(ValueError, match="every feature spans 49152 steps of 2\\^-16"):
        GateSettings(**settings, input_lo=0.0, input_hi=0.75, half_open=True)
    gate = GateSettings(**settings, input_lo=-16.0, input_hi=16.0, half_open=True)
    assert [as_signed(a).tolist() for a in gate.bounds(()).encoded(FixedPoint(16))] == [-(2**20), 2**20 - 1]
    props = gate.exec_properties()
    assert props["half_open"] == 1 and GateSettings.from_exec_properties(props) == gate
    assert GateSettings.from_exec_properties(GateSettings(**settings).exec_properties()).half_open is False
    with pytest.raises(ValueError, match="half_open must be True or False, not 2"):
        GateSettings.from_exec_properties(dict(props, half_open=2))
    with pytest.raises(ValueError, match="half_open must be True or False, not 1.0"):
        GateSettings.from_exec_properties(dict(props, half_open=1.0))


def test_gate_settings_input_check_is_one_choice_whose_contradictions_are_refused_before_tfx_runs():
    """input_check (as `share-model --input-check`): one of widened / exact / half-open, travelling through TFX as a
    string; half_open is short for "half-open" and refused with another choice; unknown choices are refused."""
    import numpy as np
    import pytest

    from pipelines.components.encrypted_gate.spec import GateSettings

    settings = dict(feature_keys=("f00",), label_key="diagnosis")
    for bad, why in (
        (dict(input_check="closed"), "input_check must be one of widened, exact, half-open, not 'closed'"),
        (dict(input_check="exact", half_open=True, input_lo=0.0, input_hi=1.0), "contradicts input_check 'exact'"),
        (dict(input_check="widened", half_open=True), "half_open applies to input_lo / input_hi"),
        (dict(input_check="half-open"), "half_open applies to input_lo / input_hi"),
    ):
        with pytest.raises(ValueError, match=why):
            GateSettings(**settings, **bad)
    for choice in ("widened", "exact", None):
        gate = GateSettings(**settings, input_check=choice)
        assert GateSettings.from_exec_properties(gate.exec_properties()) == gate
        assert gate.bounds((1,), np.zeros((2, 1))).input_check == (choice or "widened")
    gate = GateSettings(**settings, input_lo=0.0, input_hi=1.0, input_check="half-open")
    assert gate.bounds(()).half_open and GateSettings.from_exec_properties(gate.exec_properties()) == gate


def test_gate_settings_input_frac_bits_check_the_precision_share_model_serves():
    """input_frac_bits (as `share-model --input-frac-bits`): at most frac_bits, declared bounds on its grid, the
    examples' range widened outward to it, refused when the settings are built; it travels through TFX."""
    import numpy as np
    import pytest

    from pipelines.components.encrypted_gate.spec import GateSettings
    from privacy.encrypted.model.ring import FixedPoint, as_signed

    settings = dict(feature_keys=("f00",), label_key="diagnosis")
    with pytest.raises(ValueError, match="input_frac_bits must be an integer in \\[0, 16\\], got 17"):
        GateSettings(**settings, input_frac_bits=17)
    with pytest.raises(ValueError, match="input bounds must be multiples of 2\\^-8"):
        GateSettings(**settings, input_lo=0.0, input_hi=0.999, input_frac_bits=8)
    gate = GateSettings(**settings, input_lo=0.0, input_hi=1.0, input_frac_bits=8, half_open=True)
    assert [as_signed(a).tolist() for a in gate.bounds(()).encoded(FixedPoint(16))] == [0, 255]
    fitted = GateSettings(**settings, input_frac_bits=8).bounds((1,), np.array([[0.1], [0.3]]))
    assert [as_signed(a).tolist() for a in fitted.encoded(FixedPoint(16))] == [[25], [77]]  # 25.6 down, 76.8 up
    assert GateSettings.from_exec_properties(gate.exec_properties()) == gate
