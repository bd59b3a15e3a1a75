"""``ppml pipeline run --trainer pate`` end to end on the bundled data: ExampleGen's three splits, the PATE
Trainer (10 teachers, Confident-GNMax with a declared cap, a self-trained student), the Private Evaluator's gate
and the Pusher.

The checks read ML Metadata, the ledger and the SavedModel directly: the ledger's epsilon is recomputed here
from dp-accounting with the settings and the public split's size counted from ExampleGen's files; the student's
constants are the public split's statistics; a second run on the same root with a budget below that epsilon
re-runs the Evaluator from the cached Trainer and blesses nothing.
"""

import json
import math

import pytest
from dp_accounting import dp_event, pld, rdp

from pipelines import privacy_ledger
from privacy.accounting import NeighboringRelation
from privacy.decision import NoisyAccuracy

from ..conftest import run_python
from .conftest import ppml

SETTINGS = {
    "teachers": 10,
    "threshold": 7,
    "sigma1": 3.0,
    "sigma": 3.0,
    "max_answered": 20,
    "epochs": 20,
    "semi_supervised": True,
}
"""The student self-trained on the unanswered queries: the ledger's epsilon below is still that of the aggregation."""
BUDGET = 60.0
"""Above the epsilon these settings give on ~145 public queries (about 29): a PATE student of 10 teachers on a
few hundred records has a large epsilon; the test checks the accounting and the gate, not a tight guarantee."""
DECISION_EPSILON = 0.6
"""0.2 (the pipeline's decision share) x ppml's default target 3: PATE's noise is set, not calibrated."""
MIN_ACCURACY = 0.5

INSPECT = """
import glob, json, os, sys
import numpy as np
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from pipelines.datasets import breast_cancer
root = sys.argv[1]
connection = metadata_store_pb2.ConnectionConfig()
connection.sqlite.filename_uri = os.path.join(root, "metadata.sqlite")
store = metadata_store.MetadataStore(connection)
props = lambda a: {k: getattr(v, v.WhichOneof("value")) for k, v in a.custom_properties.items()}
[model] = store.get_artifacts_by_type("Model")
blessings = sorted(store.get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
def records(split):
    files = glob.glob(os.path.join(root, "CsvExampleGen", "examples", "*", "Split-" + split, "*"))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
def column(rs, key):
    return np.array([tf.train.Example.FromString(r).features.feature[key].float_list.value[0] for r in rs])
keys = breast_cancer.feature_keys()
public = records("public")
x_public = np.stack([column(public, k) for k in keys], axis=1)
evaluated = records("eval")
labels = np.array([tf.train.Example.FromString(r).features.feature["diagnosis"].int64_list.value[0]
                   for r in evaluated])
loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
probabilities = loaded.signatures["serving_default"](examples=tf.constant(evaluated))["probabilities"].numpy()
print(json.dumps({"model": props(model), "blessings": [props(b) for b in blessings],
                  "splits": {s: len(records(s)) for s in ("train", "public", "eval")},
                  "public_mean": x_public.mean(axis=0).tolist(), "public_std": x_public.std(axis=0).tolist(),
                  "model_mean": loaded.mean.numpy().tolist(), "model_std": loaded.std.numpy().tolist(),
                  "shape": list(probabilities.shape),
                  "accuracy": float(np.mean((probabilities[:, 0] > 0.5) == labels)),
                  "executions": sorted({store.get_execution_types_by_id([e.type_id])[0].name
                                        for e in store.get_executions()}),
                  "pushed": sorted(os.listdir(os.path.join(root, "serving_model")))}))
"""


@pytest.fixture(scope="module")
def pate_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ppml-pate-pipeline"))
    options = (
        "--trainer",
        "pate",
        "--trainer-config",
        json.dumps(SETTINGS),
        "--max-membership-auc",
        "0.7",
        "--min-accuracy",
        str(MIN_ACCURACY),
        "--pipeline-root",
        root,
    )
    first = ppml("pipeline", "run", *options, "--epsilon-budget", str(BUDGET), "--json")
    text = ppml("report", "--pipeline-root", root).stdout
    ledger = privacy_ledger.read_ledger_file(json.loads(first.stdout)["model"]["properties"]["privacy_ledger_uri"])
    tight = ppml("pipeline", "run", *options, "--epsilon-budget", str(ledger.epsilon * 0.9), "--json")
    out = run_python(f"import sys; sys.argv = ['', {root!r}]\n{INSPECT}", legacy_keras=True).stdout
    return {
        **json.loads(out.strip().splitlines()[-1]),
        "report": json.loads(first.stdout),
        "text": text,
        "ledger": ledger,
        "tight": json.loads(tight.stdout),
        "stderr": first.stderr,
    }


