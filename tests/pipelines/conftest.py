"""The private pipeline runs end to end once per test session; its cached re-runs are fixtures too.

Every run goes through the real command line (``ppml pipeline run ... --json``) in a fresh process,
which sets TF_USE_LEGACY_KERAS=1 itself before TensorFlow loads (this test process stays on Keras 3).
Each fixture captures the run's report when it finishes, so tests never depend on which run is latest.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ..conftest import run_python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE_OPTIONS = ("--dp", "--target-epsilon", "3", "--epochs", "15", "--batch-size", "32", "--min-accuracy", "0.75")
"""min accuracy 0.75: the noisy accuracy (sd ~0.04 on ~190 rows) misses it by chance with probability < 1e-4 for
any exact accuracy >= 0.9 (test_private_model_is_blessed_useful_and_audited computes the bound)."""


def ppml(*args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Runs the ``ppml`` command line in a fresh interpreter; fails the test with its output on error."""
    proc = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli.main import cli; cli()", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"ppml {' '.join(args)} failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    root: str
    report: dict  # `ppml pipeline run --json` output
    progress: list[str]  # the per-stage progress lines on stderr
    stderr: str  # all of it
    report_text: str = ""  # `ppml report` right after the run
    report_json: dict | None = None  # `ppml report --json` right after the run
    non_private_report: dict | None = None  # `ppml report --variant non-private --json`
    comparison_text: str = ""  # `ppml report --compare`


def run_pipeline(root, *options: str, read_reports: bool = False, read_text: bool = False) -> PipelineRun:
    """Runs the pipeline; ``read_text`` reads `ppml report` right after it, ``read_reports`` all four reports."""
    proc = ppml("pipeline", "run", *options, "--pipeline-root", str(root), "--json")
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    run = PipelineRun(root=str(root), report=json.loads(proc.stdout), progress=progress, stderr=proc.stderr)
    report = ("report", "--pipeline-root", str(root))
    if read_text or read_reports:
        run = dataclasses.replace(run, report_text=ppml(*report).stdout)
    if read_reports:
        run = dataclasses.replace(
            run,
            report_json=json.loads(ppml(*report, "--json").stdout),
            non_private_report=json.loads(ppml(*report, "--variant", "non-private", "--json").stdout),
            comparison_text=ppml(*report, "--compare").stdout,
        )
    return run


@pytest.fixture(scope="session")
def private_run(tmp_path_factory) -> PipelineRun:
    """All 8 stages with the DP Trainer, plus a non-private Trainer and Evaluator side by side."""
    root = tmp_path_factory.mktemp("ppml-pipeline")
    return run_pipeline(root, *PIPELINE_OPTIONS, "--epsilon-budget", "3", "--compare-non-private", read_reports=True)


@pytest.fixture(scope="session")
def tight_budget_run(private_run) -> PipelineRun:
    """Same root and training, budget 0.5 < epsilon: Trainer and upstream cached, Evaluator and Pusher re-run."""
    return run_pipeline(private_run.root, *PIPELINE_OPTIONS, "--epsilon-budget", "0.5")


@pytest.fixture(scope="session")
def strict_audit_run(tight_budget_run, private_run) -> PipelineRun:
    """Same root and training, membership-AUC bound just below the measured AUC; on BeamDagRunner."""
    bound = private_run.report["membership_audit"]["auc"] - 0.01
    return run_pipeline(
        private_run.root,
        *PIPELINE_OPTIONS,
        "--epsilon-budget",
        "3",
        "--max-membership-auc",
        f"{bound:.6f}",
        "--runner",
        "beam",
        read_reports=True,
    )


@pytest.fixture(scope="session")
def fixed_batches_run(strict_audit_run, private_run) -> PipelineRun:
    """Same root, fixed-size batches (upstream stages cached, a new Trainer), min accuracy 0.999 that no
    model here reaches: the privacy checks pass on the RDP epsilon, the utility threshold fails."""
    return run_pipeline(
        private_run.root,
        *PIPELINE_OPTIONS,
        "--sampling",
        "fixed",
        "--epsilon-budget",
        "3",
        "--min-accuracy",
        "0.999",
        read_text=True,
    )


@pytest.fixture(scope="session")
def encrypted_check_run(fixed_batches_run, private_run) -> PipelineRun:
    """The first run's settings plus the encrypted-inference gate on 100 evaluation examples: everything
    up to the Evaluator cached, the gate and the Pusher run."""
    return run_pipeline(
        private_run.root,
        *PIPELINE_OPTIONS,
        "--epsilon-budget",
        "3",
        "--encrypted-check",
        "--encrypted-examples",
        "100",
        read_text=True,
    )


