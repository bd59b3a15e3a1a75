"""The DP Trainer's executor: settings checked against the data before training; ledger recorded after."""

import os

import pytest


def test_delta_not_below_one_over_n_fails_before_training(tmp_path, python_subprocess):
    model_uri = tmp_path / "model"
    code = f"""
import json, os
import tensorflow as tf
from tfx.types import standard_artifacts
from pipelines.components.dp_trainer.executor import Executor
from pipelines.components.dp_trainer.spec import InvalidPrivacySetting
split = {str(tmp_path / 'examples' / 'Split-train')!r}
os.makedirs(split)
with tf.io.TFRecordWriter(os.path.join(split, "data.gz"), options="GZIP") as writer:
    for i in range(150):
        feature = {{"y": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))}}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
examples = standard_artifacts.Examples(); examples.uri = os.path.dirname(split)
examples.split_names = '["train"]'
model = standard_artifacts.Model(); model.uri = {str(model_uri)!r}
run = standard_artifacts.ModelRun(); run.uri = {str(tmp_path / 'run')!r}
config = {{"private": True, "target_epsilon": 3.0, "delta": 0.01, "batch_size": 16, "epochs": 1}}
try:
    Executor().Do({{"examples": [examples]}}, {{"model": [model], "model_run": [run]}},
                  {{"custom_config": json.dumps(config), "run_fn": "no.such.module.run_fn",
                   "train_args": json.dumps({{"splits": ["train"]}}), "eval_args": json.dumps({{"splits": ["train"]}})}})
except InvalidPrivacySetting as err:
    print("REFUSED", err.setting, err)
"""
    out = python_subprocess(code, legacy_keras=True).stdout
    assert "REFUSED delta custom_config['delta']: must be below 1/n = 0.00667 for n = 150 training examples" in out
    assert not model_uri.exists()  # nothing trained, nothing written


def test_shuffled_dp_training_on_the_pipeline_data_records_its_ledger(private_run, tmp_path, python_subprocess):
    """The executor on the pipeline's real Transform outputs, with shuffled batches: one epoch, accounted
    by the once-per-epoch bound, recorded on the Model artifact."""
    import glob
    import json
    import math

    from privacy.accounting import DpSgdMechanism, compute_epsilon

    [examples] = glob.glob(os.path.join(private_run.root, "Transform", "transformed_examples", "*"))
    [graph] = glob.glob(os.path.join(private_run.root, "Transform", "transform_graph", "*"))
    config = {"private": True, "sampling": "shuffle", "epochs": 1, "batch_size": 32, "noise_multiplier": 1.0,
              "l2_norm_clip": 1.0}
    code = f"""
import json
from tfx.types import standard_artifacts
from pipelines.components.dp_trainer.executor import Executor
from pipelines.privacy_ledger import model_properties
examples = standard_artifacts.Examples(); examples.uri = {examples!r}; examples.split_names = '["train", "eval"]'
graph = standard_artifacts.TransformGraph(); graph.uri = {graph!r}
model = standard_artifacts.Model(); model.uri = {str(tmp_path / 'model')!r}
run = standard_artifacts.ModelRun(); run.uri = {str(tmp_path / 'run')!r}
Executor().Do({{"examples": [examples], "transform_graph": [graph]}}, {{"model": [model], "model_run": [run]}},
              {{"custom_config": json.dumps({config!r}), "run_fn": "pipelines.trainers.breast_cancer.run_fn",
               "train_args": json.dumps({{"splits": ["train"]}}), "eval_args": json.dumps({{"splits": ["eval"]}})}})
print("PROPERTIES", json.dumps(model_properties(model)))
"""
    out = python_subprocess(code, legacy_keras=True).stdout
    props = json.loads(out.split("PROPERTIES ", 1)[1].splitlines()[0])
    n = private_run.report["privacy"]["dataset_size"]
    steps = math.ceil(n / 32)
    mechanism = DpSgdMechanism(dataset_size=n, batch_size=32, noise_multiplier=1.0, steps=steps, sampling="shuffle",
                               steps_per_epoch=steps)
    exact = compute_epsilon(mechanism, 1e-3, "rdp")
    assert props["sampling"] == "shuffle" and props["dp_steps"] == steps and props["private"] == 1
    assert exact <= props["epsilon_rdp"] <= exact * (1 + 1e-5)
    with open(props["privacy_ledger_uri"]) as f:
        ledger = json.load(f)
    assert ledger["report"]["sampling"] == "shuffle" and ledger["report"]["epochs"] == pytest.approx(1.0)
    assert ledger["dp_event"]["count"] == 1  # one started epoch: one Gaussian mechanism, no amplification
