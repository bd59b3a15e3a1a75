"""Shared test setup.

TensorFlow reads TF_USE_LEGACY_KERAS once, at import: the suite runs on Keras 3 (0) unless the variable is
set, and tests for tf-keras run code in a subprocess through the `python_subprocess` fixture.

Temporary files (tempfile's, Beam's beam-temp-* folders, pytest's tmp_path, those of every subprocess) go to one
folder per test session, made before TensorFlow or Beam load and removed when the session ends: the session
sets TMPDIR and `tempfile.tempdir` to it, and its pytest-xdist workers and subprocesses inherit TMPDIR.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SESSION_TMP = "PPML_TEST_SESSION_TMP"
"""Environment variable naming the session's temporary folder (set by the process that made it)."""
_OWN_TMP = None if os.path.isdir(os.environ.get(SESSION_TMP, "")) else tempfile.mkdtemp(prefix="ppml-tests-")


def _remove_own_tmp(creator: int) -> None:
    """Removes the session's folder at exit of the process that made it (``creator``) only: a forked child that
    exits normally runs the exit handlers it inherited, while its parent still uses the folder."""
    if os.getpid() == creator:
        shutil.rmtree(_OWN_TMP, ignore_errors=True)


if _OWN_TMP:  # removed when this process exits (pytest-xdist workers, nested runs and forks leave it to this one)
    os.environ[SESSION_TMP] = _OWN_TMP
    atexit.register(_remove_own_tmp, os.getpid())
