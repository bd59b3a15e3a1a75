"""The DP Trainer's executor checks settings against the data before training, naming the setting."""


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
