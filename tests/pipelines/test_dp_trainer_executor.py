"""The DP Trainer's executor: settings checked against the data before training; ledger recorded after."""

import glob
import json
import math
import os

import dp_accounting
import pytest
from dp_accounting import dp_event
from scipy import stats

from pipelines.privacy_ledger import UNCOVERED_PADDING_NAME
from privacy.accounting import DpSgdMechanism, compute_epsilon

from .shared_interpreter import Snippets, snippet_output

SNIPPETS = Snippets()
"""The snippets of the tests that need no pipeline run: they share one fresh interpreter, each in its ``tmp_dir``."""
executor_snippets = SNIPPETS.module_fixture(legacy_keras=True)


@pytest.fixture
def snippet_stdout(executor_snippets, request):
    """The stdout of this test's snippet (registered with ``@SNIPPETS.of``), run by `executor_snippets`."""
    return snippet_output(executor_snippets, request.node.originalname)


@SNIPPETS.of("""
import json, os
import tensorflow as tf
from tfx.types import standard_artifacts
from pipelines.components.dp_trainer.executor import Executor
from pipelines.components.dp_trainer.spec import InvalidPrivacySetting
split = os.path.join(tmp_dir, "examples", "Split-train")
os.makedirs(split)
with tf.io.TFRecordWriter(os.path.join(split, "data.gz"), options="GZIP") as writer:
    for i in range(150):
        feature = {"y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
examples = standard_artifacts.Examples(); examples.uri = os.path.dirname(split)
examples.split_names = '["train"]'
model = standard_artifacts.Model(); model.uri = os.path.join(tmp_dir, "model")
run = standard_artifacts.ModelRun(); run.uri = os.path.join(tmp_dir, "run")
config = {"private": True, "target_epsilon": 3.0, "delta": 0.01, "batch_size": 16, "epochs": 1}
try:
    Executor().Do({"examples": [examples]}, {"model": [model], "model_run": [run]},
                  {"custom_config": json.dumps(config), "run_fn": "no.such.module.run_fn",
                   "train_args": json.dumps({"splits": ["train"]}),
                   "eval_args": json.dumps({"splits": ["train"]})})
except InvalidPrivacySetting as err:
    print("REFUSED", err.setting, err)
""")
def test_delta_not_below_one_over_n_fails_before_training(snippet_stdout, executor_snippets, request):
    model_uri = os.path.join(executor_snippets[request.node.originalname]["dir"], "model")
    out = snippet_stdout
    assert "REFUSED delta custom_config['delta']: must be below 1/n = 0.00667 for n = 150 training examples" in out
    assert not os.path.exists(model_uri)  # nothing trained, nothing written


TRAINING_RUNS = {
    # One shuffled epoch, accounted by the once-per-epoch bound under replace-one adjacency.
    "shuffle": {"sampling": "shuffle", "epochs": 1, "noise_multiplier": 1.0},
    # Poisson batches clipped in 8 microbatches of several examples each: sensitivity 2C (sigma 2: at sigma 1 the
    # accounted sigma / 2 = 0.5 made the run cost about 3 s more CPU, most of it in the ledger's PLD epsilons).
    "microbatches": {"num_microbatches": 8, "epochs": 1, "noise_multiplier": 2.0},
    # Fixed-size batches, calibrated to epsilon 8 by the RDP accountant (the only one with an analysis); the
    # Transform graph's releases, analysed under add-remove, count twice under replace-one (5.2 alone).
    "fixed": {"sampling": "fixed", "epochs": 1, "target_epsilon": 8.0},
    # Truncated Poisson batches cut at K = B (about 45 % of the batches drawn are cut), 3 epochs at sigma 2.
    "truncated": {"truncated_batch_size": 32, "epochs": 3, "noise_multiplier": 2.0},
    # Noisy padding (sigma_c 3 rows), sigma calibrated with the Transform graph's releases to epsilon 8 by RDP.
    "noisy_padding": {"skip_padding": True, "batch_size_noise_multiplier": 3.0, "epochs": 1, "target_epsilon": 8.0},
}

