"""A TFX run of ExampleGen -> PiiScrubber -> StatisticsGen -> SchemaGen -> ExampleValidator (+ KAnonymityValidator)
on the bundled PII tickets: no generated PII value in any file after ExampleGen, in ML Metadata or in the logs."""

import gzip
import json
import os

import pytest

from pipelines.datasets import pii_tickets

README_EXAMPLE = (
    "minimize",
    "--scrub-pii",
    "--scrub-column",
    "ticket_text=hash",
    "--drop-column",
    "customer_name",
    "--drop-column",
    "email",
    "--quasi-identifier",
    "age",
    "--quasi-identifier",
    "zip3",
    "--target-k",
    "5",
    "--sensitive-column",
    "product",
)
"""`ppml minimize`'s example in its --help and the README, on the bundled PII tickets."""
PIPELINE_SCRIPT = """
from pipelines.cli.main import cli
cli([*{args!r}, "--pipeline-root", {root!r}])
"""


def _contents(path):
    with open(path, "rb") as fh:
        data = fh.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data


@pytest.mark.tfx
@pytest.mark.slow
def test_no_generated_pii_after_example_gen_in_artifacts_metadata_or_logs(tmp_path, python_subprocess):
    root = tmp_path / "run"
    proc = python_subprocess(PIPELINE_SCRIPT.format(root=str(root), args=README_EXAMPLE), timeout=900)
    printed = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert printed["scrub"]["rows"] == len(pii_tickets.load()[0])
    assert "no privacy guarantee" in printed["kanonymity"].pop("disclaimer")
    assert set(printed["kanonymity"]) == {"train", "eval"}
    assert all(not split["meets_target"] for split in printed["kanonymity"].values())
    records, spans = pii_tickets.load()
    values = {
        r["ticket_text"][s:e] for r, truth in zip(records, spans, strict=True) for s, e, t in truth if t != "LOCATION"
    }
    values |= {r[c] for r in records for c in pii_tickets.IDENTIFYING_COLUMNS}
    needles = [v.encode() for v in values]
    raw, later = [], []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            (raw if "/CsvExampleGen/" in path or path.startswith(str(root / "data")) else later).append(path)
    assert later and any(p.endswith("metadata.sqlite") for p in later)
    assert any("/PiiScrubber/" in p for p in later) and any("/StatisticsGen/" in p for p in later)
    # the search finds what is there: ExampleGen's output holds every value
    raw_text = b"".join(_contents(p) for p in raw)
    assert all(n in raw_text for n in needles)
    for path in later:
        content = _contents(path)
        assert not [n for n in needles if n in content], path
    logs = (proc.stdout + proc.stderr).encode()
    assert not [n for n in needles if n in logs]

    [report_path] = [p for p in later if p.endswith("pii_scrub_report.json")]
    with open(report_path) as fh:
        report = json.load(fh)
    assert report["rows"] == report["rows_touched"] == len(records) and report["ner"] is False
    assert set(report["entities"]["ticket_text"]) >= {"EMAIL_ADDRESS", "PHONE_NUMBER", "CUSTOMER_NAME"}
    anomalies = [p for p in later if p.endswith("kanonymity.json")]
    assert len(anomalies) == 2  # train and eval
    for path in anomalies:
        with open(path) as fh:
            kanon = json.load(fh)
        assert kanon["k"] < 5 and not kanon["meets_target"] and "no privacy guarantee" in kanon["disclaimer"]
        with open(os.path.join(os.path.dirname(path), "SchemaDiff.pb"), "rb") as fh:
            assert b"k_anonymity" in fh.read()


WIRING_SCRIPT = """
from pipelines.keras_env import use_tf_keras
use_tf_keras()
from pipelines.pipeline import create_pipeline
from privacy.minimization import KAnonymitySettings, ScrubSettings

pipeline = create_pipeline(pipeline_root="/tmp/unused", data_root="/tmp/unused", serving_model_dir="/tmp/unused",
                           scrub=ScrubSettings(), kanonymity=KAnonymitySettings(("mean_radius",)),
                           encrypted_check=True, compare_non_private=True)
for component in pipeline.components:
    for key, channel in component.inputs.items():
        if getattr(channel, "type_name", None) == "Examples":
            print("READS", component.id, key, channel.producer_component_id)
"""


@pytest.mark.tfx
@pytest.mark.slow
def test_every_stage_after_example_gen_reads_the_scrubbed_examples(python_subprocess):
    reads = [
        line.split()[1:] for line in python_subprocess(WIRING_SCRIPT).stdout.splitlines() if line.startswith("READS")
    ]
    producers = {(stage, key): producer for stage, key, producer in reads}
    assert producers.pop(("PiiScrubber", "examples")) == "CsvExampleGen"
    assert "CsvExampleGen" not in producers.values()
    assert {stage for stage, _ in producers} >= {
        "KAnonymityValidator",
        "StatisticsGen",
        "Transform",
        "Evaluator",
        "EncryptedInferenceGate",
        "Evaluator_non_private",
    }