os.environ["TMPDIR"] = tempfile.tempdir = os.environ[SESSION_TMP]

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
    "test_the_plans_gate_reaches_each_evaluator_whole",
    "test_a_hand_built_eval_config_that_would_bless_more_is_refused_when_the_evaluator_is_built",
    "test_client_column_partitions_naturally_with_secure_aggregation_and_a_public_run_has_no_ledger",
}
"""Tests outside TFX_MODULES that import TFX in a fresh interpreter; tests named *beam* run Beam too."""
SLOW_TESTS = {
    "test_a_batch_size_noise_too_small_for_the_target_is_refused_naming_both",
    "test_a_budget_per_example_calibrates_a_keyed_poisson_run_for_the_record_level_figure",
    "test_a_budget_per_example_meets_a_keyed_poisson_ledger_at_its_record_level_figure",
    "test_a_changed_radius_cap_is_never_served_from_the_cache_of_the_old_one",
    "test_a_confident_gnmax_ledger_composes_decision_selection_and_capped_answers_as_dp_accounting_does",
    "test_a_doubled_sensitivity_is_caught_by_the_gaussian_family_not_by_counting",
    "test_a_failing_stage_of_a_private_run_prints_no_record_value",
    "test_a_half_delivered_request_aborts_the_session_not_the_servers",
    "test_a_ledger_with_a_push_decision_lists_a_clients_held_out_records_beyond_k_outside_its_guarantee",
    "test_a_max_epsilon_below_one_rounds_epsilon_is_refused_at_plan_time",
    "test_a_non_private_config_records_exact_statistics_that_no_epsilon_covers",
    "test_a_per_example_replace_one_budget_calibrates_z_for_the_replaced_record_figure",
    "test_a_per_example_replace_one_budget_calibrates_z_under_poisson_sampling_too",
    "test_a_replaced_record_is_accounted_for_the_composed_artifact_by_group_privacy_of_two",
    "test_a_run_killed_in_the_trainer_resumes_with_cached_stages_and_the_report_never_reads_half",
    "test_a_self_trained_student_leaves_the_ledgers_epsilon_unchanged_and_the_ledger_and_report_name_it",
    "test_a_tf1_graph_without_coverage_record_is_refused_by_the_trainer_and_the_gate",
    "test_a_trainer_module_that_takes_a_non_private_step_is_accounting_inconsistent",
    "test_calibrated_noise_is_the_uncached_one",
    "test_default_is_b_plus_four_sd_and_the_table_names_the_event",
    "test_epochs_affords_the_steps_of_the_joint_gaussian",
    "test_epochs_says_why_not_one_step_fits_under_a_tight_cap",
    "test_epsilon_is_dp_accountings_for_the_truncated_event",
    "test_epsilon_is_the_truncated_events_and_rdp_says_why_not",
    "test_every_privacy_module_imports_alone_and_not_the_layers_above",
    "test_federated_run_dp_secure_aggregation",
    "test_fixed_size_batches_are_replace_one_and_calibrated_with_rdp",
    "test_given_the_released_labels_the_exported_student_does_not_depend_on_the_private_split",
    "test_json_claim_matches_dp_accounting_and_the_bound_is_below_it",
    "test_killed_runs_resume_from_their_checkpoint_to_the_uninterrupted_result",
    "test_max_units_round_trip",
    "test_microbatches_under_replace_one_are_accounted_with_sigma_over_2",
    "test_minimize_with_scrubbing_prints_no_raw_row_and_refuses_verbose",
    "test_neighbouring_data_sets_move_the_quantile_trees_by_their_stated_sensitivity",
    "test_neighbouring_data_sets_move_the_releases_by_at_most_the_stated_sensitivity",
    "test_noise_and_epochs_calibrate_the_truncated_event",
    "test_noise_calibrates_sigma_of_the_joint_gaussian_and_round_trips_through_epsilon",
    "test_parties_keep_serving_through_mixed_faults",
    "test_per_record_multi_valued_and_ragged_inputs_stay_within_the_recorded_sensitivity",
    "test_private_training_on_transformed_examples_without_their_transform_graph_is_refused",
    "test_re_evaluating_the_same_model_returns_the_kept_release_and_other_records_are_refused",
    "test_readme_trade_off_table_recomputed_from_dp_accounting",
    "test_real_subprocess_and_no_tensorflow_import",
    "test_seeded_noise_is_an_explicit_research_option_and_says_so",
    "test_setup_share_serve_predict",
    "test_target_epsilon_calibrates_the_gradient_noise_of_the_joint_gaussian",
    "test_target_epsilon_calibrates_the_noise_for_the_planned_rounds",
    "test_target_epsilon_is_calibrated_with_pld_on_the_truncated_event",
    "test_tf_keras_sequential_and_functional_models",
    "test_the_command_line_drops_dp_accountings_excluded_order_warnings",
    "test_the_count_of_cut_batches_is_listed_outside_the_guarantee_and_never_called_accounted",
    "test_the_default_dp_run_works_with_csprng_noise_and_writes_the_trainers_ledger",
    "test_the_gate_runs_both_audits_and_an_honest_implementation_check_passes",
    "test_the_ledger_lists_the_inferred_spec_and_separate_runs_outside_the_guarantee",
    "test_the_ledger_records_the_cut_batches_and_the_gate_and_report_use_the_truncated_epsilon",
    "test_the_membership_audit_of_the_pate_student_takes_the_public_split_it_was_fitted_on_as_members",
    "test_the_noise_matches_the_recorded_mechanisms",
    "test_the_push_decision_is_reserved_and_composed_between_preprocessing_and_training",
    "test_the_push_decision_is_the_noisy_accuracy_and_exact_thresholds_are_refused",
    "test_the_record_level_figures_delta_is_judged_against_a_public_bound_on_the_records",
    "test_the_refusal_is_exactly_where_the_target_is_out_of_reach",
    "test_the_rounded_batch_sizes_are_worth_the_epsilon_the_readmes_state",
    "test_under_dp_metrics_of_held_out_rows_are_labelled_outside_the_guarantee",
    "test_under_dp_no_csv_cell_decides_a_column_type_the_features_the_clients_or_the_run",
    "test_under_dp_no_csv_line_reaches_another_line_or_decides_the_run",
    "test_under_dp_no_exact_count_at_the_edges_decides_whether_the_run_happens",
    "test_under_dp_no_tfrecord_decides_the_features_their_kinds_or_the_run",
    "test_under_dp_one_bad_record_does_not_decide_whether_the_run_happens",
    "test_under_dp_the_models_classes_are_a_setting_not_read_from_the_labels",
    "test_user_level_dp_releases_the_number_of_users_only_where_the_adjacency_holds_it_fixed",
    "test_valid_extremes_run",
    "test_verbose_is_refused_where_a_library_record_could_quote_a_training_record",
    "test_with_both_accountants_a_target_only_pld_reaches_leaves_rdp_out_and_pld_answers",
    "test_with_few_answered_labels_self_training_beats_the_supervised_student_and_labels_only_unanswered_rows",
    "test_without_a_metadata_path_the_lineage_check_fails_closed_unless_declared_skipped",
}
SLOW_CASES = {
    "case_a_batch_left_none_is_refused_beyond_the_limit_and_trains_within_with_and_without_xla",
    "case_a_non_finite_example_contributes_nothing",
    "case_a_sequence_left_none_is_refused_beyond_the_limit_and_trains_within_with_and_without_xla",
    "case_a_tight_cap_cuts_batches_and_the_report_counts_them",
    "case_a_truncated_dataset_sets_the_accounting_and_mismatches_are_refused",
    "case_ghost_norms_equal_jacobian_norms",
    "case_losses_without_per_example_values_are_refused",
    "case_neighbouring_batches_differ_by_at_most_the_clip",
    "case_pld_cost_limit_crossed_by_the_planned_fit_is_refused_before_any_step",
    "case_recurrent_clipped_sum_equals_naive_per_example_clipping",
    "case_recurrent_rules_output_what_keras_computes",
    "case_sigma0_and_huge_clip_equal_the_non_private_update",
    "case_steps_that_ran_are_the_steps_accounted",
    "case_two_replicas_clip_per_example_like_one_device",
    "case_unclipped_sum_equals_full_gradient",
}
"""Tests, and Keras 3 cases of tests/privacy/keras, that took more than about 5 s each in the last full run on
2 cores (its JUnit report; a module fixture is charged to its first test), so that `make test-fast` fits in about
5 minutes; so does the tf-keras half of every Keras case (a fresh interpreter per module). Measured: README,
"Tests"."""


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