EXECUTOR_RUNS = """
import json, sys
from tfx.types import standard_artifacts
from pipelines.components.dp_trainer.executor import Executor
from pipelines.privacy_ledger import model_properties
examples_uri, graph_uri, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
for name, config in runs.items():
    examples = standard_artifacts.Examples(); examples.uri = examples_uri; examples.split_names = '["train", "eval"]'
    graph = standard_artifacts.TransformGraph(); graph.uri = graph_uri
    model = standard_artifacts.Model(); model.uri = f"{out}/{name}/model"
    run = standard_artifacts.ModelRun(); run.uri = f"{out}/{name}/run"
    Executor().Do({"examples": [examples], "transform_graph": [graph]}, {"model": [model], "model_run": [run]},
                  {"custom_config": json.dumps(config), "run_fn": "pipelines.trainers.breast_cancer.run_fn",
                   "train_args": json.dumps({"splits": ["train"]}), "eval_args": json.dumps({"splits": ["eval"]})})
    print("PROPERTIES", name, json.dumps(model_properties(model)))
"""


@pytest.fixture(scope="module")
def executor_runs(private_run, tmp_path_factory, python_subprocess):
    """The DP Trainer's executor on the pipeline's real Transform outputs, once per entry of TRAINING_RUNS
    (one process): {name: (MLMD properties of the Model artifact, its ledger JSON)}; n is in ``"n"``."""
    [examples] = glob.glob(os.path.join(private_run.root, "Transform", "transformed_examples", "*"))
    [graph] = glob.glob(os.path.join(private_run.root, "Transform", "transform_graph", "*"))
    runs = {
        name: {"private": True, "batch_size": 32, "l2_norm_clip": 1.0, **change}
        for name, change in TRAINING_RUNS.items()
    }
    argv = [examples, graph, str(tmp_path_factory.mktemp("dp-trainer")), json.dumps(runs)]
    script = f"import sys; sys.argv[1:] = {argv!r}\n"
    out = python_subprocess(script + EXECUTOR_RUNS, legacy_keras=True).stdout
    results = {"n": private_run.report["privacy"]["dataset_size"]}
    for line in out.splitlines():
        if line.startswith("PROPERTIES "):
            _, name, props = line.split(" ", 2)
            props = json.loads(props)
            with open(props["privacy_ledger_uri"]) as f:
                results[name] = props, json.load(f)
    return results


def _stored(props, exact):
    """MLMD keeps epsilons rounded up to 6 decimal places."""
    return exact <= props <= exact + 1e-6


def _preprocessing(ledger, factor):
    """The Transform graph's 30 releases (analysed under add-remove) as the ledger's relation sees them: each
    record's Gaussian noise multiplier 1 / sqrt(sum (sensitivity / std)^2), divided by ``factor`` (2 under
    replace-one: a replaced record is one removed and one added)."""
    events = []
    for record in ledger["preprocessing"]["account"]["mechanisms"]:
        assert record["adjacency"] == "add-remove"
        multiplier = 1 / math.sqrt(
            sum((c["sensitivity"] / c["noise_std"]) ** 2 for c in record["components"] if c["sensitivity"])
        )
        events.append(dp_event.GaussianDpEvent(multiplier / factor))
    assert len(events) == 30
    return events


