"""Kubeflow Pipelines v2 compilation (JSON, no cluster) and the command line's errors."""

import json

import pytest


@pytest.fixture(scope="module")
def kubeflow_spec(tmp_path_factory, ppml_cli):
    path = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    ppml_cli(
        "pipeline",
        "compile",
        "--kubeflow-v2",
        str(path),
        "--pipeline-root",
        "gs://bucket/root",
        "--data-root",
        "gs://bucket/data",
        "--serving-model-dir",
        "gs://bucket/serving",
        "--target-epsilon",
        "2.5",
        "--l2-norm-clip",
        "0.8",
        "--compare-non-private",
        "--encrypted-check",
        "--encrypted-examples",
        "150",
        "--lineage-unchecked",
        "Vertex ML Metadata is not readable by the gate",
        "--audit-canaries",
        "500",
    )
    with open(path) as f:
        return json.load(f)["pipelineSpec"]


def _custom_config(spec, task):
    parameters = spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    return json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])


def test_kubeflow_v2_json_carries_the_dp_trainer_custom_config(kubeflow_spec):
    tasks = kubeflow_spec["root"]["dag"]["tasks"]
    assert {
        "CsvExampleGen",
        "StatisticsGen",
        "SchemaGen",
        "ExampleValidator",
        "Transform",
        "Trainer",
        "Evaluator",
        "EncryptedInferenceGate",
        "Pusher",
        "Trainer_non_private",
        "Evaluator_non_private",
    } == set(tasks)
    config = _custom_config(kubeflow_spec, "Trainer")
    assert config["private"] is True and config["target_epsilon"] == 2.5 and config["l2_norm_clip"] == 0.8
    assert config["batch_size"] == 32 and config["sampling"] == "poisson"
    assert _custom_config(kubeflow_spec, "Trainer_non_private")["private"] is False
    executors = kubeflow_spec["deploymentSpec"]["executors"]
    trainer_args = " ".join(executors["Trainer_executor"]["container"]["args"])
    evaluator_args = " ".join(executors["Evaluator_executor"]["container"]["args"])
    assert "pipelines.components.dp_trainer.executor.Executor" in trainer_args
    assert "pipelines.components.private_evaluator.executor.Executor" in evaluator_args
    eval_config = tasks["Evaluator"]["inputs"]["parameters"]["eval_config"]["runtimeValue"]["constantValue"]
    assert '"DpEpsilon"' in eval_config["stringValue"] and '"MembershipInferenceAuc"' in eval_config["stringValue"]


def test_kubeflow_v2_json_runs_the_encrypted_gate_between_evaluator_and_pusher(kubeflow_spec):
    tasks = kubeflow_spec["root"]["dag"]["tasks"]
    gate = tasks["EncryptedInferenceGate"]
    artifacts = gate["inputs"]["artifacts"]
    assert artifacts["model_blessing"]["taskOutputArtifact"] == {
        "producerTask": "Evaluator",
        "outputArtifactKey": "blessing",
    }
    assert artifacts["examples"]["taskOutputArtifact"]["producerTask"] == "CsvExampleGen"
    assert artifacts["transform_graph"]["taskOutputArtifact"]["producerTask"] == "Transform"
    parameters = gate["inputs"]["parameters"]
    assert parameters["num_examples"]["runtimeValue"]["constantValue"] in ({"intValue": "150"}, {"numberValue": 150})
    keys = json.loads(parameters["feature_keys"]["runtimeValue"]["constantValue"]["stringValue"])
    assert len(keys) == 30 and keys[0] == "mean_radius_xf"
    # The Pusher follows the gate's blessing, which holds only if the Evaluator's does.
    assert tasks["Pusher"]["inputs"]["artifacts"]["model_blessing"]["taskOutputArtifact"] == {
        "producerTask": "EncryptedInferenceGate",
        "outputArtifactKey": "blessing",
    }
    executor = kubeflow_spec["deploymentSpec"]["executors"]["EncryptedInferenceGate_executor"]
    assert "pipelines.components.encrypted_gate.executor.Executor" in " ".join(executor["container"]["args"])


def test_the_declared_lineage_skip_reaches_the_evaluator_with_its_reason(kubeflow_spec):
    """Without a metadata path the gate blesses nothing unless the skip is declared: the reason travels in the
    Evaluator's EvalConfig (the gate puts it in its summary)."""
    parameters = kubeflow_spec["root"]["dag"]["tasks"]["Evaluator"]["inputs"]["parameters"]
    eval_config = parameters["eval_config"]["runtimeValue"]["constantValue"]["stringValue"]
    assert "Vertex ML Metadata is not readable by the gate" in eval_config and "lineage_unchecked" in eval_config


