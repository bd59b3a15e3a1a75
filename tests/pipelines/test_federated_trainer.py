"""The Federated Trainer: settings checks, a client column at the executor, and a TFX pipeline end to end.

The pipeline (the factory's eight stages on the bundled breast-cancer data, with the Federated Trainer)
runs once through ``ppml pipeline run --trainer federated``; the checks read ML Metadata, the ledger and
the SavedModel directly and recompute epsilon with dp-accounting from the settings.
"""

import glob
import json
import math
import os

import dp_accounting
import numpy as np
import pytest
from click.testing import CliRunner
from dp_accounting import dp_event

from pipelines.cli.main import cli
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting

from ..conftest import run_python
from .conftest import assert_carries_only_released_statistics, carried_statistics, ppml

CONFIG = {
    "label_key": "diagnosis",
    "partition": "dirichlet",
    "alpha": 1.0,
    "num_clients": 20,
    "rounds": 8,
    "sampling": "poisson",
    "fraction": 0.5,
    "private": True,
    "noise_multiplier": 0.5,
    "clipping_norm": 1.0,
    "client_learning_rate": 0.1,
    "local_epochs": 2,
    "max_examples_per_client": 90,
    "num_classes": 2,
}
K = 15
"""The pipeline run's max_examples_per_client (CONFIG's 90 gave a client-level epsilon near 640, whose PLD
accounting, repeated by the Trainer, the Evaluator and the report, took most of the run's time)."""
PREPROCESSING_EPSILON = 1.0
"""The Transform's private analyzers' budget (per record). A client of up to K records moves them K times as
far: the model's client-level epsilon is about 40, which is what central preprocessing costs a client-level
guarantee; the test checks the accounting and the gate's mechanics with a budget of 1000. The push decision's
noisy accuracy gets epsilon `DECISION_EPSILON` for the same reason: a client moves it as K held-out records do
(noise std about 7.4 on each count)."""
DECISION_EPSILON = 10.0

MIN_ACCURACY = 0.5
"""The gate's utility threshold here. The noise comes from the OS CSPRNG (the preprocessing's, at client level a
group of K records, and the rounds'), so utility varies run to run: most runs reach 0.95, some fall to the
majority class (0.61) (seen with K = 90; one run at K = 30 reached 0.94); the test checks serving, accounting
and the gate's mechanics, not utility."""

INSPECT = """
import glob, json, os, sys
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from pipelines.trainers.federated import read_split
root = sys.argv[1]
connection = metadata_store_pb2.ConnectionConfig()
connection.sqlite.filename_uri = os.path.join(root, "metadata.sqlite")
store = metadata_store.MetadataStore(connection)
props = lambda a: {k: getattr(v, v.WhichOneof("value")) for k, v in a.custom_properties.items()}
[model] = store.get_artifacts_by_type("Model")
[blessing] = store.get_artifacts_by_type("ModelBlessing")
[run] = store.get_artifacts_by_type("ModelRun")
serving = tf.saved_model.load(os.path.join(model.uri, "Format-Serving")).signatures["serving_default"]
files = glob.glob(os.path.join(root, "CsvExampleGen", "examples", "*", "Split-eval", "*"))
records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
labels = np.array([tf.train.Example.FromString(r).features.feature["diagnosis"].int64_list.value[0]
                   for r in records])
probabilities = serving(examples=tf.constant(records))["probabilities"].numpy()
# Transform's output given to the Trainer's reader with the transform graph (its own test below).
[graph] = glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))
try:
    read_split([os.path.join(root, "Transform", "transformed_examples", "*", "Split-train", "*")],
               tft.TFTransformOutput(graph))
    refusal = None
except ValueError as err:
    refusal = str(err)
print(json.dumps({"refusal": refusal, "model": props(model), "model_uri": model.uri, "blessing": props(blessing),
                  "shape": list(probabilities.shape), "accuracy": float(np.mean((probabilities[:, 0] > 0.5) == labels)),
                  "history": json.load(open(os.path.join(run.uri, "history.json"))),
                  "pushed": sorted(os.listdir(os.path.join(root, "serving_model")))}))
"""


@pytest.fixture(scope="module")
def federated_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ppml-federated-pipeline"))
    settings = {
        **{k: v for k, v in CONFIG.items() if k not in ("private", "noise_multiplier")},
        "max_examples_per_client": K,
        "decision_epsilon": DECISION_EPSILON,
    }
    proc = ppml(
        "pipeline",
        "run",
        "--trainer",
        "federated",
        "--dp",
        "--noise-multiplier",
        "0.5",
        "--preprocessing-epsilon",
        str(PREPROCESSING_EPSILON),
        "--trainer-config",
        json.dumps(settings),
        "--epsilon-budget",
        "1000",
        "--privacy-unit",
        "client",
        "--max-membership-auc",
        "0.7",
        "--min-accuracy",
        str(MIN_ACCURACY),
        "--pipeline-root",
        root,
        "--json",
    )
    out = run_python(f"import sys; sys.argv = ['', {root!r}]\n{INSPECT}", legacy_keras=True).stdout
    return {
        **json.loads(out.strip().splitlines()[-1]),
        "report": json.loads(proc.stdout),
        "stderr": proc.stderr,
        "root": root,
    }