def test_shuffled_dp_training_on_the_pipeline_data_records_its_ledger(executor_runs):
    n, (props, ledger) = executor_runs["n"], executor_runs["shuffle"]
    steps = math.ceil(n / 32)
    assert props["sampling"] == "shuffle" and props["dp_steps"] == steps and props["private"] == 1
    assert props["adjacency"] == "replace-one" and ledger["report"]["adjacency"] == "replace-one"
    assert ledger["report"]["sampling"] == "shuffle" and ledger["report"]["epochs"] == pytest.approx(1.0)
    # One started epoch: one Gaussian mechanism, no amplification; replace-one moves a clipped gradient by 2C.
    assert ledger["budget"]["ledger"][-1] == {
        "count": 1,
        "event": {"class_name": "GaussianDpEvent", "noise_multiplier": 0.5},
    }
    # Independently of privacy.accounting: RDP of the preprocessing releases, then the Gaussian at sigma / 2
    # (relative to 2C), composed.
    events = _preprocessing(ledger, factor=2) + [dp_event.GaussianDpEvent(0.5)]
    exact = dp_accounting.rdp.RdpAccountant().compose(dp_event.ComposedDpEvent(events)).get_epsilon(1e-3)
    assert ledger["epsilon"]["rdp"] == pytest.approx(exact, rel=1e-9) and _stored(props["epsilon_rdp"], exact)
    # The noise sampler's cut-off: float32 pairs of the trained model's variables, its delta in the artifact's.
    cutoff = ledger["parameters"]["noise_cutoff"]
    assert cutoff["radius"] == pytest.approx(math.sqrt(128 * math.log(2)), rel=1e-15) and cutoff["pairs"] > 0
    assert "noise cut-off" not in ledger["parameters"]["outside_guarantee"]
    assert 0 < ledger["composition"]["cutoff_delta"] < 0.01 * 1e-3
    assert ledger["delta"] == ledger["composition"]["accountant_delta"] + ledger["composition"]["cutoff_delta"]
    # The bundled run_fn tells the ledger that no step left its padding out (it does not set skip_padding): nothing
    # listed for the steps' durations, no noisy padding clamp.
    assert ledger["parameters"]["uncovered_padding"] is False and ledger["composition"]["clamp_delta"] == 0.0
    assert UNCOVERED_PADDING_NAME not in ledger["parameters"]["outside_guarantee"]


def test_microbatched_dp_training_accounts_sensitivity_two_c(executor_runs):
    """num_microbatches=8 through the executor: the mean gradients of 8 microbatches of a Poisson batch are
    clipped, so one example can move its microbatch's clipped mean by 2C; the ledger accounts sigma / 2."""
    n, (props, ledger) = executor_runs["n"], executor_runs["microbatches"]
    steps = math.ceil(n / 32)
    assert props["sampling"] == "poisson" and props["dp_steps"] == steps and props["noise_multiplier"] == 2.0
    assert ledger["parameters"]["num_microbatches"] == 8
    assert ledger["report"]["sensitivity"] == 2.0 and ledger["report"]["num_microbatches"] == 8
    assert ledger["budget"]["ledger"][-1]["event"]["event"] == {
        "class_name": "GaussianDpEvent",
        "noise_multiplier": 1.0,
    }
    mechanism = DpSgdMechanism(dataset_size=n, batch_size=32, noise_multiplier=2.0, steps=steps, num_microbatches=8)
    # Independently of privacy.accounting's events: the preprocessing releases, then T Poisson-sampled
    # Gaussians at sigma / 2, add/remove.
    event = dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(32 / n, dp_event.GaussianDpEvent(1.0)), steps)
    composed = dp_event.ComposedDpEvent(_preprocessing(ledger, factor=1) + [event])
    for kind, accountant in (
        ("rdp", dp_accounting.rdp.RdpAccountant),
        ("pld", lambda: dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)),
    ):
        exact = accountant().compose(composed).get_epsilon(1e-3)
        # PLD: the ledger composes its 30 equal releases as one run, which discretises slightly differently.
        assert ledger["epsilon"][kind] == pytest.approx(exact, rel=1e-9 if kind == "rdp" else 1e-6)
        assert _stored(props[f"epsilon_{kind}"], ledger["epsilon"][kind])
        training = compute_epsilon(mechanism, 1e-3, kind)
        assert training == pytest.approx(accountant().compose(event).get_epsilon(1e-3), rel=1e-9)
        assert ledger["composition"]["parts"]["training"][kind] == pytest.approx(training, rel=1e-9)
    assert _stored(props["epsilon"], min(ledger["epsilon"].values()))
    per_example = compute_epsilon(mechanism.replace(num_microbatches=None), 1e-3, "rdp")
    assert ledger["composition"]["parts"]["training"]["rdp"] > 2 * per_example  # the factor 2 is paid for