def test_invalid_setting_is_refused_before_anything_runs(tmp_path, ppml_cli):
    root = tmp_path / "root"
    proc = ppml_cli("pipeline", "run", "--l2-norm-clip", "-1", "--pipeline-root", str(root), check=False)
    assert proc.returncode == 2
    assert "'--l2-norm-clip'" in proc.stderr and "custom_config['l2_norm_clip']" in proc.stderr
    assert "must be a finite number > 0, got -1.0" in proc.stderr and "Traceback" not in proc.stderr
    assert not root.exists()


def test_report_without_a_run_says_so(tmp_path, ppml_cli):
    proc = ppml_cli("report", "--pipeline-root", str(tmp_path), check=False)
    assert proc.returncode == 1 and "no ML Metadata at" in proc.stderr and "Traceback" not in proc.stderr


def test_the_transform_gets_its_share_of_the_target_as_its_private_budget(kubeflow_spec):
    transform = _custom_config(kubeflow_spec, "Transform")["ppml_preprocessing"]
    assert transform == {
        "private": True,
        "epsilon": pytest.approx(0.75 * 2.5),
        "delta": 1e-3,
        "adjacency": "add-remove",
    }


def test_a_noise_multiplier_without_a_preprocessing_budget_is_refused(tmp_path, ppml_cli):
    root = tmp_path / "root"
    proc = ppml_cli("pipeline", "run", "--noise-multiplier", "1.0", "--pipeline-root", str(root), check=False)
    assert proc.returncode == 2 and "needs preprocessing_epsilon" in proc.stderr and "Traceback" not in proc.stderr
    assert not root.exists()


@pytest.mark.parametrize("private", [True, False])
def test_a_private_transform_keeps_no_analyzer_cache(tmp_path, private):
    # Transform's analyzer cache would store the private analyzers' exact accumulators in the pipeline root.
    from pipelines import pipeline

    built = pipeline.bundled_pipeline(
        str(tmp_path), trainer_config={**pipeline.DEFAULT_TRAINER_CONFIG, "private": private}
    )
    [transform] = [c for c in built.components if c.id == "Transform"]
    assert ("updated_analyzer_cache" in transform.outputs) is not private
    # Nor TFDV's exact pre- and post-transform statistics, which nothing reads (their Beam work is skipped).
    assert not {"pre_transform_stats", "post_transform_stats"} & set(transform.outputs), sorted(transform.outputs)


def test_the_privacy_audit_runs_in_the_pushed_models_evaluator_only(kubeflow_spec):
    """--audit-canaries reaches the Evaluator's EvalConfig (the gate's DpEpsilon config), not the side-by-side
    non-private Evaluator's: that model has no ledger to audit and is never pushed."""
    tasks = kubeflow_spec["root"]["dag"]["tasks"]

    def epsilon_config(task):
        value = tasks[task]["inputs"]["parameters"]["eval_config"]["runtimeValue"]["constantValue"]["stringValue"]
        [metric] = [
            m for spec in json.loads(value)["metrics_specs"] for m in spec["metrics"] if m["class_name"] == "DpEpsilon"
        ]
        return json.loads(metric["config"])

    assert epsilon_config("Evaluator")["audit_canaries"] == 500
    assert "audit_canaries" not in epsilon_config("Evaluator_non_private")


def test_kubeflow_v2_json_runs_the_pate_trainer_on_three_splits_without_transform(tmp_path, ppml_cli):
    path = tmp_path / "pate.json"
    ppml_cli(
        "pipeline",
        "compile",
        "--kubeflow-v2",
        str(path),
        "--pipeline-root",
        "gs://bucket/root",
        "--data-root",
        "gs://bucket/data",
        "--serving-model-dir",
        "gs://bucket/serving",
        "--trainer",
        "pate",
        "--trainer-config",
        '{"teachers": 12, "public_split": "queries"}',
        "--epsilon-budget",
        "50",
        "--lineage-unchecked",
        "Vertex ML Metadata is not readable by the gate",
    )
    with open(path) as f:
        spec = json.load(f)["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    assert {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "Evaluator", "Pusher"} == set(
        tasks
    )
    config = _custom_config(spec, "Trainer")
    assert config["teachers"] == 12 and config["public_split"] == "queries" and config["decision_epsilon"] > 0
    trainer = tasks["Trainer"]["inputs"]["parameters"]
    assert '"queries"' in trainer["eval_args"]["runtimeValue"]["constantValue"]["stringValue"]
    assert '"train"' in trainer["train_args"]["runtimeValue"]["constantValue"]["stringValue"]
    output_config = tasks["CsvExampleGen"]["inputs"]["parameters"]["output_config"]["runtimeValue"]["constantValue"]
    assert all(f'"{split}"' in output_config["stringValue"] for split in ("train", "queries", "eval"))
    executors = spec["deploymentSpec"]["executors"]
    assert "pipelines.components.pate_trainer.executor.Executor" in " ".join(
        executors["Trainer_executor"]["container"]["args"]
    )