def test_private_federated_model_carries_the_accountants_epsilon(federated_run):
    props = federated_run["model"]
    # Client-level DP-FedAvg: Poisson sampling of clients with q = 0.5, z = 0.5, one event per round,
    # delta = 0.01 (the largest power of ten at most 1/(2N) for N = 20 clients), after the Transform graph's 30
    # private releases, which a client of up to K records moves K times as far as one record.
    with open(props["privacy_ledger_uri"]) as f:
        ledger = json.load(f)
    prior, prior_replaced = [], []
    for record in ledger["preprocessing"]["account"]["mechanisms"]:
        per_record = 1 / math.sqrt(
            sum((c["sensitivity"] / c["noise_std"]) ** 2 for c in record["components"] if c["sensitivity"])
        )
        prior.append(dp_event.GaussianDpEvent(per_record / K))
        prior_replaced.append(dp_event.GaussianDpEvent(per_record / 2))  # one record replaced: removed, added
    assert len(prior) == 30 and ledger["preprocessing"]["group_size"] == K
    # Then the push decision's noisy accuracy (L2 sensitivity sqrt(2) per held-out record), reserved for K records.
    decision = ledger["decision"]
    assert decision["group_size"] == K
    prior.append(dp_event.GaussianDpEvent(decision["std"] / (math.sqrt(2) * K)))
    prior_replaced.append(dp_event.GaussianDpEvent(decision["std"] / math.sqrt(2)))
    event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(0.5))
    rdp = (
        dp_accounting.rdp.RdpAccountant()
        .compose(dp_event.ComposedDpEvent(prior + [dp_event.SelfComposedDpEvent(event, 8)]))
        .get_epsilon(0.01)
    )
    rounds_alone = dp_accounting.rdp.RdpAccountant().compose(event, 8).get_epsilon(0.01)
    assert props["private"] == 1 and props["privacy_mechanism"] == "dp-fedavg"
    assert props["dp_steps"] == 8 and props["delta"] == 0.01 and props["noise_multiplier"] == 0.5
    assert props["sampling"] == "poisson" and props["adjacency"] == "add-remove" and props["l2_norm_clip"] == 1.0
    assert ledger["epsilon"]["rdp"] == pytest.approx(rdp, rel=1e-9)
    assert ledger["composition"]["parts"]["training"]["rdp"] == pytest.approx(rounds_alone, rel=1e-9)
    assert props["epsilon"] == min(props["epsilon_rdp"], props["epsilon_pld"])
    assert rdp <= props["epsilon_rdp"] <= rdp + 1e-6  # ML Metadata keeps 6 decimal places, rounded up
    assert props["privacy_ledger_uri"].startswith(os.path.join(federated_run["model_uri"], "Format-Serving"))
    assert ledger["mechanism"] == "dp-fedavg" and ledger["privacy_unit"] == "client" == props["privacy_unit"]
    assert ledger["parameters"]["dataset_size"] == 20 and ledger["parameters"]["noise"] == "csprng"
    # One record changes one client's data (N fixed): a client replaced, which add/remove accounting of
    # Poisson sampling does not cover; the ledger accounts it beside, replace-one (PLD), after the preprocessing
    # releases as one replaced record moves them.
    replaced = (
        dp_accounting.pld.PLDAccountant(
            dp_accounting.NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
        )
        .compose(dp_event.ComposedDpEvent(prior_replaced + [dp_event.SelfComposedDpEvent(event, 8)]))
        .get_epsilon(0.01)
    )
    record = ledger["parameters"]["record_level"]
    assert (record["client_adjacency"], record["record_adjacency"]) == ("replace-one", "add-remove")
    assert record["epsilon"] == pytest.approx(replaced, rel=1e-9)
    assert record["epsilon"] > ledger["composition"]["parts"]["training"]["pld"] and "the artifact" in record["covers"]
    assert props["epsilon_record_level"] == pytest.approx(replaced, rel=1e-5)
    assert federated_run["report"]["privacy"]["record_level"]["epsilon"] == record["epsilon"]
    history = federated_run["history"]
    assert history["rounds"][-1]["metrics"]["epsilon_rdp"] == pytest.approx(rounds_alone, rel=1e-12)
    # The eval split's rows are private: listed, here and in the ledger (the classes are a setting).
    assert set(history["config"]["outside_guarantee"]) == {"evaluation"}
    assert set(ledger["parameters"]["outside_guarantee"]) == LISTED
    assert "client_sizes_sum" not in history["config"] and history["rounds"][0]["nonfinite"] is None
    assert history["config"]["num_clients"] == 20
    assert history["config"]["partition"] == {
        "name": "keyed",
        "num_clients": 20,
        "rule": "dirichlet",
        "alpha": 1.0,
        "seed": 0,
    }


def test_exported_model_serves_raw_examples_and_passes_the_private_evaluator(federated_run):
    # Noise from the OS CSPRNG (training and preprocessing): the accuracy varies run to run (MIN_ACCURACY).
    assert federated_run["shape"][1] == 1 and federated_run["accuracy"] >= MIN_ACCURACY
    blessing = federated_run["blessing"]
    assert blessing["blessed"] == 1 and blessing["privacy_gate_passed"] == 1
    assert len(federated_run["pushed"]) == 1


def test_the_exported_model_carries_its_released_statistics_not_the_exact_ones(federated_run):
    [pushed] = federated_run["pushed"]
    [train] = glob.glob(os.path.join(federated_run["root"], "CsvExampleGen", "examples", "*", "Split-train"))
    model_dir = os.path.join(federated_run["root"], "serving_model", pushed)
    assert_carries_only_released_statistics(carried_statistics(model_dir, train))


LISTED = {
    "client count N",
    "separate runs on the same data",
    "evaluation",
    "preprocessing beyond K records per client",
    "feature spec inferred from the data",
    "push decision beyond K held-out records per client",
    "floating-point noise",
}
"""What the pipeline's private Federated Trainer lists outside its guarantee (every ledger: separate runs; every
DP-FedAvg ledger: N and the floating-point noise; its spec comes from SchemaGen; it reserves a push decision)."""


def test_pipeline_command_runs_the_federated_trainer_and_reports_its_ledger(federated_run):
    report = federated_run["report"]
    assert list(report["stages"]) == [
        "CsvExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "ExampleValidator",
        "Transform",
        "Trainer",
        "Evaluator",
        "Pusher",
    ]
    assert set(report["stages"].values()) == {"complete"}
    privacy = report["privacy"]
    assert privacy["mechanism"] == "dp-fedavg" and privacy["delta"] == 0.01
    assert privacy["epsilon"]["rdp"] == pytest.approx(federated_run["model"]["epsilon_rdp"], rel=1e-5)
    assert privacy["artifact"]["parts"]["preprocessing"]["rdp"] > privacy["artifact"]["parts"]["training"]["rdp"]
    assert report["gate"]["blessed"] is True and report["pushed"]["pushed"] is True
    # What the trainer listed outside its guarantee in the ledger is labelled in the report too.
    assert {
        item.split(" (listed by the trainer)")[0]
        for item in report["outside_the_guarantee"]
        if "(listed by the trainer)" in item
    } == LISTED - {"client count N"}  # N: the Evaluator's own line for n names it
    assert report["privacy"]["outside_guarantee"].keys() == LISTED
    # The push decision is the noisy accuracy, within the ledger's epsilon; the exact metrics are labelled.
    decision = report["gate"]["push_decision"]
    assert decision["noisy_accuracy"] >= MIN_ACCURACY and decision["noisy_rows"] > 0
    assert any(
        item.startswith("exact utility metrics") and "decide nothing" in item
        for item in report["outside_the_guarantee"]
    )
    assert any(line.startswith("[6/8] Trainer complete (") for line in federated_run["stderr"].splitlines())