SHARED_RUN_FIXTURES = {"private_run", "audited_run"}
"""The session-scoped pipeline runs of tests/pipelines/conftest.py that more than one module uses: every other
session run there starts from one of them (a test's fixture names include the fixtures its fixtures use)."""
SHARED_RUN_FILES = frozenset({"tests/pipelines/test_pipeline_e2e.py", "tests/pipelines/test_dp_trainer_executor.py"})
"""The test files with a test on a shared run: under `-n N` they run on one worker, so each run happens once."""
SHARED_RUN_GROUP = "shared-pipeline-runs"


def worker_scope(nodeid: str) -> str:
    """What runs whole on one worker under `pytest -n N --dist loadfile` (the Makefile's): a test file, so that a
    module fixture runs once, or `SHARED_RUN_GROUP` for the files in `SHARED_RUN_FILES`."""
    path = nodeid.split("::")[0]
    return SHARED_RUN_GROUP if path in SHARED_RUN_FILES else path


def unlisted_shared_run_files(items) -> set[str]:
    """Files with a test on a shared run that `SHARED_RUN_FILES` does not list (each worker would run it again)."""
    return {item.nodeid.split("::")[0] for item in items if SHARED_RUN_FIXTURES.intersection(item.fixturenames)} - (
        SHARED_RUN_FILES
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` by `worker_scope` (pytest-xdist's xdist_group marks do not reach its scheduler under
    pytest 9.2: their nodeid suffix is lost)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return worker_scope(nodeid)

    return FileScheduling(config, log)


UNLISTED = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    unlisted = unlisted_shared_run_files(items)
    for item in items:
        if item.nodeid.split("::")[0] in unlisted:  # failed at setup: a collection error is lost on xdist workers
            item.stash[UNLISTED] = item.nodeid.split("::")[0]
        params = getattr(getattr(item, "callspec", None), "params", {})
        for marker in tier_markers(
            os.path.relpath(str(item.path), REPO), getattr(item, "originalname", item.name), item.fixturenames, params
        ):
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if UNLISTED in item.stash:
        pytest.fail(
            f"tests/conftest.py: add {item.stash[UNLISTED]!r} to SHARED_RUN_FILES (it has tests on shared runs)"
        )
