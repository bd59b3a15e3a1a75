"""The Local Randomizer component: its executor on real Examples artifacts, the stored reports, the estimates
downstream analysis gets from them, and refused settings and values."""

import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.tfx  # imports TFX

COLUMNS = {
    "diagnosis": {"mechanism": "rr", "epsilon": 1.0, "k": 2},
    "digit": {"mechanism": "grr", "epsilon": 2.0, "k": 10},
    "digit_oue": {"mechanism": "oue", "epsilon": 2.0, "k": 10},
    "digit_olh": {"mechanism": "olh", "epsilon": 2.0, "k": 10},
}
N = 4000


@pytest.fixture(scope="module")
def randomized(tmp_path_factory):
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from pipelines.components.local_randomizer import spec
    from pipelines.components.local_randomizer.executor import Executor

    root = tmp_path_factory.mktemp("ldp")
    rng = np.random.default_rng(0)
    data = {
        "train": {"diagnosis": rng.integers(0, 2, N), "digit": rng.choice(10, N, p=np.arange(1, 11) / 55)},
        "eval": {"diagnosis": np.ones(200, int), "digit": np.zeros(200, int)},
    }
    for split, columns in data.items():
        folder = root / "examples" / f"Split-{split}"
        folder.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
            for i, (d, g) in enumerate(zip(columns["diagnosis"], columns["digit"], strict=True)):
                feature = {"radius": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 7]))}
                for name, value in (("diagnosis", d), ("digit", g), ("digit_oue", g), ("digit_olh", g)):
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = '["train", "eval"]'
    output = standard_artifacts.Examples()
    output.uri = str(root / "randomized")
    props = {spec.COLUMNS_KEY: spec.columns_json(spec.parse_columns(COLUMNS))}
    with pytest.MonkeyPatch.context() as patch:  # several chunks per split: streamed, not held whole
        patch.setattr("pipelines.components.local_randomizer.executor.CHUNK_RECORDS", 1500)
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, props)
    return data, output, examples


def _column(uri, split, name, kind="int64_list"):
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(uri, f"Split-{split}", "*"))
    return [
        list(getattr(tf.train.Example.FromString(r.numpy()).features.feature[name], kind).value)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]


def test_declared_columns_hold_reports_and_other_columns_pass_through(randomized):
    data, output, examples = randomized
    assert json.loads(output.split_names) == ["train", "eval"]
    assert _column(output.uri, "train", "radius", "float_list") == _column(
        examples.uri, "train", "radius", "float_list"
    )
    assert all(len(v) == 1 for v in _column(output.uri, "train", "digit"))
    assert all(len(v) == 10 and set(v) <= {0, 1} for v in _column(output.uri, "train", "digit_oue"))
    assert all(len(v) == 3 for v in _column(output.uri, "train", "digit_olh"))
    # grr at epsilon 2 over 10 values keeps a value with probability e^2 / (e^2 + 9): 200 zeros in eval
    kept = np.mean([v[0] == 0 for v in _column(output.uri, "eval", "digit")])
    p = np.exp(2) / (np.exp(2) + 9)
    assert abs(kept - p) < 5 * np.sqrt(p * (1 - p) / 200)
    report = json.loads((open(os.path.join(output.uri, "local_dp.json"))).read())
    assert report["epsilon_per_record"] == pytest.approx(7.0)
    assert "not covered" in report["trust_model"] and report["columns"]["digit_olh"]["buckets"] == 8
    assert output.get_float_custom_property("local_dp_epsilon_per_record_declared_columns") == pytest.approx(7.0)
    assert output.get_string_custom_property("local_dp_declared_columns") == "diagnosis,digit,digit_olh,digit_oue"
    assert output.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert output.get_string_custom_property("file_format") == "tfrecords_gzip"


@pytest.mark.parametrize("column", ["diagnosis", "digit", "digit_oue", "digit_olh"])
def test_downstream_estimates_cover_the_truth(randomized, column):
    from pipelines.components.local_randomizer.estimate import estimate_column

    data, output, _ = randomized
    raw = data["train"]["diagnosis" if column == "diagnosis" else "digit"]
    k = COLUMNS[column]["k"]
    truth = np.bincount(raw, minlength=k) / raw.size
    estimate = estimate_column(output.uri, "train", column)
    assert estimate.population == N and estimate.epsilon == COLUMNS[column]["epsilon"]
    assert np.all(np.abs(estimate.frequencies - truth) < 5 * estimate.stderr)