@pytest.mark.parametrize(
    "options, message",
    [
        (("--epochs", "3"), "--epochs sets DP-SGD training (--trainer dp)"),
        (("--encrypted-check",), "the encrypted check runs Keras models"),
        (("--trainer-config", "[1]"), "must be a JSON object"),
        (("--trainer-config", '{"num_clients": 0}'), "custom_config['num_clients']"),
        (
            ("--dp", "--noise-multiplier", "1", "--preprocessing-epsilon", "1", "--privacy-unit", "client"),
            "custom_config['max_examples_per_client']: the private Transform's releases are accounted per record",
        ),
        (
            ("--trainer-config", '{"client_key": "mean_radius"}'),
            "privacy_unit (--privacy-unit) 'example': the Federated Trainer's epsilon is user-level",
        ),
        (
            ("--trainer-config", '{"client_key": "mean_radius"}', "--privacy-unit", "client"),
            "'client': the Federated Trainer's epsilon is user-level",
        ),
    ],
)
def test_pipeline_command_refuses_federated_settings_it_cannot_run(tmp_path, options, message):
    """In this process (click's CliRunner, stderr apart from stdout); one refusal also runs in a fresh
    interpreter below."""
    root = tmp_path / "root"
    result = CliRunner().invoke(
        cli, ["pipeline", "run", "--trainer", "federated", *options, "--pipeline-root", str(root)]
    )
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert result.stderr.count("\n") == 1 and result.stdout == "", result.output
    assert not (root / "metadata.sqlite").exists()


def test_a_federated_refusal_in_a_fresh_interpreter_is_one_line_on_stderr_and_exit_2(tmp_path):
    """The real entry point: exit status 2, and nothing else on the process's stderr (an import's or a
    library's message, which the in-process refusals above cannot see)."""
    root = tmp_path / "root"
    proc = ppml(
        "pipeline",
        "run",
        "--trainer",
        "federated",
        "--trainer-config",
        "[1]",
        "--pipeline-root",
        str(root),
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "must be a JSON object" in proc.stderr, proc.stderr
    assert not root.exists()


def test_client_column_partitions_naturally_with_secure_aggregation_and_a_public_run_has_no_ledger(
    tmp_path, python_subprocess
):
    code = f"""
import json, os
import tensorflow as tf
from tfx.types import standard_artifacts
from pipelines.components.federated_trainer.executor import Executor
root = {str(tmp_path)!r}
for split, count in (("train", 240), ("eval", 60)):
    os.makedirs(os.path.join(root, "examples", "Split-" + split))
    with tf.io.TFRecordWriter(os.path.join(root, "examples", "Split-" + split, "data.gz"), options="GZIP") as w:
        for i in range(count):
            x = [float(i % 2), float((i // 2) % 3)]
            feature = {{"x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                       "site": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"site-%d" % (i % 6)])),
                       "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))}}
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
examples = standard_artifacts.Examples(); examples.uri = os.path.join(root, "examples")
examples.split_names = '["train", "eval"]'
model = standard_artifacts.Model(); model.uri = os.path.join(root, "model")
run = standard_artifacts.ModelRun(); run.uri = os.path.join(root, "run")
config = {{"label_key": "y", "client_key": "site", "rounds": 3, "fraction": 1.0, "client_learning_rate": 0.5,
          "execution": "sequential", "secure_aggregation": True}}
Executor().Do({{"examples": [examples]}}, {{"model": [model], "model_run": [run]}},
              {{"custom_config": json.dumps(config), "run_fn": "pipelines.trainers.federated.run_fn",
               "train_args": json.dumps({{"splits": ["train"]}}), "eval_args": json.dumps({{"splits": ["eval"]}})}})
history = json.load(open(os.path.join(root, "run", "history.json")))
print(json.dumps({{"private": model.get_int_custom_property("private"), "clients": history["config"]["num_clients"],
                  "aggregation": history["config"]["aggregation"]["name"],
                  "partition": history["config"]["partition"]["name"], "sampled": history["rounds"][0]["sampled"],
                  "accuracy": history["rounds"][-1]["evaluation"]["accuracy"],
                  "ledger": os.path.exists(os.path.join(root, "model", "Format-Serving", "assets.extra"))}}))
"""
    result = json.loads(python_subprocess(code, legacy_keras=True).stdout.strip().splitlines()[-1])
    assert result["clients"] == 6 and result["partition"] == "natural" and result["sampled"] == 6
    assert result["aggregation"] == "secure"
    assert result["private"] == 0 and result["ledger"] is False
    assert result["accuracy"] == 1.0  # the label is feature x[0]


def _numbers(text: str, pattern: str) -> tuple[float, ...]:
    import re

    return tuple(float(x) for x in re.search(pattern, text).groups())


@pytest.mark.parametrize(
    "settings, independent",
    [  # one round's epsilon recomputed from dp-accounting: Poisson q = 0.1 of N = 50 (PLD, add/remove, delta 1e-3);
        # a client's own update with noise z / 2 per unit move (local trust, RDP, delta 1e-5)
        (
            {"noise_multiplier": 1.1, "sampling": "poisson", "accountant": "pld", "delta": 1e-3},
            dp_accounting.pld.PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
            .compose(dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(1.1)))
            .get_epsilon(1e-3),
        ),
        (
            {"noise_multiplier": 2.1, "trust_model": "local", "accountant": "rdp", "delta": 1e-5},
            dp_accounting.rdp.RdpAccountant().compose(dp_event.GaussianDpEvent(1.05)).get_epsilon(1e-5),
        ),
    ],
)
def test_a_max_epsilon_below_one_rounds_epsilon_prints_below_it(settings, independent):
    """The refusal shows max_epsilon and one round's epsilon as privacy.compared widens them: before, ':g' and
    '.4g' printed max_epsilon = 0.5121042848 below 0.512104284826 as '0.512104 is below one round's epsilon
    0.5121' (4.4712676509 below 4.47126765136: '4.47127 ... 4.471')."""
    base = {"label_key": "y", "private": True, "num_classes": 2, **settings}
    for shortfall in (1e-3, 1e-6, 1e-9, 1e-12):
        config = FederatedTrainingConfig.from_custom_config({**base, "max_epsilon": independent * (1 - shortfall)})
        with pytest.raises(InvalidFederatedSetting) as refused:
            config.plan(50)
        bound, first = _numbers(str(refused.value), r"max_epsilon'\]: (\S+) is below one round's epsilon (\S+) ")
        assert bound < first and first == pytest.approx(independent, rel=1e-3), str(refused.value)