def test_the_ledger_epsilon_is_dp_accountings_over_the_aggregation_of_the_public_split(pate_run):
    ledger, queries = pate_run["ledger"], pate_run["splits"]["public"]
    assert ledger.mechanism == "pate" and ledger.parameters["queries"] == queries
    assert "dataset_size" not in ledger.parameters  # the private split's count is not published
    assert 0 <= ledger.parameters["answered"] <= SETTINGS["max_answered"]
    decision = NoisyAccuracy.calibrate(DECISION_EPSILON, 1e-5)
    relation = NeighboringRelation.ADD_OR_REMOVE_ONE
    direct = {}
    for name, accountant in (
        ("rdp", rdp.RdpAccountant(neighboring_relation=relation)),
        ("pld", pld.PLDAccountant(neighboring_relation=relation)),
    ):
        accountant.compose(dp_event.GaussianDpEvent(decision.std / math.sqrt(2)))  # the push decision
        accountant.compose(dp_event.GaussianDpEvent(SETTINGS["sigma1"]), queries)  # every selection
        accountant.compose(
            dp_event.GaussianDpEvent(SETTINGS["sigma"] / math.sqrt(2)),  # the capped answers
            min(queries, SETTINGS["max_answered"]),
        )
        direct[name] = accountant.get_epsilon(1e-5)
    assert ledger.epsilons["rdp"] == pytest.approx(direct["rdp"], rel=1e-9)
    assert ledger.epsilons["pld"] == pytest.approx(direct["pld"], rel=1e-6)
    epsilon = min(direct.values())
    assert pate_run["model"]["epsilon"] == pytest.approx(privacy_ledger.mlmd_upper_bound(epsilon), rel=1e-6)
    assert pate_run["model"]["epsilon"] >= ledger.epsilon and pate_run["model"]["privacy_mechanism"] == "pate"


def test_the_gate_checks_that_epsilon_against_the_budget_and_the_student_is_pushed(pate_run):
    report, ledger = pate_run["report"], pate_run["ledger"]
    [check] = [c for c in report["gate"]["privacy_checks"] if c["name"] == "epsilon"]
    assert check["value"] == pytest.approx(ledger.epsilon) and check["bound"] == BUDGET and check["passed"]
    assert "data-independent" in check["reason"]
    assert pate_run["shape"][1] == 1 and pate_run["accuracy"] >= 0.6
    failed = [(c["name"], c.get("reason")) for c in report["gate"]["privacy_checks"] if not c["passed"]]
    assert failed == []  # settings that pass every check: the student must be blessed and pushed
    assert report["gate"]["blessed"] is True and report["pushed"]["pushed"] is True
    assert len(pate_run["pushed"]) == 1
    tight = pate_run["tight"]
    [check] = [c for c in tight["gate"]["privacy_checks"] if c["name"] == "epsilon"]
    assert not check["passed"] and check["value"] == pytest.approx(ledger.epsilon)
    assert tight["gate"]["blessed"] is False and tight["pushed"]["pushed"] is False
    assert [b["privacy_gate_passed"] for b in pate_run["blessings"]] == [1, 0]


def test_no_transform_runs_and_the_students_constants_are_the_public_splits_statistics(pate_run):
    assert "Transform" not in " ".join(pate_run["executions"])
    assert pate_run["splits"]["public"] > 0 and pate_run["splits"]["train"] > pate_run["splits"]["public"]
    assert pate_run["model_mean"] == pytest.approx(pate_run["public_mean"], rel=1e-5)
    assert pate_run["model_std"] == pytest.approx([s + 1e-6 for s in pate_run["public_std"]], rel=1e-5)


def test_the_report_names_the_analysis_the_aggregation_and_what_is_outside_the_guarantee(pate_run):
    text, privacy = pate_run["text"], pate_run["report"]["privacy"]
    assert "pate privacy ledger: example-level epsilon" in text and "data-independent" in text
    assert f"{pate_run['splits']['public']} queries of split 'public'" in text
    assert privacy["aggregation"]["aggregator"]["max_answered"] == SETTINGS["max_answered"]
    assert {"public split", "replacing one record"} <= set(privacy["outside_guarantee"])
    training = privacy["aggregation"]["student_training"]
    answered = pate_run["ledger"].parameters["answered"]
    assert training["method"] == "self-training" and training["answered_labels"] == answered
    assert (
        f"self-training (confidence 0.9, 2 rounds): {answered} answered + "
        f"{training['pseudo_labels']} pseudo-labelled queries" in text
    )
    assert any(line.startswith("[3/7] Trainer complete (") for line in pate_run["stderr"].splitlines())
