"""Runs each test case on both Keras flavours.

A case is a function ``case_*`` in a ``cases_*.py`` module of this folder, written once against
``privacy.keras.compat.default_keras()``. On Keras 3 it runs in the pytest process; on tf-keras all the
cases of a module run in one fresh interpreter with TF_USE_LEGACY_KERAS=1 (through the suite's
`python_subprocess` fixture), which reports every case's traceback or success. Modules that must
configure TensorFlow before it starts (``isolated=True``) run in a fresh interpreter on Keras 3 too.
"""

import ast
import importlib.util
import json
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FLAVOURS = ("keras3", "tf_keras")
_MARK = "@@ppml-case-results@@"
_subprocess_results: dict[tuple[str, str], dict[str, str | None]] = {}

_RUNNER = """
import importlib.util, json, sys, traceback
spec = importlib.util.spec_from_file_location("cases", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
results = {{}}
for name in sorted(n for n in dir(module) if n.startswith("case_")):
    try:
        getattr(module, name)()
        results[name] = None
    except Exception:
        results[name] = traceback.format_exc()
print({mark!r} + json.dumps(results))
"""


def case_names(module: str) -> list[str]:
    """The ``case_*`` functions of ``cases_<module>.py``, in file order, read without importing it."""
    with open(os.path.join(HERE, f"{module}.py")) as f:
        tree = ast.parse(f.read())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("case_")]


def load_cases(module: str):
    """Imports ``cases_<module>.py`` of this folder in this process (Keras 3)."""
    path = os.path.join(HERE, f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"ppml_keras_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def run_case(python_subprocess):
    """``run_case(module, case, flavour, isolated=False)`` runs one case on "keras3" or "tf_keras"."""

    def run(module: str, case: str, flavour: str, isolated: bool = False) -> None:
        if flavour == "keras3" and not isolated:
            getattr(load_cases(module), case)()
            return
        key = (module, flavour)
        if key not in _subprocess_results:
            code = _RUNNER.format(path=os.path.join(HERE, f"{module}.py"), mark=_MARK)
            proc = python_subprocess(code, legacy_keras=flavour == "tf_keras", timeout=900)
            line = next(line for line in proc.stdout.splitlines() if line.startswith(_MARK))
            _subprocess_results[key] = json.loads(line[len(_MARK) :])
        results = _subprocess_results[key]
        if case not in results:
            pytest.fail(f"{module}.{case} did not run ({flavour})")
        if results[case] is not None:
            pytest.fail(f"in a fresh interpreter ({flavour}):\n{results[case]}", pytrace=False)

    return run