def test_delta_not_below_one_over_n_clients_fails_before_training():
    config = FederatedTrainingConfig.from_custom_config({**CONFIG, "delta": 0.1})
    with pytest.raises(
        InvalidFederatedSetting,
        match=r"custom_config\['delta'\]: must be below 1/N = 0.05 for "
        r"N = 20 clients",
    ):
        config.plan(20)
    with pytest.raises(InvalidFederatedSetting) as refused:  # 1/6 prints as 0.167 to 3 digits, above 1/6
        FederatedTrainingConfig.from_custom_config({**CONFIG, "num_clients": 6, "delta": 1 / 6}).plan(6)
    assert _numbers(str(refused.value), r"below 1/N = (\S+) for .*, got (\S+)$") == (1 / 6, 1 / 6), str(refused.value)
    plan = FederatedTrainingConfig.from_custom_config({**CONFIG, "noise_multiplier": None, "target_epsilon": 5.0}).plan(
        20
    )
    event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(plan.mechanism.noise_multiplier))
    assert dp_accounting.rdp.RdpAccountant().compose(event, 8).get_epsilon(0.01) == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label_key": None}, r"custom_config\['label_key'\]: name the label column"),
        ({"num_client": 5}, r"custom_config\['num_client'\]: unknown setting; did you mean 'num_clients'\?"),
        (
            {"partition": "pathological"},
            r"custom_config\['partition'\]: must be one of iid, quantity, dirichlet, shards",
        ),
        ({"fraction": 1.5}, r"custom_config\['fraction'\]: must be in \(0, 1\], got 1.5"),
        (
            {"target_epsilon": 3.0},
            r"custom_config\['noise_multiplier'\]: give noise_multiplier or target_epsilon, "
            r"not both",
        ),
        ({"partition": "shards"}, r"custom_config\['partition'\]: shards cut the label-sorted records"),
        ({"seed": 2**32}, r"custom_config\['seed'\]: must be an integer in \[0, 4294967295\], got 4294967296"),
        ({"private": False}, r"custom_config\['noise_multiplier'\]: is a privacy setting, but 'private' is false"),
        (
            {"private": False, "noise_multiplier": None, "clip": "adaptive"},
            r"custom_config\['clip'\]: is a privacy setting, but 'private' is false",
        ),
        (
            {"private": False, "noise_multiplier": None, "clipping_norm": None, "delta": 1e-3},
            r"custom_config\['delta'\]: is a privacy setting, but 'private' is false",
        ),
        ({"execution": "auto"}, r"custom_config\['execution'\]: 'auto' picks by timing the clients' training"),
        ({"rounds": 0}, r"custom_config\['rounds'\]: must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_are_named(change, message):
    with pytest.raises(InvalidFederatedSetting, match=message):
        FederatedTrainingConfig.from_custom_config({**CONFIG, **change})


def test_with_a_client_key_the_trainer_refuses_dealing_settings_and_poisson_sampling_and_warns_in_users():
    """One client per key: the dealing settings are refused rather than ignored; N is the number of users,
    released, so only uniform sampling (replace-one user) is private; a delta near 1/N warns in users, in the
    Trainer's log and its ledger, as the command line does."""
    users = {k: v for k, v in CONFIG.items() if k not in ("partition", "alpha", "num_clients")}
    users["client_key"] = "user"
    for key in ("partition", "num_clients", "alpha", "shards_per_client"):
        with pytest.raises(
            InvalidFederatedSetting,
            match=rf"custom_config\['{key}'\]: deals records to "
            rf"clients, but with client_key 'user' each of its values",
        ):
            FederatedTrainingConfig.for_trainer({**users, key: CONFIG.get(key, 2)})
    with pytest.raises(
        InvalidFederatedSetting,
        match=r"custom_config\['sampling'\]: with one client per user, N is "
        r"the number of users in the data",
    ):
        FederatedTrainingConfig.for_trainer(users)
    plan = FederatedTrainingConfig.for_trainer({**users, "sampling": "uniform", "delta": 0.08}).plan(10)
    assert plan.delta_warning.startswith("delta=0.08 is 0.8/n (n=10 users), close to 1/n")
    assert FederatedTrainingConfig.for_trainer({**users, "sampling": "uniform"}).plan(10).delta_warning is None


def test_the_trainer_refuses_seeded_noise_and_calibrates_for_epsilon_three_by_default():
    """ppml's one default for a private run without a noise setting: z calibrated for epsilon 3."""
    with pytest.raises(InvalidFederatedSetting, match=r"custom_config\['seeded_noise'\]: the Federated Trainer"):
        FederatedTrainingConfig.for_trainer({**CONFIG, "seeded_noise": True})
    plan = FederatedTrainingConfig.for_trainer({**CONFIG, "noise_multiplier": None}).plan(20)
    z = plan.mechanism.noise_multiplier
    event = dp_event.PoissonSampledDpEvent(0.5, dp_event.GaussianDpEvent(z))
    assert 3.0 - 0.01 <= dp_accounting.rdp.RdpAccountant().compose(event, 8).get_epsilon(0.01) <= 3.0
    assert plan.target_epsilon == 3.0 and plan.strategy().seeded_noise is False


def test_record_level_epsilon_falls_back_to_group_privacy_where_pld_declines():
    """z = 0.19 under Poisson sampling is below PLD's cost limit: a replaced client is a removal and an addition,
    so RDP group privacy over 2 neighbours bounds it: min over delta' of 2 eps(delta') with
    delta' (1 + e^eps(delta')) <= delta, recomputed here on a grid from dp-accounting (the search beats the grid)."""
    settings = {**CONFIG, "num_clients": 100, "fraction": 0.1, "rounds": 3, "noise_multiplier": 0.19}
    plan = FederatedTrainingConfig.for_trainer(settings).plan(100)
    record = plan.record_level(3)
    assert record["accountant"] == "rdp, group privacy of 2" and record["client_adjacency"] == "replace-one"
    event = dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(0.19))
    accountant = dp_accounting.rdp.RdpAccountant().compose(event, 3)
    grid = [10.0 ** (-k / 4) for k in range(8, 1200)]
    feasible = [
        2 * e for d, e in ((d, accountant.get_epsilon(d)) for d in grid) if d * (1 + np.exp(min(e, 700))) <= plan.delta
    ]
    assert feasible and accountant.get_epsilon(plan.delta) < record["epsilon"] <= min(feasible) * (1 + 1e-9)
    assert record["epsilon"] >= 0.95 * min(feasible)