@pytest.fixture(scope="session")
def truncated_run(private_run) -> PipelineRun:
    """Same root and settings with truncated Poisson sampling at the default cap: upstream stages cached, a new
    Trainer (sigma calibrated by PLD on the truncated event), Evaluator and Pusher."""
    return run_pipeline(
        private_run.root,
        *PIPELINE_OPTIONS,
        "--epsilon-budget",
        "3",
        "--truncated-batch-size",
        "default",
        read_text=True,
    )


PLAIN_TFT_MODULE = """
import tensorflow_transform as tft
from pipelines.trainers.breast_cancer import FEATURE_KEYS, LABEL_KEY, MODEL_INPUT_KEYS, run_fn, transformed_name


def preprocessing_fn(inputs):
    outputs = {transformed_name(key): tft.scale_to_z_score(inputs[key]) for key in FEATURE_KEYS}
    outputs[LABEL_KEY] = inputs[LABEL_KEY]
    return outputs
"""
"""The bundled pipeline's trainer module with plain tft z-scores: exact statistics in the Transform graph."""

RUN_WITH_MODULE = """
import json, sys
from pipelines.keras_env import use_tf_keras
use_tf_keras()
from pipelines import pipeline, runners
from pipelines.report import load_report
root, module = sys.argv[1:3]
try:
    runners.run(pipeline.bundled_pipeline(root, module=module, trainer_config=dict(pipeline.DEFAULT_TRAINER_CONFIG)))
except ValueError as err:  # a component refused the run
    print("REFUSED " + json.dumps(f"{type(err).__name__}: {err}"))
    sys.exit(0)
print("REPORT " + json.dumps(load_report(root).to_dict()))
"""


@pytest.fixture(scope="session")
def plain_tft_run(encrypted_check_run, private_run, tmp_path_factory) -> dict:
    """The first run's settings with a preprocessing_fn that calls tft.scale_to_z_score itself (its
    statistics exact), on the same root after the other runs: upstream of Transform cached.
    {"refused": the error that stopped the run, or None; "report": the report, or None; "pushed": the
    number of models pushed during the run}."""
    serving = os.path.join(private_run.root, "serving_model")
    pushed_before = len(os.listdir(serving)) if os.path.isdir(serving) else 0
    folder = tmp_path_factory.mktemp("plain-module")
    (folder / "ppml_plain_tft_module.py").write_text(PLAIN_TFT_MODULE)
    code = f"import sys; sys.argv[1:] = [{private_run.root!r}, 'ppml_plain_tft_module']\n" + RUN_WITH_MODULE
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), REPO]), TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"the plain-tft pipeline failed:\n{proc.stderr[-8000:]}", pytrace=False)
    [line] = [line for line in proc.stdout.splitlines() if line.startswith(("REPORT ", "REFUSED "))]
    kind, _, value = line.partition(" ")
    return {
        "refused": json.loads(value) if kind == "REFUSED" else None,
        "report": json.loads(value) if kind == "REPORT" else None,
        "pushed": (len(os.listdir(serving)) if os.path.isdir(serving) else 0) - pushed_before,
    }


@pytest.fixture(scope="session")
def ppml_cli():
    """`ppml(*args, check=True, timeout=...)`: the command line in a fresh interpreter."""
    return ppml


