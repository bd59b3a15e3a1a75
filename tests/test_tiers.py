"""The test tiers of setup.cfg and tests/conftest.py, and ppml's deprecation warnings as errors."""

import warnings

import pytest


@pytest.mark.parametrize("module", ["privacy.accounting", "federated", "pipelines.cli.aliases"])
def test_a_deprecation_warning_raised_by_ppml_fails_the_test(module):
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old spelling", DeprecationWarning, "ppml.py", 1, module=module)


@pytest.mark.parametrize("module", ["numpy", "privacy_tools", "tensorflow.python"])
def test_deprecation_warnings_of_other_packages_stay_warnings(module):
    with pytest.warns(DeprecationWarning):
        warnings.warn_explicit("old spelling", DeprecationWarning, "lib.py", 1, module=module)


@pytest.mark.parametrize(
    "path, name, fixtures, params, tiers",
    [
        ("tests/pipelines/test_pipeline_e2e.py", "test_anything", (), {}, {"tfx"}),
        ("tests/pipelines/test_privacy_ledger.py", "test_x", ("private_run",), {}, {"tfx"}),
        (
            "tests/federated/test_simulation.py",
            "test_beam_runner_and_worker_threads_equal_in_process_bitwise",
            (),
            {},
            {"tfx"},
        ),
        (
            "tests/privacy/keras/test_training.py",
            "test_training",
            ("run_case",),
            {"flavour": "keras3", "case": "case_x"},
            {"keras_flavours"},
        ),
        (
            "tests/privacy/keras/test_training.py",
            "test_training",
            ("run_case",),
            {"flavour": "tf_keras", "case": "case_x"},
            {"keras_flavours", "slow"},
        ),
        (
            "tests/privacy/keras/test_clipping.py",
            "test_clipping",
            ("run_case",),
            {"flavour": "keras3", "case": "case_ghost_norms_equal_jacobian_norms"},
            {"keras_flavours", "slow"},
        ),
        (
            "tests/federated/test_cli_processes.py",
            "test_killed_runs_resume_from_their_checkpoint_to_the_uninterrupted_result",
            (),
            {},
            {"slow"},
        ),
        (
            "tests/federated/test_cli.py",
            "test_plain_output_is_one_line_per_round_without_blank_lines",
            ("tmp_path",),
            {},
            set(),
        ),
    ],
)
def test_tiers_follow_module_fixture_and_name(path, name, fixtures, params, tiers):
    from tests.conftest import tier_markers

    assert tier_markers(path, name, fixtures, params) == tiers


def test_every_slow_or_tfx_test_named_exists():
    """A renamed test would drop out of its tier: every name in the tier lists is a test or case of the suite."""
    import pathlib

    from tests.conftest import REPO, SLOW_CASES, SLOW_TESTS, TFX_TESTS

    source = "\n".join(p.read_text() for p in pathlib.Path(REPO, "tests").rglob("*.py"))
    assert all(f"def {name}(" in source for name in SLOW_TESTS | SLOW_CASES | TFX_TESTS)


def test_a_file_runs_on_one_worker_and_the_files_sharing_pipeline_runs_share_one():
    """`-n N --dist loadfile` keeps a scope on one worker: a module fixture, or a shared session run, runs once."""
    from types import SimpleNamespace

    from tests.conftest import SHARED_RUN_FILES, SHARED_RUN_GROUP, unlisted_shared_run_files, worker_scope

    e2e, other = "tests/pipelines/test_pipeline_e2e.py", "tests/pipelines/test_other.py"
    assert e2e in SHARED_RUN_FILES and worker_scope(f"{e2e}::test_x[a]") == SHARED_RUN_GROUP
    assert {worker_scope(f"{path}::test_x") for path in SHARED_RUN_FILES} == {SHARED_RUN_GROUP}
    assert worker_scope(f"{other}::test_x") == worker_scope(f"{other}::Class::test_y") == other

    def item(path, *fixtures):
        return SimpleNamespace(nodeid=f"{path}::test_x", fixturenames=["tmp_path", *fixtures])

    assert unlisted_shared_run_files([item(e2e, "strict_audit_run", "private_run"), item(other)]) == set()
    assert unlisted_shared_run_files([item(other, "audited_run")]) == {other}


def test_two_workers_keep_each_file_on_one_worker():
    """The scheduler the Makefile's `-n 2 --dist loadfile` gets, run for real on two workers."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadfile",
            "-p",
            "no:cacheprovider",
            "-v",
            "tests/test_tiers.py",
            "-k",
            "tiers_follow",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    workers = {line.split("]")[0] for line in out.splitlines() if "PASSED" in line}
    assert "scheduling tests via FileScheduling" in out and len(workers) == 1, out[-2000:]