NEIGHBOURS = """
import functools, glob, json, os, sys
import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
from federated.data.examples import read_tf_records, stack_features
from federated.partitioners import KeyedPartitioner, content_keys
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig
from pipelines.trainers import breast_cancer
from pipelines.trainers.federated import client_data, read_split, resolve_feature_keys
from pipelines.transform.spec import PreprocessingConfig
root, work, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = FederatedTrainingConfig.for_trainer(settings)
[graph] = glob.glob(os.path.join(root, "Transform", "transform_graph", "*"))
spec = tft.TFTransformOutput(graph).raw_feature_spec()
records = read_tf_records(sorted(glob.glob(os.path.join(root, "CsvExampleGen", "examples", "*", "Split-train", "*"))))

# Exact statistics, which move with every record (private ones move too, by the record's clipped contribution).
exact_preprocessing_fn = functools.partial(breast_cancer.preprocessing_fn,
                                           custom_config=PreprocessingConfig(private=False).to_custom_config())

def transform_and_read(name, chosen):
    # What the pipeline does with this training split: Transform fits its analyzers on it, the Trainer reads it.
    path = os.path.join(work, name + ".tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in chosen:
            writer.write(record)
    rows = [{k: v.numpy() for k, v in tf.io.parse_single_example(r, spec).items()} for r in chosen]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    graph = os.path.join(work, name + "-graph")
    with beam.Pipeline() as pipeline:
        with tft_beam.Context(temp_dir=os.path.join(work, name + "-tmp")):
            fitted = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(exact_preprocessing_fn)
            _ = fitted | tft_beam.WriteTransformFn(graph)
    metadata_io.write_metadata(metadata, os.path.join(graph, tft.TFTransformOutput.RAW_METADATA_DIR))
    return read_split([path], tft.TFTransformOutput(graph))

def clients(split):
    data = client_data(config, split, resolve_feature_keys(config, split), 2)
    return [{split.keys[i] for i in ix} for ix in data.partition.indices]

def transformed_content_clients(split):   # keying Transform's output instead: what the Trainer did before
    x = stack_features(split.columns, resolve_feature_keys(config, split))
    data = client_data(config, split, resolve_feature_keys(config, split), 2)
    owner = np.empty(len(x), int)
    for k, ix in enumerate(KeyedPartitioner(num_clients=20, rule="dirichlet", alpha=1.0).partition(
            data.y, keys=content_keys(x, data.y)).indices):
        owner[ix] = k
    return owner

full, fewer = transform_and_read("full", records), transform_and_read("fewer", records[1:])
feature = resolve_feature_keys(config, full)[0]
print(json.dumps({
    "records": len(records),
    "changed_clients": sum(a != b for a, b in zip(clients(full), clients(fewer))),
    "transform_moved": bool(not np.array_equal(full.columns[feature][1:], fewer.columns[feature])),
    "moved_by_transformed_keys": int(np.sum(transformed_content_clients(full)[1:]
                                            != transformed_content_clients(fewer))),
}))
"""


