"""The privacy gate's coverage check: adapted Keras preprocessing layers in a saved model, preprocessing
records that differ from the ledger's, and delta against 1/n."""

import json
import math
import zipfile

import pytest

from pipelines import privacy_ledger as pl
from pipelines.components.dp_trainer.spec import DpTrainingConfig, InvalidPrivacySetting
from pipelines.components.federated_trainer.spec import FederatedTrainingConfig, InvalidFederatedSetting
from pipelines.components.private_evaluator import coverage, lineage
from privacy.accounting import DpSgdMechanism

from .shared_interpreter import Snippets, snippet_output

SNIPPETS = Snippets()
"""The snippets of the tests that save tf-keras models: they share one fresh interpreter, each in its ``tmp_dir``."""
tf_keras_snippets = SNIPPETS.module_fixture(legacy_keras=True)


@pytest.fixture
def snippet_stdout(tf_keras_snippets, request):
    """The stdout of this test's snippet (registered with ``@SNIPPETS.of``), run by `tf_keras_snippets`."""
    return snippet_output(tf_keras_snippets, request.node.originalname)


SAVE = """
import json
import numpy as np
import tf_keras as keras
from pipelines.components.private_evaluator import coverage, lineage
from pipelines import privacy_ledger as pl
from privacy.accounting import DpSgdMechanism
x = np.array([[1.0, 2.0], [3.0, 5.0]], dtype="float32")
adapted = keras.layers.Normalization(name="adapted_norm")
adapted.adapt(x)
given = keras.layers.Normalization(mean=[0.0, 0.0], variance=[1.0, 1.0], name="given_norm")
inputs = keras.Input((2,))
model = keras.Model(inputs, keras.layers.Dense(1)(given(adapted(inputs))))
model.save(tmp_dir + "/model", save_format="tf")
ledger = pl.PrivacyLedger.for_dp_sgd(DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10),
                                     l2_norm_clip=1.0, delta=1e-5)
print("PROBLEMS " + json.dumps(coverage.artifact_problems(tmp_dir + "/model", ledger)))
"""


@SNIPPETS.of(SAVE)
def test_a_tf_keras_model_with_an_adapted_normalization_is_not_covered(snippet_stdout):
    [line] = [line for line in snippet_stdout.splitlines() if line.startswith("PROBLEMS ")]
    [problem] = json.loads(line[len("PROBLEMS ") :])
    assert "layer 'adapted_norm' (Normalization)" in problem and "Normalization(mean=..., variance=...)" in problem


METRIC_STATE = """
import json
import numpy as np
import tf_keras as keras
from privacy import training_state
x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["binary_accuracy"])
model.fit(x, (x[:, :1] > 0).astype("float32"), epochs=1, verbose=0)
model.save(tmp_dir + "/fitted", save_format="tf")
model.save(tmp_dir + "/nested/checkpoints/epoch_1", save_format="tf")
model.reset_metrics()
model.save(tmp_dir + "/reset", save_format="tf")
model.save(tmp_dir + "/nested", save_format="tf")
for name in ("fitted", "reset", "nested"):
    print(name.upper() + " " + json.dumps(training_state.metric_state_problems(tmp_dir + "/" + name)))
"""


@SNIPPETS.of(METRIC_STATE)
def test_a_saved_model_holding_training_metric_state_is_not_covered(snippet_stdout, tf_keras_snippets, request):
    """Fail closed on the exact loss and accuracy totals tf-keras saves with a fitted model, in the model's own
    checkpoint or in one saved below it (a ModelCheckpoint inside the pushed folder); zeroed ones pass."""
    folder = tf_keras_snippets[request.node.originalname]["dir"]
    found = {
        line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
        for line in snippet_stdout.splitlines()
        if line.startswith(("FITTED ", "RESET ", "NESTED "))
    }
    [problem] = found["FITTED"]
    assert "keras_api/metrics/0/total" in problem and "keras_api/metrics/1/count" in problem, problem
    assert found["RESET"] == []
    [problem] = found["NESTED"]
    assert f"{folder}/nested/checkpoints/epoch_1/variables/variables holds Keras metric state" in problem, problem


def _ledger(delta: float, n: int = 1000) -> pl.PrivacyLedger:
    mechanism = DpSgdMechanism(dataset_size=n, batch_size=10, noise_multiplier=1.0, steps=10)
    return pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=delta)


