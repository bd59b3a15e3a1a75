"""Shared test setup.

TensorFlow reads TF_USE_LEGACY_KERAS once, at import: the suite runs on Keras 3 (0) unless the variable is
set, and tests for tf-keras run code in a subprocess through the `python_subprocess` fixture.
"""

import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, *, legacy_keras: bool | None = None, env: dict | None = None, timeout: float = 900,
               check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``python -c code`` in a fresh interpreter at the repo root; fails the test with its output."""
    full_env = dict(os.environ, **(env or {}))
    if legacy_keras is not None:
        full_env["TF_USE_LEGACY_KERAS"] = "1" if legacy_keras else "0"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"subprocess failed (exit {proc.returncode}):\n--- stdout\n{proc.stdout[-4000:]}\n"
                    f"--- stderr\n{proc.stderr[-8000:]}", pytrace=False)
    return proc


@pytest.fixture(scope="session")
def python_subprocess():
    """`run_python(code, legacy_keras=..., env=..., timeout=..., check=...)` as a fixture."""
    return run_python