def test_one_removed_record_changes_one_client_through_transform(federated_run, tmp_path):
    """The Trainer's partition of neighbouring training splits, each transformed by a graph fitted on it
    (as Transform does in the pipeline): the z-score's constants move every transformed record, yet the
    Trainer keys records by their raw content, so exactly one client changes. Keys of the transformed
    records (the Trainer before) move most records to another client."""
    proc = run_python(
        f"import sys; sys.argv = ['', {federated_run['root']!r}, {str(tmp_path)!r}, "
        f"{json.dumps(CONFIG)!r}]\n{NEIGHBOURS}",
        legacy_keras=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["records"] > 300 and result["transform_moved"] is True
    assert result["changed_clients"] == 1
    assert result["moved_by_transformed_keys"] > result["records"] // 2


def test_the_trainer_refuses_transformed_examples_it_cannot_key_by_raw_content(federated_run):
    """Transform's output with the transform graph: the raw features are gone, so the records cannot be keyed
    before Transform's constants; a one-line error says which examples to give (read by the fixture's
    inspecting interpreter, `INSPECT`)."""
    refusal = federated_run["refusal"]
    assert refusal is not None and "give it ExampleGen's examples, not Transform's" in refusal, refusal
    assert "\n" not in refusal


def test_a_private_trainer_leaves_out_a_record_it_cannot_train_on_instead_of_failing():
    """One record with a NaN feature or a label outside num_classes: the public Trainer refuses it, a private
    one deals the same clients as without it (the run's existence is no function of one record)."""
    from federated.partitioners import record_keys
    from pipelines.trainers.federated import Split, client_data

    rng = np.random.default_rng(0)
    columns = {
        "a": rng.normal(size=80).astype(np.float32),
        "b": rng.normal(size=80).astype(np.float32),
        "diagnosis": rng.integers(0, 2, 80),
    }
    config = FederatedTrainingConfig.for_trainer({**CONFIG, "num_classes": 2})
    clean = client_data(config, Split(columns, columns, record_keys(columns)), ["a", "b"], 2)
    for bad in ({"a": np.nan}, {"b": np.inf}, {"diagnosis": 5}):
        row = {"a": 0.5, "b": 0.5, "diagnosis": 1, **bad}
        plus = {k: np.append(v, np.asarray(row[k], v.dtype)) for k, v in columns.items()}
        data = client_data(config, Split(plus, plus, record_keys(plus)), ["a", "b"], 2)
        assert data.partition == clean.partition and np.array_equal(data.x, clean.x)
        assert config.model_classes(5) == 2
        public = FederatedTrainingConfig.for_trainer(
            {**CONFIG, "private": False, "noise_multiplier": None, "clipping_norm": None, "num_classes": 2}
        )
        with pytest.raises((ValueError, InvalidFederatedSetting), match="NaN|does not fit 2 classes"):
            public.model_classes(5) if "diagnosis" in bad else client_data(
                public, Split(plus, plus, record_keys(plus)), ["a", "b"], 2
            )


def test_a_private_trainer_counts_the_users_of_both_splits():
    """One client per user: a user all of whose records ExampleGen put in the eval split is still a client (an
    empty one), so replacing a user by one whose records are all held out leaves N, the number the ledger
    releases, unchanged."""
    from federated.partitioners import record_keys
    from pipelines.trainers.federated import Split, client_data

    rng = np.random.default_rng(0)

    def split(users):
        columns = {
            "a": rng.normal(size=len(users)).astype(np.float32),
            "diagnosis": rng.integers(0, 2, len(users)),
            "user": np.array(users, dtype=object),
        }
        return Split(columns, columns, record_keys(columns))

    config = FederatedTrainingConfig.for_trainer(
        {"label_key": "diagnosis", "client_key": "user", "private": True, "noise_multiplier": 1.0, "num_classes": 2}
    )
    train = [f"u{i}".encode() for i in range(9) for _ in range(5)]
    counts = {}
    for name, (more_train, more_eval) in {"in train": ([b"u9"] * 3, [b"u9"]), "held out": ([], [b"u9"])}.items():
        data = client_data(config, split(train + more_train), ["a"], 2, held_out=split([b"u0", b"u3"] + more_eval))
        counts[name] = (data.num_clients, data.client_ids, int(data.sizes()[-1]))
    assert counts == {
        "in train": (10, tuple(f"u{i}" for i in range(10)), 3),
        "held out": (10, tuple(f"u{i}" for i in range(10)), 0),
    }


@pytest.mark.parametrize(
    "bad", ["missing feature", "other kind", "other first record", "unreadable user", "not a tf.Example"]
)
def test_a_private_trainer_reads_each_record_against_a_declared_spec(tmp_path, bad):
    """Neighbouring splits, one with a record that lacks a feature, holds one as bytes, comes first with an
    extra feature and a feature of two values, has a user id of another kind, or is not a tf.Example. Read from
    the first record, the features would refuse the run, fail it or change with it; a private Trainer reads each
    record alone against the declared spec (here feature_keys), so the features and every client's data are the same."""
    import tensorflow as tf

    from pipelines.trainers.federated import client_data, declared_spec, read_split, resolve_feature_keys
    from tests.federated.test_cli_neighbours import _example as example

    rng = np.random.default_rng(0)
    records = [
        example(a=[float(a)], b=[float(b)], y=[int(a > 0)], user=[b"u%d" % (i % 4)])
        for i, (a, b) in enumerate(rng.normal(size=(40, 2)))
    ]
    extra = {
        "missing feature": example(a=[0.5], y=[1], user=[b"u1"]),
        "other kind": example(a=[0.5], b=[b"0.5"], y=[1], user=[b"u1"]),
        "other first record": example(a=[0.5, 0.5], b=[0.5], c=[1.0], y=[1], user=[b"u1"]),
        "unreadable user": example(a=[0.5], b=[0.5], y=[1], user=[0.5]),
        "not a tf.Example": b"\xff\xff\xff\xff not a proto",
    }[bad]
    config = FederatedTrainingConfig.for_trainer(
        {
            "label_key": "y",
            "client_key": "user",
            "feature_keys": ["a", "b"],
            "private": True,
            "noise_multiplier": 1.0,
            "num_classes": 2,
        }
    )
    spec = declared_spec(config, None, None)
    clients = {}
    for name, rows in (("clean", records), ("bad", [extra, *records])):
        os.makedirs(tmp_path / name)
        with tf.io.TFRecordWriter(str(tmp_path / name / "data")) as writer:
            for record in rows:
                writer.write(record)
        split = read_split([str(tmp_path / name / "*")], None, spec)
        assert resolve_feature_keys(config, split) == ["a", "b"]
        data = client_data(config, split, ["a", "b"], 2)
        clients[name] = {cid: data.client(k)[0].tolist() for k, cid in enumerate(data.client_ids)}
    assert clients["clean"] == clients["bad"] and len(clients["clean"]) == 4
    if bad == "not a tf.Example":  # a public Trainer (no spec) refuses it in one line
        with pytest.raises(ValueError, match="record 0 is not a serialized tf.Example"):
            read_split([str(tmp_path / "bad" / "*")])
    with pytest.raises(InvalidFederatedSetting, match="feature_keys"):
        declared_spec(FederatedTrainingConfig.for_trainer({**CONFIG}), None, None)


def test_a_private_trainer_reads_an_eval_split_without_records_instead_of_failing(tmp_path):
    """Neighbouring eval splits, one without records and one with a record: a private Trainer reads both (the
    empty one is scored as NaN, not refused), and the clients, their data and the features are the same."""
    import tensorflow as tf

    from federated.data.examples import stack_features
    from federated.data.screen import largest_label, trainable
    from pipelines.trainers.federated import client_data, declared_spec, read_split

    def example(a, y, user):
        feature = {
            "a": tf.train.Feature(float_list=tf.train.FloatList(value=[a])),
            "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
            "user": tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    config = FederatedTrainingConfig.for_trainer(
        {
            "label_key": "y",
            "client_key": "user",
            "feature_keys": ["a"],
            "private": True,
            "noise_multiplier": 1.0,
            "num_classes": 2,
        }
    )
    spec = declared_spec(config, None, None)
    splits = {
        "train": [example(0.1 * i, i % 2, b"u%d" % (i % 3)) for i in range(12)],
        "empty": [],
        "one": [example(0.5, 1, b"u1")],
    }
    for name, rows in splits.items():
        os.makedirs(tmp_path / name)
        with tf.io.TFRecordWriter(str(tmp_path / name / "data")) as writer:
            for record in rows:
                writer.write(record)
    train = read_split([str(tmp_path / "train" / "*")], None, spec)
    seen = {}
    for name in ("empty", "one"):
        evaluated = read_split([str(tmp_path / name / "*")], None, spec)
        x, y = stack_features(evaluated.columns, ["a"]), evaluated.columns["y"]
        assert x.shape == (len(splits[name]), 1) and trainable(x, y, 2).sum() == len(splits[name])
        assert largest_label(train.columns["y"], y) == 1
        data = client_data(config, train, ["a"], 2, held_out=evaluated)
        seen[name] = {cid: data.client(k)[0].tolist() for k, cid in enumerate(data.client_ids)}
    assert seen["empty"] == seen["one"] and sorted(seen["one"]) == ["u0", "u1", "u2"]
    with pytest.raises(ValueError, match="no records"):  # a public Trainer still refuses it
        read_split([str(tmp_path / "empty" / "*")])


def test_a_spec_from_a_schema_or_graph_is_listed_outside_the_guarantee_unless_declared_public():
    """The spec from a Transform graph or a schema (inferred by SchemaGen from the private data) is listed outside
    the guarantee of a private run, unless public_schema declares it fixed beforehand; feature_keys (settings)
    and a public run list nothing."""
    from pipelines.trainers.federated import INFERRED_SPEC, spec_caveat

    private = {**CONFIG, "partition": "iid"}
    for settings, transform, schema, listed in [
        (private, object(), None, True),
        (private, None, "schema.pbtxt", True),
        ({**private, "public_schema": True}, object(), "schema.pbtxt", False),
        (private, None, None, False),
        ({"label_key": "diagnosis"}, object(), None, False),
    ]:
        caveat = spec_caveat(FederatedTrainingConfig.for_trainer(settings), transform, schema)
        assert caveat == (INFERRED_SPEC if listed else {}), (settings, transform, schema)
    with pytest.raises(InvalidFederatedSetting, match="public_schema"):
        FederatedTrainingConfig.for_trainer({**private, "public_schema": "yes"})


def test_a_private_trainer_takes_its_spec_from_the_schema_without_a_transform_graph(tmp_path):
    """No transform graph: the schema's fixed-length features are the declared spec (kind and length), the
    client key is read as text of its declared kind."""
    from pipelines.trainers.federated import declared_spec

    (tmp_path / "schema.pbtxt").write_text("""
feature { name: "a" type: FLOAT shape { dim { size: 2 } } presence { min_fraction: 1 } }
feature { name: "y" type: INT shape { dim { size: 1 } } presence { min_fraction: 1 } }
feature { name: "user" type: BYTES shape { dim { size: 1 } } presence { min_fraction: 1 } }
""")
    config = FederatedTrainingConfig.for_trainer(
        {"label_key": "y", "client_key": "user", "private": True, "noise_multiplier": 1.0, "num_classes": 2}
    )
    spec = {c.name: (c.kind, c.length, c.accepts) for c in declared_spec(config, None, str(tmp_path / "schema.pbtxt"))}
    assert spec == {
        "a": ("float", 2, ("float_list",)),
        "y": ("int", 1, ("int64_list",)),
        "user": ("text", 1, ("bytes_list",)),
    }


def test_with_a_transform_graph_a_record_that_does_not_conform_is_not_transformed_but_keeps_its_place(tmp_path):
    """The graph parses records by its raw feature spec, so a record lacking a feature or holding one of another
    kind would fail the whole batch: a private Trainer transforms the conforming records only and gives the
    others NaN model inputs, so every other record's transformed values and every client's data stay the same."""
    import tensorflow as tf

    from pipelines.trainers.federated import client_data, declared_spec, read_split

    class Graph:  # a stand-in for tft.TFTransformOutput: x2 = 2 a, label passed through
        @staticmethod
        def raw_feature_spec():
            return {"a": tf.io.FixedLenFeature([], tf.float32), "y": tf.io.FixedLenFeature([], tf.int64)}

        @staticmethod
        def transform_features_layer():
            return lambda features: {"x2": 2 * features["a"], "y": features["y"]}

    def example(**features):
        lists = {
            float: lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v)),
            int: lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v)),
        }
        return tf.train.Example(
            features=tf.train.Features(feature={k: lists[type(v[0])](v) for k, v in features.items()})
        ).SerializeToString()

    records = [example(a=[float(a)], y=[int(a > 0)]) for a in np.random.default_rng(0).normal(size=30)]
    config = FederatedTrainingConfig.for_trainer(
        {"label_key": "y", "num_clients": 3, "private": True, "noise_multiplier": 1.0, "num_classes": 2}
    )
    spec = declared_spec(config, Graph, None)
    clients = {}
    for name, rows in (
        ("clean", records),
        ("missing", [example(y=[1]), *records]),
        ("other kind", [example(a=[1], y=[1]), *records]),
    ):
        os.makedirs(tmp_path / name)
        with tf.io.TFRecordWriter(str(tmp_path / name / "data")) as writer:
            for record in rows:
                writer.write(record)
        split = read_split([str(tmp_path / name / "*")], Graph, spec)
        if name != "clean":
            assert np.isnan(split.columns["x2"][0]) and np.isnan(split.columns["y"][0])
            assert np.array_equal(split.columns["x2"][1:], clients["clean"][1])
        data = client_data(config, split, ["x2"], 2)
        clients[name] = (
            {cid: data.client(k)[0].tolist() for k, cid in enumerate(data.client_ids)},
            split.columns["x2"],
        )
    assert clients["clean"][0] == clients["missing"][0] == clients["other kind"][0]