def test_delta_close_to_one_over_n_is_a_warning_and_at_one_over_n_a_problem():
    assert coverage.delta_findings(_ledger(1e-5)) == ([], [])
    assert coverage.delta_findings(_ledger(5e-4)) == ([], [])  # 1/(2n), the largest delta commonly used
    problems, warnings = coverage.delta_findings(_ledger(6e-4))
    assert problems == [] and "delta=0.0006 is 0.6/n (n=1000 examples), close to 1/n" in warnings[0]
    problems, warnings = coverage.delta_findings(_ledger(2e-3))  # a foreign ledger: the trainers refuse this
    assert warnings == [] and "delta=0.002 is not below 1/n=0.001" in problems[0]


def _trainers_refuse(delta: float, n: int) -> list[bool]:
    """Whether the DP Trainer (n examples) and the federated Trainer (n clients) refuse ``delta``."""
    dp = {"private": True, "batch_size": 8, "epochs": 1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0}
    federated = {"label_key": "y", "num_classes": 2, "rounds": 1, "private": True, "noise_multiplier": 1.0}
    refused = []
    for config, error in (
        (DpTrainingConfig.from_custom_config({**dp, "delta": delta}), InvalidPrivacySetting),
        (
            FederatedTrainingConfig.from_custom_config({**federated, "num_clients": n, "delta": delta}),
            InvalidFederatedSetting,
        ),
    ):
        try:
            config.plan(dataset_size=n) if isinstance(config, DpTrainingConfig) else config.plan(n)
        except error as err:
            assert err.setting == "delta", err
            refused.append(True)
        else:
            refused.append(False)
    return refused


@pytest.mark.parametrize("n", [49, 206, 374, 1000, 1_000_003])
def test_the_evaluator_finds_a_problem_exactly_where_the_trainers_refuse_delta(n):
    """One rule (privacy.accounting.delta_below_one_over_n) for the DP and federated trainers and the Evaluator.
    Before, the Evaluator tested delta * n >= 1 in floats: for these n the float nearest 1/n (what delta = 1 / n
    gives, refused by the trainers) was only 'close to 1/n'."""
    for delta in (1 / n, math.nextafter(1 / n, 0), math.nextafter(1 / n, 1), 0.9 / n):
        problems, warnings = coverage.delta_findings(_ledger(delta, n))
        assert _trainers_refuse(delta, n) == [bool(problems)] * 2, (delta, problems)
        assert len(problems + warnings) == 1 and bool(problems) is (delta >= 1 / n), (delta, problems)


