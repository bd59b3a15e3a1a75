"""Temporary files of a test session stay in its own folder (tests/conftest.py), removed when the session ends."""

import os
import subprocess
import sys
import tempfile

SESSION_TMP = "PPML_TEST_SESSION_TMP"  # tests/conftest.py


def test_temporary_files_of_this_process_and_its_subprocesses_go_to_the_sessions_folder(python_subprocess, tmp_path):
    folder = os.environ[SESSION_TMP]
    assert os.path.basename(folder).startswith("ppml-tests-") and os.path.isdir(folder)
    assert tempfile.gettempdir() == folder == os.environ["TMPDIR"]
    assert str(tmp_path).startswith(folder + os.sep)
    with tempfile.TemporaryDirectory() as made:
        assert os.path.dirname(made) == folder
    child = python_subprocess("import tempfile; print(tempfile.mkdtemp(prefix='beam-temp'))").stdout.strip()
    assert os.path.dirname(child) == folder


def test_a_session_removes_its_folder_when_it_ends():
    """A nested pytest session (a fresh interpreter without the variable) makes its own folder and removes it."""
    env = {k: v for k, v in os.environ.items() if k not in (SESSION_TMP, "TMPDIR")}
    code = (
        "import os, sys, tempfile; sys.path.insert(0, '.'); import tests.conftest as c; "
        "open(os.path.join(tempfile.gettempdir(), 'left'), 'w').close(); print(c._OWN_TMP)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    made = proc.stdout.strip()
    assert os.path.basename(made).startswith("ppml-tests-") and not os.path.exists(made)


def test_a_forked_child_that_exits_normally_leaves_the_folder_to_the_process_that_made_it():
    """The child runs the exit handlers it inherited (sys.exit, not os._exit): the folder outlives it, and goes when
    the process that made it exits."""
    env = {k: v for k, v in os.environ.items() if k not in (SESSION_TMP, "TMPDIR")}
    code = (
        "import os, sys; sys.path.insert(0, '.'); import tests.conftest as c\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    sys.exit(0)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print(os.waitstatus_to_exitcode(status), os.path.isdir(c._OWN_TMP), c._OWN_TMP)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    exit_code, alive_after_child, made = proc.stdout.split()
    assert exit_code == "0" and alive_after_child == "True"
    assert os.path.basename(made).startswith("ppml-tests-") and not os.path.exists(made)