def test_bad_settings_and_values_are_refused_naming_the_column(randomized, tmp_path):
    from tfx import types
    from tfx.types import standard_artifacts

    from pipelines.components.local_randomizer import LocalRandomizer, spec
    from pipelines.components.local_randomizer.estimate import estimate_column
    from pipelines.components.local_randomizer.executor import Executor

    channel = types.Channel(type=standard_artifacts.Examples)
    component = LocalRandomizer(examples=channel, columns={"digit": {"mechanism": "olh", "epsilon": 1, "k": 10}})
    assert json.loads(component.exec_properties["columns"])["digit"]["epsilon"] == 1.0
    for columns, message in (
        ({"digit": {"mechanism": "lap", "epsilon": 1, "k": 10}}, "column 'digit': mechanism"),
        ({"digit": {"mechanism": "grr", "epsilon": 0, "k": 10}}, "column 'digit': epsilon"),
        ({"digit": {"mechanism": "grr", "epsilon": 1, "k": 1}}, "column 'digit': k"),
        ({"digit": {"mechanism": "grr", "epsilon": 1}}, "column 'digit': k"),
        ({}, "columns must map"),
    ):
        with pytest.raises(ValueError, match=message):
            LocalRandomizer(examples=channel, columns=columns)
    _, _, examples = randomized
    output = standard_artifacts.Examples()
    output.uri = str(tmp_path / "out")
    narrow = spec.columns_json(spec.parse_columns({"digit": {"mechanism": "grr", "epsilon": 1, "k": 5}}))
    with pytest.raises(ValueError, match=r"column 'digit', split 'train', record \d+: .* in \[0, 5\) per record$"):
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, {"columns": narrow})
    with pytest.raises(ValueError, match="was not randomized"):
        estimate_column(randomized[1].uri, "train", "radius")


def _artifact(root, records, payload_format=None):
    """An Examples artifact with one split 'train' holding ``records`` (protos), GZIP'ed."""
    import tensorflow as tf
    from tfx.components.util import examples_utils
    from tfx.types import standard_artifacts

    folder = root / "examples" / "Split-train"
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "data.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record.SerializeToString())
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = '["train"]'
    if payload_format is not None:
        examples_utils.set_payload_format(examples, payload_format)
    output = standard_artifacts.Examples()
    output.uri = str(root / "out")
    return examples, output


SMOKER = {"smoker": {"mechanism": "rr", "epsilon": 1.0, "k": 2}}


def test_sequence_examples_and_unknown_fields_are_refused_not_copied_raw(tmp_path, monkeypatch):
    """A SequenceExample parses as a tf.Example whose feature_lists survive as unknown fields: the executor
    must refuse the artifact's format, and a record with such fields in a tf.Example artifact."""
    import tensorflow as tf
    from tfx.proto import example_gen_pb2

    from pipelines.components.local_randomizer import spec
    from pipelines.components.local_randomizer.executor import Executor

    sequence = tf.train.SequenceExample()
    sequence.context.feature["smoker"].int64_list.value.append(1)
    sequence.feature_lists.feature_list["smoker"].feature.add().int64_list.value.append(1)
    props = {spec.COLUMNS_KEY: spec.columns_json(spec.parse_columns(SMOKER))}
    examples, output = _artifact(
        tmp_path / "seq", [sequence] * 3, example_gen_pb2.PayloadFormat.FORMAT_TF_SEQUENCE_EXAMPLE
    )
    with pytest.raises(ValueError, match="tf.Example records only, got payload format FORMAT_TF_SEQUENCE_EXAMPLE"):
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, props)
    plain = tf.train.Example()
    plain.features.feature["smoker"].int64_list.value.append(1)
    examples, output = _artifact(tmp_path / "mislabelled", [plain, sequence])  # no payload_format: tf.Example
    with pytest.raises(ValueError, match=r"split 'train', record 1: not a tf.Example"):
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, props)
    raw = plain.SerializeToString() + b"\x1a\x01\x07"  # field 3 (1 byte): tf.Example does not define it
    examples, output = _artifact(tmp_path / "unknown", [plain, tf.train.Example.FromString(raw)])
    with pytest.raises(ValueError, match=r"record 1: not a tf.Example"):
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, props)
    examples, output = _artifact(tmp_path / "late", [plain] * 5 + [sequence])
    monkeypatch.setattr("pipelines.components.local_randomizer.executor.CHUNK_RECORDS", 2)
    with pytest.raises(ValueError, match=r"record 5: not a tf.Example"):  # counted across chunks
        Executor().Do({"examples": [examples]}, {"randomized_examples": [output]}, props)


def test_estimate_names_a_missing_or_empty_split(randomized, tmp_path):
    from pipelines.components.local_randomizer import spec
    from pipelines.components.local_randomizer.estimate import estimate_column
    from pipelines.components.local_randomizer.executor import Executor

    with pytest.raises(ValueError, match=r"split 'tain' not in \['eval', 'train'\]"):
        estimate_column(randomized[1].uri, "tain", "digit")
    examples, output = _artifact(tmp_path, [])
    Executor().Do(
        {"examples": [examples]},
        {"randomized_examples": [output]},
        {spec.COLUMNS_KEY: spec.columns_json(spec.parse_columns(SMOKER))},
    )
    with pytest.raises(ValueError, match="split 'train' has no records"):
        estimate_column(output.uri, "train", "smoker")


def test_oue_domain_is_capped():
    from pipelines.components.local_randomizer import spec

    spec.parse_columns({"c": {"mechanism": "oue", "epsilon": 1, "k": spec.MAX_OUE_DOMAIN}})
    with pytest.raises(ValueError, match="column 'c': oue stores k bits .* got 4097; use olh"):
        spec.parse_columns({"c": {"mechanism": "oue", "epsilon": 1, "k": 4097}})