def _store_with_a_trainer(tmp_path, *, graph_input: bool):
    """An ML Metadata store: Transform (examples -> transformed examples, graph), then Trainer -> model, reading the
    transformed examples, and the graph too when ``graph_input``. Returns (store, model id)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    types = {
        name: store.put_artifact_type(pb.ArtifactType(name=name)) for name in ("Examples", "TransformGraph", "Model")
    }
    transform_type = store.put_execution_type(pb.ExecutionType(name="tfx.components.transform.component.Transform"))
    trainer_type = store.put_execution_type(pb.ExecutionType(name="pipelines.components.dp_trainer.DpTrainer"))
    examples, transformed, graph, model = store.put_artifacts(
        [
            pb.Artifact(type_id=types["Examples"], uri="/raw"),
            pb.Artifact(type_id=types["Examples"], uri="/transformed"),
            pb.Artifact(type_id=types["TransformGraph"], uri="/graph"),
            pb.Artifact(type_id=types["Model"], uri="/model"),
        ]
    )
    transform, trainer = store.put_executions(
        [pb.Execution(type_id=transform_type), pb.Execution(type_id=trainer_type)]
    )
    events = [
        (examples, transform, pb.Event.INPUT),
        (transformed, transform, pb.Event.OUTPUT),
        (graph, transform, pb.Event.OUTPUT),
        (transformed, trainer, pb.Event.INPUT),
        (model, trainer, pb.Event.OUTPUT),
    ] + ([(graph, trainer, pb.Event.INPUT)] if graph_input else [])
    store.put_events([pb.Event(artifact_id=a, execution_id=e, type=t) for a, e, t in events])
    return lineage.open_store(str(tmp_path / "metadata.sqlite")), model


def test_the_gate_follows_lineage_to_a_transform_the_ledger_does_not_account(tmp_path, monkeypatch):
    """A Trainer that read a Transform's transformed_examples without its graph: the model carries no record, but ML
    Metadata leads the gate to the graph, whose releases the ledger lacks; one that accounts them passes."""
    from privacy.preprocessing import (
        CoverageRecord,
        MeanVariance,
        MechanismRecord,
        PreprocessingAccount,
        PreprocessingPart,
        to_text,
    )

    release = MechanismRecord(
        name="x/mean_and_var",
        analyzer="mean_and_var",
        mechanism="gaussian-sums",
        adjacency="add-remove",
        components=MeanVariance((0, 1), 5.0).components,
        parameters={"bounds": [0, 1]},
        noise="CSPRNG-keyed Philox (os.urandom)",
        share=1.0,
    )
    account = PreprocessingAccount.from_texts(
        [to_text(release), to_text(CoverageRecord(analyzer_outputs=3, private=("x/mean_and_var",)))]
    )
    monkeypatch.setattr(lineage, "transform_graph_account", lambda uri: account if uri == "/graph" else None)
    mechanism = DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10)
    for graph_input in (False, True):
        (tmp_path / str(graph_input)).mkdir()
        store, model = _store_with_a_trainer(tmp_path / str(graph_input), graph_input=graph_input)
        assert lineage.transform_graphs_upstream(store, model) == ["/graph"]
        bare = pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=1e-5)
        [problem] = lineage.lineage_problems(store, model, bare)
        assert "read the output of the Transform graph /graph (1 release(s))" in problem
        accounted = pl.PrivacyLedger.for_dp_sgd(
            mechanism, l2_norm_clip=1.0, delta=1e-5, preprocessing=PreprocessingPart(account, "add-remove")
        )
        assert lineage.lineage_problems(store, model, accounted) == []


def _store(tmp_path, artifacts: dict[str, str], executions: dict[str, str], events: list[tuple[str, str, str]]):
    """An ML Metadata store of ``artifacts`` {uri: type}, ``executions`` {name: type} and ``events`` (uri, execution,
    'INPUT' or 'OUTPUT'). Returns (read-only store, id of the artifact '/model')."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "lineage.sqlite")
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    types = {name: store.put_artifact_type(pb.ArtifactType(name=name)) for name in set(artifacts.values())}
    execution_types = {name: store.put_execution_type(pb.ExecutionType(name=name)) for name in set(executions.values())}
    ids = dict(
        zip(
            artifacts,
            store.put_artifacts([pb.Artifact(type_id=types[t], uri=u) for u, t in artifacts.items()]),
            strict=True,
        )
    )
    runs = dict(
        zip(
            executions,
            store.put_executions([pb.Execution(type_id=execution_types[t]) for t in executions.values()]),
            strict=True,
        )
    )
    store.put_events(
        [pb.Event(artifact_id=ids[a], execution_id=runs[e], type=getattr(pb.Event, kind)) for a, e, kind in events]
    )
    return lineage.open_store(config.sqlite.filename_uri), ids["/model"]


def _one_release_account(noisy_values: tuple[float, ...]):
    from privacy.preprocessing import (
        CoverageRecord,
        MeanVariance,
        MechanismRecord,
        PreprocessingAccount,
        ReleaseRecord,
        to_text,
    )

    release = MechanismRecord(
        name="x/mean_and_var",
        analyzer="mean_and_var",
        mechanism="gaussian-sums",
        adjacency="add-remove",
        components=MeanVariance((0, 1), 5.0).components,
        parameters={"bounds": [0, 1]},
        noise="CSPRNG-keyed Philox (os.urandom)",
        share=1.0,
    )
    return PreprocessingAccount.from_texts(
        [
            to_text(release),
            to_text(ReleaseRecord("x/mean_and_var", noisy_values)),
            to_text(CoverageRecord(analyzer_outputs=3, private=("x/mean_and_var",))),
        ]
    )


def _accounted_ledger(account):
    from privacy.preprocessing import PreprocessingPart

    mechanism = DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10)
    return pl.PrivacyLedger.for_dp_sgd(
        mechanism, l2_norm_clip=1.0, delta=1e-5, preprocessing=PreprocessingPart(account, "add-remove")
    )


