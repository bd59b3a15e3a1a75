"""Shared test setup.

TensorFlow reads TF_USE_LEGACY_KERAS once, at import: the suite runs on Keras 3 (0) unless the variable is
set, and tests for tf-keras run code in a subprocess through the `python_subprocess` fixture.
"""

import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(
    code: str, *, legacy_keras: bool | None = None, env: dict | None = None, timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Runs ``python -c code`` in a fresh interpreter at the repo root; fails the test with its output."""
    full_env = dict(os.environ, **(env or {}))
    if legacy_keras is not None:
        full_env["TF_USE_LEGACY_KERAS"] = "1" if legacy_keras else "0"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"subprocess failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


@pytest.fixture(scope="session")
def python_subprocess():
    """`run_python(code, legacy_keras=..., env=..., timeout=..., check=...)` as a fixture."""
    return run_python


# Test tiers: the markers of setup.cfg, set here by module, fixture and name so the test files stay as they are.
# `make test-fast` runs `-m "not tfx and not slow"`; `make test` runs everything.
TFX_MODULES = {
    "tests/pipelines/test_pipeline_e2e.py",
    "tests/pipelines/test_dp_trainer_executor.py",
    "tests/pipelines/test_kubeflow_and_cli.py",
    "tests/pipelines/test_interrupted_run.py",
    "tests/privacy/encrypted/test_tfx_gate.py",
    "tests/test_runtime.py",
}
TFX_FIXTURES = {
    "private_run",
    "tight_budget_run",
    "strict_audit_run",
    "fixed_batches_run",
    "encrypted_check_run",
    "audited_run",
    "broken_audit_run",
    "federated_run",
    "executor_runs",
    "kubeflow_spec",
    "truncated_run",
    "pate_run",
}
"""Fixtures that run `ppml pipeline run` (tests/pipelines/conftest.py and its test modules)."""
TFX_TESTS = {
    "test_the_budgets_unit_travels_in_the_eval_config",
    "test_the_gate_settings_carry_the_canary_count",
    "test_client_column_partitions_naturally_with_secure_aggregation_and_a_public_run_has_no_ledger",
}
"""Tests outside TFX_MODULES that import TFX in a fresh interpreter; tests named *beam* run Beam too."""
SLOW_TESTS = {
    "test_killed_runs_resume_from_their_checkpoint_to_the_uninterrupted_result",
    "test_a_run_killed_in_the_trainer_resumes_with_cached_stages_and_the_report_never_reads_half",
    "test_microbatches_under_replace_one_are_accounted_with_sigma_over_2",
    "test_federated_run_dp_secure_aggregation",
    "test_parties_keep_serving_through_mixed_faults",
    "test_a_replaced_record_is_accounted_for_the_composed_artifact_by_group_privacy_of_two",
}
SLOW_CASES = {
    "case_steps_that_ran_are_the_steps_accounted",
    "case_ghost_norms_equal_jacobian_norms",
    "case_neighbouring_batches_differ_by_at_most_the_clip",
    "case_unclipped_sum_equals_full_gradient",
}
"""Tests, and Keras 3 cases of tests/privacy/keras, that take more than about 20 s alone on 2 cores; so does
the tf-keras half of every Keras case (a fresh interpreter per module). Measured: README, "Tests"."""


def tier_markers(path: str, name: str, fixtures, params) -> set[str]:
    """The tier markers of the test ``name`` (its function's name) in ``path`` (relative to the repo)."""
    markers = set()
    if path in TFX_MODULES or TFX_FIXTURES.intersection(fixtures) or name in TFX_TESTS or "beam" in name:
        markers.add("tfx")
    if name in SLOW_TESTS or params.get("case") in SLOW_CASES or params.get("flavour") == "tf_keras":
        markers.add("slow")
    if "flavour" in params:
        markers.add("keras_flavours")
    return markers


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for marker in tier_markers(
            os.path.relpath(str(item.path), REPO), getattr(item, "originalname", item.name), item.fixturenames, params
        ):
            item.add_marker(marker)