@pytest.mark.tfx  # imports TFX (about 20 s), runs nothing
def test_a_pipeline_with_a_schema_file_imports_it_instead_of_inferring_it(tmp_path):
    """schema_file pins the schema: the pipeline imports it (ImportSchemaGen) rather than letting SchemaGen infer
    it from the data; a missing file is refused naming the setting."""
    from pipelines.pipeline import create_pipeline

    (tmp_path / "schema.pbtxt").write_text('feature { name: "diagnosis" type: INT }\n')
    kinds = {}
    for name, schema in (("inferred", None), ("pinned", str(tmp_path / "schema.pbtxt"))):
        pipeline = create_pipeline(
            pipeline_root=str(tmp_path / name),
            data_root=str(tmp_path),
            serving_model_dir=str(tmp_path / "serving"),
            trainer="federated",
            schema_file=schema,
        )
        kinds[name] = {type(c).__name__ for c in pipeline.components}
    assert "SchemaGen" in kinds["inferred"] and "ImportSchemaGen" not in kinds["inferred"]
    assert "ImportSchemaGen" in kinds["pinned"] and "SchemaGen" not in kinds["pinned"]
    with pytest.raises(ValueError, match="schema_file"):
        create_pipeline(
            pipeline_root=str(tmp_path),
            data_root=str(tmp_path),
            serving_model_dir=str(tmp_path),
            schema_file=str(tmp_path / "none.pbtxt"),
        )


def test_private_training_on_transformed_examples_without_their_transform_graph_is_refused(tmp_path, python_subprocess):
    """As in the DP Trainer: the Transform's releases (or exact statistics) would be missing from the ledger."""
    code = f"""
import json, os
import tensorflow as tf
from tfx.types import standard_artifacts
from pipelines.components.federated_trainer.executor import Executor
from pipelines.components.federated_trainer.spec import InvalidFederatedSetting
root = {str(tmp_path)!r}
for split in ("train", "eval"):
    os.makedirs(os.path.join(root, "examples", "Split-" + split))
    path = os.path.join(root, "examples", "Split-" + split, "transformed_examples-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as w:
        w.write(tf.train.Example().SerializeToString())
examples = standard_artifacts.Examples(); examples.uri = os.path.join(root, "examples")
examples.split_names = '["train", "eval"]'
model = standard_artifacts.Model(); model.uri = os.path.join(root, "model")
run = standard_artifacts.ModelRun(); run.uri = os.path.join(root, "run")
config = {{"label_key": "y", "private": True, "max_examples_per_client": 5, "num_classes": 2}}
try:
    Executor().Do({{"examples": [examples]}}, {{"model": [model], "model_run": [run]}},
                  {{"custom_config": json.dumps(config), "run_fn": "pipelines.trainers.federated.run_fn",
                   "train_args": json.dumps({{"splits": ["train"]}}), "eval_args": json.dumps({{"splits": ["eval"]}})}})
except InvalidFederatedSetting as err:
    print(json.dumps({{"refused": str(err), "model": os.path.exists(os.path.join(root, "model"))}}))
"""
    result = json.loads(python_subprocess(code, legacy_keras=True).stdout.strip().splitlines()[-1])
    assert "transformed_examples but no transform_graph is given" in result["refused"]
    assert result["model"] is False


def test_a_ledger_with_a_push_decision_lists_a_clients_held_out_records_beyond_k_outside_its_guarantee():
    """The decision is accounted as a client's group of K held-out records, but nothing caps how many eval
    records a keyed client holds (about n_eval / N, one client more than K once n_eval > N K): the client-level
    claim covers the decision for K of them, so the ledger lists the rest; without a decision it is not listed.
    Either way the ledger lists separate runs on the same data, as the DP Trainer's does (one ledger format)."""
    from pipelines.components.federated_trainer.spec import DECISION_CAVEAT
    from pipelines.privacy_ledger import FEDAVG_FLOATING_POINT_NOISE as FLOAT
    from pipelines.privacy_ledger import SEPARATE_RUNS, public_dataset_size
    from pipelines.privacy_ledger import UNKNOWN_NOISE_CUTOFF as UNKNOWN
    from privacy import PrivacyBudget

    settings = {
        "label_key": "y",
        "num_clients": 10,
        "rounds": 2,
        "private": True,
        "noise_multiplier": 1.3,  # given: the listing does not depend on how z was chosen
        "num_classes": 2,
        "max_examples_per_client": 4,
    }
    listed = {}
    for name, extra in (("with", {"decision_epsilon": 0.6}), ("without", {})):
        plan = FederatedTrainingConfig.for_trainer({**settings, **extra}).plan(10)
        m = plan.mechanism
        ledger = plan.ledger(
            PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units()),
            rounds=2,
            trainer={},
            outside_guarantee={"evaluation": "held-out accuracy"},
        )
        listed[name] = ledger.parameters["outside_guarantee"]
        assert (ledger.decision is not None) == (name == "with")
    n = public_dataset_size(10, "client", adjacency=m.adjacency)  # every DP-FedAvg ledger's
    evaluation = {"evaluation": "held-out accuracy"}
    assert listed["with"] == {**n, **SEPARATE_RUNS, **FLOAT, **DECISION_CAVEAT, **evaluation, **UNKNOWN}
    assert listed["without"] == {**n, **SEPARATE_RUNS, **FLOAT, **evaluation, **UNKNOWN}