GENERALIZE_SCRIPT = """
import json, os
from pipelines.keras_env import use_tf_keras
use_tf_keras()
import tensorflow as tf
from tfx.types import standard_artifacts
from pipelines.components.kanonymity_validator.executor import Executor as Validator
from pipelines.components.pii_scrubber.executor import Executor as Scrubber
from pipelines.datasets import pii_tickets
from privacy.minimization import KAnonymitySettings, ScrubSettings

root = {root!r}
records = pii_tickets.load()[0][:{rows}]
raw = standard_artifacts.Examples(); raw.uri = os.path.join(root, "raw"); raw.split_names = '["train"]'
os.makedirs(os.path.join(raw.uri, "Split-train"))
with tf.io.TFRecordWriter(os.path.join(raw.uri, "Split-train", "data.gz"), options="GZIP") as writer:
    for r in records:
        example = tf.train.Example()
        for key, value in r.items():
            value = int(value) if key == "zip3" else value
            if isinstance(value, int):
                example.features.feature[key].int64_list.value.append(value)
            else:
                example.features.feature[key].bytes_list.value.append(value.encode())
        writer.write(example.SerializeToString())
qi = KAnonymitySettings(("age", "zip3", "gender"), target_k={k})
out = standard_artifacts.Examples(); out.uri = os.path.join(root, "scrubbed")
Scrubber().Do({{"examples": [raw]}}, {{"scrubbed_examples": [out]}},
              {{"scrub_settings": ScrubSettings(columns=(("ticket_text", "redact"),),
                                               drop_columns=("customer_name",)).to_json(),
               "generalization": qi.to_json()}})
anomalies = standard_artifacts.ExampleAnomalies(); anomalies.uri = os.path.join(root, "anomalies")
Validator().Do({{"examples": [out]}}, {{"anomalies": [anomalies]}}, {{"kanonymity_settings": qi.to_json()}})
rows = []
for r in tf.data.TFRecordDataset(os.path.join(out.uri, "Split-train", "data_tfrecord-00000-of-00001.gz"),
                                 compression_type="GZIP").as_numpy_iterator():
    f = tf.train.Example.FromString(r).features.feature
    rows.append({{k: (v.bytes_list.value[0].decode() if v.bytes_list.value else v.int64_list.value[0])
                 for k, v in f.items()}})
print("RESULT", json.dumps({{"rows": rows, "blessed": anomalies.get_json_value_custom_property("blessed"),
                            "report": json.load(open(os.path.join(out.uri, "pii_scrub_report.json")))}}))
"""


@pytest.mark.tfx
@pytest.mark.slow
def test_the_scrubber_generalizes_to_k_and_the_validator_then_blesses(tmp_path, python_subprocess):
    records, k = pii_tickets.load()[0][:120], 6
    proc = python_subprocess(GENERALIZE_SCRIPT.format(root=str(tmp_path), rows=len(records), k=k))
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["blessed"] == {"train": 1}
    assert result["report"]["generalization"] == {
        "quasi_identifiers": ["age", "zip3", "gender"],
        "k": k,
        "suppressed_rows": 0,
    }
    rows = result["rows"]
    assert len(rows) == len(records)
    sizes = {}
    for row in rows:
        key = (row["age"], row["zip3"], row["gender"])
        sizes[key] = sizes.get(key, 0) + 1
    assert min(sizes.values()) >= k
    for before, after in zip(records, rows, strict=True):
        assert "customer_name" not in after and before["email"] == after["email"]
        lo, _, hi = after["age"].strip("[]").partition(", ")
        assert int(lo) <= before["age"] <= int(hi or lo) and before["gender"] in after["gender"].split("|")
        assert after["product"] == before["product"] and after["escalated"] == before["escalated"]
        assert before["customer_name"] not in after["ticket_text"]


FAILING_STAGE_SCRIPT = """
from privacy.minimization import scrubber

def fail(self, record):
    raise ValueError(f"cannot scrub {{record}}")

scrubber.Scrubber.scrub_record = fail   # a stage whose error quotes a raw record
from pipelines.cli.main import cli
cli(["minimize", "--scrub-pii", "--data-root", {data!r}, "--pipeline-root", {root!r}])
"""


@pytest.mark.tfx
@pytest.mark.slow
def test_a_stage_failing_under_scrub_pii_echoes_no_raw_value_to_the_terminal_or_the_log(tmp_path, python_subprocess):
    data, root = tmp_path / "data", tmp_path / "run"
    data.mkdir()
    (data / "t.csv").write_text(
        "ticket_text,age\n" + "".join(f"mail zed.secret{i}@example.com,{40 + i}\n" for i in range(12))
    )
    proc = python_subprocess(FAILING_STAGE_SCRIPT.format(data=str(data), root=str(root)), timeout=600, check=False)
    assert proc.returncode == 1 and "PiiScrubber failed: ValueError (message withheld" in proc.stderr, proc.stderr
    [log] = os.listdir(root / "logs")
    logged = (root / "logs" / log).read_text()
    assert "ValueError (message withheld: --scrub-pii)" in logged  # the traceback is there, without the message
    assert "zed.secret" not in proc.stdout + proc.stderr + logged