def test_lineage_follows_every_hop_from_the_trainer_to_the_transform(tmp_path, monkeypatch):
    """Transform -> a filter -> an Importer-like copy -> Trainer, no graph given to the Trainer: the gate still finds
    the graph two hops up, and a ledger without its release fails."""
    account = _one_release_account((1.0, 2.0, 3.0))
    monkeypatch.setattr(lineage, "transform_graph_account", lambda uri: account)
    store, model = _store(
        tmp_path,
        {
            "/raw": "Examples",
            "/transformed": "Examples",
            "/graph": "TransformGraph",
            "/filtered": "Examples",
            "/copied": "Examples",
            "/model": "Model",
        },
        {"T": "Transform", "F": "my.Filter", "C": "my.Copy", "R": "Trainer"},
        [
            ("/raw", "T", "INPUT"),
            ("/transformed", "T", "OUTPUT"),
            ("/graph", "T", "OUTPUT"),
            ("/transformed", "F", "INPUT"),
            ("/filtered", "F", "OUTPUT"),
            ("/filtered", "C", "INPUT"),
            ("/copied", "C", "OUTPUT"),
            ("/copied", "R", "INPUT"),
            ("/model", "R", "OUTPUT"),
        ],
    )
    assert lineage.transform_graphs_upstream(store, model) == ["/graph"]
    mechanism = DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10)
    [problem] = lineage.lineage_problems(
        store, model, pl.PrivacyLedger.for_dp_sgd(mechanism, l2_norm_clip=1.0, delta=1e-5)
    )
    assert "/graph" in problem
    assert lineage.lineage_problems(store, model, _accounted_ledger(account)) == []


def test_lineage_compares_released_values_so_a_second_transform_run_is_caught(tmp_path, monkeypatch):
    """Graph of Transform run A (accounted in the ledger) with the transformed examples of run B: same mechanism and
    coverage, other noisy values. That is a second release, which the ledger's one release does not account."""
    accounts = {"/graphA": _one_release_account((1.0, 2.0, 3.0)), "/graphB": _one_release_account((1.5, 2.5, 3.5))}
    monkeypatch.setattr(lineage, "transform_graph_account", accounts.__getitem__)
    store, model = _store(
        tmp_path,
        {
            "/rawA": "Examples",
            "/graphA": "TransformGraph",
            "/rawB": "Examples",
            "/transformedB": "Examples",
            "/graphB": "TransformGraph",
            "/model": "Model",
        },
        {"TA": "Transform", "TB": "Transform", "R": "Trainer"},
        [
            ("/rawA", "TA", "INPUT"),
            ("/graphA", "TA", "OUTPUT"),
            ("/rawB", "TB", "INPUT"),
            ("/transformedB", "TB", "OUTPUT"),
            ("/graphB", "TB", "OUTPUT"),
            ("/graphA", "R", "INPUT"),
            ("/transformedB", "R", "INPUT"),
            ("/model", "R", "OUTPUT"),
        ],
    )
    assert lineage.transform_graphs_upstream(store, model) == ["/graphA", "/graphB"]
    [problem] = lineage.lineage_problems(store, model, _accounted_ledger(accounts["/graphA"]))
    assert "/graphB" in problem and "released other values" in problem


def _keras3_model(adapted: bool):
    import keras
    import numpy as np

    if adapted:
        norm = keras.layers.Normalization(name="adapted_norm")
        norm.adapt(np.array([[1.0, 2.0], [3.0, 5.0]], dtype="float32"))
    else:
        norm = keras.layers.Normalization(mean=[0.0, 0.0], variance=[1.0, 1.0], name="given_norm")
    inner = keras.Sequential([norm, keras.layers.Dense(2)], name="inner")  # nested: found in the config's tree
    return keras.Sequential([keras.Input((2,)), inner, keras.layers.Dense(1)])


def test_keras3_archives_are_read_and_keras3_saved_models_are_refused_as_uninspectable(tmp_path):
    """Keras 3 writes no Keras metadata: a .keras archive anywhere in the pushed folder is checked through its
    config (the nested adapted Normalization found, given constants pass); a Keras 3 SavedModel records no
    layers, so a DP-SGD model exported so is refused whatever it holds, saying so; a ledger of another trainer
    (ppml's own modules) is not asked for layers."""
    ledger = pl.PrivacyLedger.for_dp_sgd(
        DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10), l2_norm_clip=1.0, delta=1e-5
    )
    for adapted in (True, False):
        folder = tmp_path / f"archive_{adapted}"
        (folder / "extra").mkdir(parents=True)
        _keras3_model(adapted).save(folder / "extra" / "model.keras")
        problems = coverage.keras_layer_problems(str(folder), ledger)
        if adapted:
            [problem] = problems
            assert "layer 'adapted_norm' (Normalization)" in problem and "mean=..., variance=..." in problem, problem
        else:
            assert problems == []
        _keras3_model(adapted).export(str(folder / "exported"), verbose=False)
        exported = str(folder / "exported")
        assert coverage.keras_layer_problems(exported, ledger) == [f"{exported}: {coverage.KERAS3_UNINSPECTABLE}"]
        assert coverage.keras_layer_problems(str(folder / "exported"), None) == []
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.keras").write_bytes(b"not a zip archive")
    [problem] = coverage.keras_layer_problems(str(tmp_path / "broken"), ledger)
    assert "model.keras is unreadable, so its layers cannot be checked" in problem, problem