def test_every_dp_fedavg_ledger_lists_the_client_count_as_public_and_the_report_prints_it_so():
    """N, the population the rounds sample (q = clients per round / N), is in the ledger: the ledger file lists it
    outside the guarantee with its value, as a DP-SGD ledger lists n; `ppml report` prints it labelled public (text
    and JSON); the Evaluator's list, which names n for every trainer, does not repeat it."""
    from pipelines import privacy_ledger as pl
    from pipelines.components.private_evaluator.executor import OUTSIDE_THE_GUARANTEE, outside_the_guarantee
    from pipelines.report import PipelineReport
    from privacy import PrivacyBudget
    from privacy.accounting import NoiseDraws

    settings = {"label_key": "y", "num_clients": 25, "rounds": 2, "private": True, "noise_multiplier": 1.2}
    plan = FederatedTrainingConfig.for_trainer({**settings, "num_classes": 2}).plan(25)
    m = plan.mechanism
    budget = PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units())
    ledger = pl.PrivacyLedger.from_dict(
        plan.ledger(budget, rounds=2, trainer={}, noise_draws=NoiseDraws(12.0, 10)).to_dict()
    )
    why = ledger.parameters["outside_guarantee"][pl.PUBLIC_CLIENT_COUNT_NAME]
    assert why.startswith("N = 25 clients is treated as public") and "epsilon does not cover it" in why
    assert pl.PUBLIC_DATASET_SIZE_NAME not in ledger.parameters["outside_guarantee"]
    report = PipelineReport("p", "r", {}, "uri", 1, {}, ledger, None, None, None)
    assert f"  {'clients N':<18} 25 (treated as public: see outside the guarantee)" in report.format_text()
    assert f"  outside the guarantee: {pl.PUBLIC_CLIENT_COUNT_NAME}: N = 25 clients" in report.format_text()
    privacy = report.to_dict()["privacy"]
    assert privacy["num_clients"] == 25 and pl.PUBLIC_CLIENT_COUNT_NAME in privacy["outside_guarantee"]
    assert outside_the_guarantee(ledger)[: len(OUTSIDE_THE_GUARANTEE)] == list(OUTSIDE_THE_GUARANTEE)
    assert not any(pl.PUBLIC_CLIENT_COUNT_NAME in line for line in outside_the_guarantee(ledger))
    written = ledger.to_dict()
    written["parameters"]["outside_guarantee"].pop(pl.PUBLIC_CLIENT_COUNT_NAME)  # a ledger written before it was
    old = pl.PrivacyLedger.from_dict(written)  # listed: N is in it all the same, and public
    assert old.parameters["outside_guarantee"][pl.PUBLIC_CLIENT_COUNT_NAME] == why
    by_key = {k: v for k, v in settings.items() if k != "num_clients"}
    users = FederatedTrainingConfig.for_trainer({**by_key, "num_classes": 2, "client_key": "user"}).plan(25)
    by_user = users.ledger(budget, rounds=2, trainer={}, noise_draws=NoiseDraws(12.0, 10))
    assert by_user.privacy_unit == "user"
    assert by_user.parameters["outside_guarantee"][pl.PUBLIC_CLIENT_COUNT_NAME].startswith("N = 25 users is treated")
    user_text = PipelineReport("p", "r", {}, "uri", 1, {}, by_user, None, None, None).format_text()
    assert f"  {'users N':<18} 25 (treated as public: see outside the guarantee)" in user_text


def test_a_dp_fedavg_ledger_adds_its_noise_cutoffs_delta_and_refuses_one_over_one_percent():
    """With the strategy's noise pairs (ppml's float64 sampler, 12.0 stds, over the flattened weights plus the noisy
    count) the DP-FedAvg ledger's delta adds the cut-off's (recomputed here), and the cut-off is not listed outside
    the guarantee; a cut-off adding more than 1 % of delta is refused; seeded noise gives no pairs."""
    import numpy as np

    from pipelines.privacy_ledger import LedgerError
    from privacy import PrivacyBudget
    from privacy.accounting import NoiseCutoff, NoiseDraws

    settings = {"label_key": "y", "num_clients": 10, "rounds": 2, "private": True, "noise_multiplier": 1.3}
    plan = FederatedTrainingConfig.for_trainer({**settings, "num_classes": 2}).plan(10)
    m = plan.mechanism
    strategy = plan.strategy()
    weights = [np.zeros((5, 3)), np.zeros(3)]
    draws = strategy.noise_draws(weights)
    assert draws == NoiseDraws(radius=np.sqrt(208 * np.log(2)), pairs=(18 + 1) // 2 + 1)
    budget = PrivacyBudget.for_mechanism(m, plan.delta).compose(m.unit_event(), m.units())
    ledger = plan.ledger(budget, rounds=2, trainer={}, noise_draws=draws)
    # Fixed-size client samples under replace-one: only the distance to the untruncated mechanism, e^eps (1 - Z^T).
    assert (m.sampling.value, m.adjacency.value) == ("fixed", "replace-one")
    expected = NoiseCutoff(
        radius=draws.radius,
        pairs=draws.pairs,
        steps=2,
        unit_shift=m.sensitivity / m.noise_multiplier,
        distinct_shifts=None,
    )
    assert ledger.cutoff_delta == pytest.approx(expected.added_delta(plan.delta, ledger.epsilon), rel=1e-12)
    assert ledger.cutoff_delta > 0
    assert (
        ledger.delta == plan.delta + ledger.cutoff_delta
        and "noise cut-off" not in ledger.parameters["outside_guarantee"]
    )
    with pytest.raises(LedgerError, match="more than 1% of delta"):
        plan.ledger(budget, rounds=2, trainer={}, noise_draws=NoiseDraws(3.0, 10**6))
    seeded = FederatedTrainingConfig.for_trainer({**settings, "num_classes": 2, "seed": 1}).plan(10).strategy()
    seeded.seeded_noise = True
    assert seeded.noise_draws(weights) is None