CARRIED_STATISTICS = """
import glob, json, os, sys
import numpy as np
import tensorflow as tf
from pipelines.trainers.breast_cancer import FEATURE_KEYS, LOG10_BOUNDS, LOG10_FLOOR, transformed_name
from privacy.preprocessing import Bounds, MeanVariance, PreprocessingPart
model_dir, train_dir = sys.argv[1:3]
layer = tf.saved_model.load(model_dir).tft_layer
probe = {k: tf.constant([[1.0], [100.0]]) for k in FEATURE_KEYS}   # log10: 0 and 2 (the schema's shape [1])
z = {k: v.numpy().ravel() for k, v in layer(probe).items()}
files = glob.glob(os.path.join(train_dir, "*"))
records = [tf.train.Example.FromString(r).features.feature
           for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()]
with open(os.path.join(model_dir, "assets.extra", "privacy_ledger.json")) as f:
    account = PreprocessingPart.from_dict(json.load(f)["preprocessing"]).account
records_by_name = {m.name: m for m in account.mechanisms}
out = {}
for key in FEATURE_KEYS:
    z0, z2 = z[transformed_name(key)][:2]
    std = 2.0 / (z2 - z0)
    x = np.array([r[key].float_list.value[0] for r in records], dtype=np.float32)
    logs = np.clip(np.log10(np.maximum(x, np.float32(LOG10_FLOOR))).astype(np.float64), *LOG10_BOUNDS)
    mid = sum(LOG10_BOUNDS) / 2
    exact = np.array([len(logs), (logs - mid).sum(), np.square(logs - mid).sum()])
    record = records_by_name[key + "/mean_and_var"]
    noisy = np.array(account.releases[record.name])
    mechanism = MeanVariance(Bounds.of(record.parameters["bounds"]), 1.0, record.adjacency,
                             record.parameters["values_per_record"])
    released = mechanism.estimates(noisy)
    out[key] = {"model": [float(-z0 * std), float(std ** 2)], "released": [released["mean"], released["variance"]],
                "exact": [float(logs.mean()), float(logs.var())],
                "standardised": ((noisy - exact) / np.array([c.noise_std for c in record.components])).tolist()}
print(json.dumps(out))
"""
"""Reads back, through a saved model's own Transform layer, the mean and variance it z-scores each feature
with, and sets them beside the statistics released in its ledger and the exact ones of the training split
(argv: the model's folder, the raw train split's folder); prints JSON by feature."""


def carried_statistics(model_dir: str, train_dir: str) -> dict:
    """`CARRIED_STATISTICS` run on a saved model (tf-keras, as the trainers export)."""
    code = f"import sys; sys.argv = ['', {model_dir!r}, {train_dir!r}]\n{CARRIED_STATISTICS}"
    return json.loads(run_python(code, legacy_keras=True).stdout.strip().splitlines()[-1])


def assert_carries_only_released_statistics(statistics: dict) -> None:
    """Each feature's z-score constants are the ledger's noisy release (to float32 precision), and the releases
    differ from the exact sums of the training split by noise of the recorded size (not by rounding)."""
    for key, s in statistics.items():
        np.testing.assert_allclose(s["model"], s["released"], rtol=1e-4, err_msg=key)
    standardised = np.abs([v for s in statistics.values() for v in s["standardised"]])
    assert np.median(standardised) > 0.1 and np.max(standardised) < 8, standardised
    assert max(abs(s["model"][0] - s["exact"][0]) for s in statistics.values()) > 1e-3


AUDIT_OPTIONS = (*PIPELINE_OPTIONS, "--target-delta", "1e-5", "--epsilon-budget", "3", "--audit-canaries", "1000")
"""The privacy audit's run: delta 1e-5, where 1,000 canaries can show a bound up to about 5 (at the bundled data's
default delta 1e-3 no bound with 1,000 canaries exceeds 0.24: `privacy.auditing.one_run.largest_bound`)."""

RUN_WITHOUT_NOISE = """
import functools, sys
from privacy.auditing import dp_sgd_audit
# The fault hook of `ppml audit --fault no-noise`, set in this test process only: the audited run adds no noise.
dp_sgd_audit.audit_mechanism = functools.partial(dp_sgd_audit.audit_mechanism, fault="no-noise")
from pipelines.cli.main import cli
cli(sys.argv[1:])
"""


@pytest.fixture(scope="session")
def audited_run(tmp_path_factory) -> PipelineRun:
    """The private pipeline with the Evaluator's privacy audit (its own root: delta 1e-5)."""
    return run_pipeline(tmp_path_factory.mktemp("ppml-audit"), *AUDIT_OPTIONS, read_text=True)


@pytest.fixture(scope="session")
def broken_audit_run(audited_run) -> PipelineRun:
    """Same root, one more canary (the Evaluator re-runs, the Trainer is cached), and the audited copy of the run
    without its noise while its claim stays: {"report": ppml pipeline run --json, "report_text": ppml report}."""
    options = [*AUDIT_OPTIONS[:-1], "1001"]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_WITHOUT_NOISE,
            "pipeline",
            "run",
            *options,
            "--pipeline-root",
            audited_run.root,
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        pytest.fail(f"the broken audit run failed:\n{proc.stderr[-8000:]}", pytrace=False)
    return dataclasses.replace(
        audited_run,
        report=json.loads(proc.stdout),
        stderr=proc.stderr,
        report_text=ppml("report", "--pipeline-root", audited_run.root).stdout,
    )