def test_fixed_size_dp_training_uses_the_rdp_epsilon_and_says_so(executor_runs):
    n, (props, ledger) = executor_runs["n"], executor_runs["fixed"]
    steps = math.ceil(n / 32)
    sigma = ledger["parameters"]["noise_multiplier"]
    assert props["sampling"] == "fixed" and props["adjacency"] == "replace-one" and props["dp_steps"] == steps
    # Independently: the preprocessing releases (replace-one: twice a record's shift), then T samples of 32
    # of n without replacement, Gaussian at sigma / 2 (replace-one moves a clipped gradient by 2C), by
    # dp-accounting's RDP accountant; PLD has no analysis of it.
    event = dp_event.SelfComposedDpEvent(
        dp_event.SampledWithoutReplacementDpEvent(n, 32, dp_event.GaussianDpEvent(sigma / 2)), steps
    )
    exact = (
        dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        .compose(dp_event.ComposedDpEvent(_preprocessing(ledger, factor=2) + [event]))
        .get_epsilon(1e-3)
    )
    assert 7.99 < exact <= 8.0  # preprocessing and training together calibrated to the target with RDP
    assert ledger["epsilon"] == {"rdp": pytest.approx(exact, rel=1e-12), "pld": None}
    assert ledger["report"]["unavailable"]["pld"].startswith("dp-accounting's PLD accountant has no analysis")
    assert props["epsilon_accountant"] == "rdp" and "epsilon_pld" not in props
    assert _stored(props["epsilon"], exact) and props["epsilon"] == props["epsilon_rdp"]


def test_truncated_poisson_training_records_the_truncated_events_and_the_batches_cut(executor_runs):
    """truncated_batch_size=32 through the executor: every Poisson batch that draws more than 32 examples is cut to
    a random 32; the ledger composes T TruncatedSubsampledGaussianDpEvents (PLD only) after the preprocessing
    releases and records how many batches the sampler cut."""
    n, (props, ledger) = executor_runs["n"], executor_runs["truncated"]
    steps = math.ceil(3 * n / 32)
    assert props["sampling"] == "poisson" and props["dp_steps"] == steps and props["epsilon_accountant"] == "pld"
    assert ledger["parameters"]["truncated_batch_size"] == 32 and ledger["report"]["truncated_batch_size"] == 32
    # The count is of batches drawn (up to a few prefetched beyond the steps): Binomial(draws, P(Bin(n, q) > 32)).
    cut, p = ledger["parameters"]["truncated_batches"], stats.binom.sf(32, n, 32 / n)
    assert stats.binom.ppf(1e-6, steps, p) <= cut <= stats.binom.isf(1e-6, steps + 8, p), (cut, steps, p)
    unit = dp_event.TruncatedSubsampledGaussianDpEvent(n + 1, 32 / n, 32, 2.0)  # add-remove: the neighbour D + x
    assert ledger["budget"]["ledger"][-1] == {
        "count": steps,
        "event": {
            "class_name": "TruncatedSubsampledGaussianDpEvent",
            "dataset_size": n + 1,
            "sampling_probability": 32 / n,
            "truncated_batch_size": 32,
            "noise_multiplier": 2.0,
        },
    }
    training = dp_event.SelfComposedDpEvent(unit, steps)
    composed = dp_event.ComposedDpEvent(_preprocessing(ledger, factor=1) + [training])
    exact = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(composed).get_epsilon(1e-3)
    assert ledger["epsilon"] == {"rdp": None, "pld": pytest.approx(exact, rel=1e-6)}
    assert _stored(props["epsilon"], ledger["epsilon"]["pld"]) and "epsilon_rdp" not in props
    alone = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4).compose(training).get_epsilon(1e-3)
    assert ledger["composition"]["parts"]["training"] == {"rdp": None, "pld": pytest.approx(alone, rel=1e-9)}
    assert ledger["report"]["unavailable"]["rdp"].startswith(
        "dp-accounting's RDP accountant has no analysis of truncated Poisson sampling"
    )