LAYER_METRIC = """
import json
import numpy as np
import tensorflow as tf
import tf_keras as keras
from privacy import training_state


class Seen(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = keras.metrics.Sum(name="seen")  # a running sum of the records' first feature

    def call(self, x):
        self.seen.update_state(tf.reduce_sum(x[:, 0]))
        return x


x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
model = keras.Sequential([keras.Input((2,)), Seen(name="seen_layer"), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
model.reset_metrics()
model.save(tmp_dir + "/unused", save_format="tf")
model.predict(x, verbose=0)
model.reset_metrics()
model.save(tmp_dir + "/reset", save_format="tf")
model.predict(x, verbose=0)
model.save(tmp_dir + "/predicted", save_format="tf")
print("SUM", float(x[:, 0].sum()))
for name in ("unused", "reset", "predicted"):
    print(name.upper() + " " + json.dumps(training_state.metric_state_problems(tmp_dir + "/" + name)))
"""


@SNIPPETS.of(LAYER_METRIC)
def test_a_metric_a_layer_holds_is_metric_state_too(snippet_stdout):
    """A Metric held by a layer and updated in call() (here by predict on the records: their exact sum) is saved
    under the layer's path, not under ``/metrics/``: it is found through the model's Keras metadata; reset or
    never updated, it passes."""
    found = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in snippet_stdout.splitlines() if " " in line}
    assert json.loads(found["UNUSED"]) == [] and json.loads(found["RESET"]) == [], snippet_stdout
    [problem] = json.loads(found["PREDICTED"])
    assert "predicted/variables/variables holds Keras metric state" in problem and "seen" in problem, problem


def test_keras_models_under_other_names_formats_or_folders_are_read_or_refused(tmp_path):
    """What the suffix and the top folder do not show: an adapted Normalization in a full-model .h5 (its
    model_config read) or in a .keras archive renamed .zip (found by content) is found; a Keras 3 export in a
    sub-folder is refused as uninspectable, and so is a .weights.h5 (weights without layers); for another
    trainer's ledger only the layers found are problems. An ordinary zip file or text file is no problem."""
    ledger = pl.PrivacyLedger.for_dp_sgd(
        DpSgdMechanism(dataset_size=1000, batch_size=10, noise_multiplier=1.0, steps=10), l2_norm_clip=1.0, delta=1e-5
    )
    adapted = "layer 'adapted_norm' (Normalization)"
    for folder, save in {
        "h5": lambda path: _keras3_model(True).save(path / "model.h5"),
        "zip": lambda path: (_keras3_model(True).save(path / "m.keras"), (path / "m.keras").rename(path / "m.zip")),
    }.items():
        (tmp_path / folder).mkdir()
        save(tmp_path / folder)
        [problem] = coverage.keras_layer_problems(str(tmp_path / folder), ledger)
        assert adapted in problem, (folder, problem)
        [problem] = coverage.keras_layer_problems(str(tmp_path / folder), None)
        assert adapted in problem, (folder, problem)
    (tmp_path / "nested").mkdir()
    _keras3_model(False).export(str(tmp_path / "nested" / "1"), verbose=False)
    (tmp_path / "weights").mkdir()
    _keras3_model(False).save_weights(tmp_path / "weights" / "model.weights.h5")
    for folder, (path, message) in {
        "nested": (tmp_path / "nested" / "1", coverage.KERAS3_UNINSPECTABLE),
        "weights": (tmp_path / "weights" / "model.weights.h5", coverage.WEIGHTS_UNINSPECTABLE),
    }.items():
        assert coverage.keras_layer_problems(str(tmp_path / folder), ledger) == [f"{path}: {message}"], folder
        assert coverage.keras_layer_problems(str(tmp_path / folder), None) == [], folder
    (tmp_path / "plain").mkdir()
    with zipfile.ZipFile(tmp_path / "plain" / "data.zip", "w") as archive:
        archive.writestr("notes.txt", "no model here")
    (tmp_path / "plain" / "vocab.txt").write_text("a\nb\n")
    assert coverage.keras_layer_problems(str(tmp_path / "plain"), ledger) == []