@SNIPPETS.of("""
import os
import numpy as np
import tf_keras as keras
from pipelines.components.dp_trainer.executor import check_metric_state
x = np.random.default_rng(0).normal(size=(20, 2)).astype("float32")
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["binary_accuracy"])
model.fit(x, (x[:, :1] > 0).astype("float32"), epochs=1, verbose=0)
model.save(os.path.join(tmp_dir, "run", "checkpoints", "epoch_1"), save_format="tf")
model.reset_metrics()
model.save(os.path.join(tmp_dir, "model", "Format-Serving"), save_format="tf")
check_metric_state([os.path.join(tmp_dir, "model")])
print("SERVING MODEL PASSES")
try:
    check_metric_state([os.path.join(tmp_dir, "model"), os.path.join(tmp_dir, "run")])
except RuntimeError as err:
    print("REFUSED", err)
""")
def test_a_private_run_whose_checkpoints_hold_metric_state_is_refused(snippet_stdout, executor_snippets, request):
    """A run_fn that leaves a checkpoint with Keras' training-metric totals under the ModelRun artifact (a
    ModelCheckpoint of a model not made private) fails the Trainer with one line naming the file; the reset
    serving model alone passes."""
    folder = executor_snippets[request.node.originalname]["dir"]
    out = snippet_stdout
    assert "SERVING MODEL PASSES" in out
    [line] = [line for line in out.splitlines() if line.startswith("REFUSED ")]
    assert "wrote 1 checkpoint(s) outside the guarantee" in line, line
    assert f"{folder}/run/checkpoints/epoch_1/variables/variables holds Keras metric state" in line, line


def test_noisy_padding_training_records_sigma_c_its_joint_gaussian_and_the_clamp(executor_runs):
    """skip_padding with batch_size_noise_multiplier=3 through the executor and the bundled run_fn: sigma calibrated
    so that the Transform graph's releases and one Poisson Gaussian of (sigma^-2 + 3^-2)^-1/2 per step meet epsilon
    8 (RDP, at the accountant's delta); the ledger's delta adds the clamp's, and the padding is covered, not listed
    outside the guarantee."""
    n, (props, ledger) = executor_runs["n"], executor_runs["noisy_padding"]
    steps = math.ceil(n / 32)
    assert props["dp_steps"] == steps and ledger["parameters"]["batch_size_noise_multiplier"] == 3.0
    sigma = ledger["parameters"]["noise_multiplier"]
    effective = (sigma**-2 + 3.0**-2) ** -0.5
    unit = dp_event.PoissonSampledDpEvent(32 / n, dp_event.GaussianDpEvent(effective))
    composed = dp_event.ComposedDpEvent(_preprocessing(ledger, factor=1) + [dp_event.SelfComposedDpEvent(unit, steps)])
    composition = ledger["composition"]
    exact = dp_accounting.rdp.RdpAccountant().compose(composed).get_epsilon(composition["accountant_delta"])
    assert 7.99 < exact <= 8.0 and ledger["epsilon"]["rdp"] == pytest.approx(exact, rel=1e-12)
    clamp = steps * 2.0**-50 * (1 + 2.0**-40) * (1 + math.exp(min(e for e in ledger["epsilon"].values() if e)))
    assert composition["clamp_delta"] == pytest.approx(clamp, rel=1e-12) and composition["cutoff_delta"] > 0
    added = composition["cutoff_delta"] + composition["clamp_delta"]
    assert ledger["delta"] == pytest.approx(composition["accountant_delta"] + added, rel=1e-15)
    # Steps left their padding out with noisy padding: their row counts are covered, nothing listed outside.
    assert ledger["parameters"]["uncovered_padding"] is False
    # Noisy padding ran: each step drew Z's Box-Muller pair beside the same model's gradient pairs (a run_fn that
    # stopped passing it would draw only the weights', as the shuffled run does; uncovered_padding alone would not say).
    plain = executor_runs["shuffle"][1]["parameters"]["noise_cutoff"]
    assert ledger["parameters"]["noise_cutoff"] == {"radius": plain["radius"], "pairs": plain["pairs"] + 1}
    assert UNCOVERED_PADDING_NAME not in ledger["parameters"]["outside_guarantee"]
