"""Runs each test case on both Keras flavours.

A case is a function ``case_*`` in a ``cases_*.py`` module of this folder, written once against
``privacy.keras.compat.default_keras()``. On Keras 3 it runs in the pytest process; on tf-keras the cases of a module
that the session runs (all, unless ``-k`` or ``-m`` leaves some out) run in one fresh interpreter with
TF_USE_LEGACY_KERAS=1, which reports each case's traceback or success as it ends. A case that runs past
`CASE_TIMEOUT_S` or ends the interpreter fails with its own name, and the module's cases after it run in a fresh
interpreter. Modules that must configure TensorFlow before it starts (``isolated=True``) run in a fresh interpreter on
Keras 3 too. So does a module that sets ``XLA_BACKEND_O0 = True``: both its interpreters run with
`XLA_BACKEND_O0_FLAG` in XLA_FLAGS, which lowers only LLVM's optimisation of XLA's CPU code (about a third less CPU
for a first XLA call). A module may opt in only if its XLA assertions are equalities within tolerances (clipped sums
against naive clipping) or trace-time decisions, never round-off, directed rounding, bit-exactness or non-finite
handling, which must be checked on the code XLA builds by default (cases_roundoff, cases_clipping).
A case run in a fresh interpreter reports as its duration (pytest's --durations, JUnit's time) its own wall time
there, the interpreter's start and the module's import charged to the first case it runs, instead of the time the
pytest process waited (the whole interpreter's run for the module's first case, nothing for the others).
"""

import ast
import functools
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.conftest import REPO

HERE = os.path.dirname(os.path.abspath(__file__))
FLAVOURS = ("keras3", "tf_keras")
CASE_TIMEOUT_S = 900
"""Wall-clock seconds one case (or the module's import, before its first case) may take in the fresh interpreter."""
_START, _END = "@@ppml-case-start@@", "@@ppml-case-end@@"
_subprocess_runs: dict[tuple[str, str], tuple[dict[str, str | None], dict[str, float]]] = {}
"""Per (module, flavour): what `_run_in_fresh_interpreters` returned."""
_OWN_SECONDS = pytest.StashKey[float]()
XLA_BACKEND_O0_FLAG = "--xla_backend_optimization_level=0"

_RUNNER = """
import importlib.util, json, sys, traceback
names = {names!r}
try:
    spec = importlib.util.spec_from_file_location("cases", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
except Exception:
    error = traceback.format_exc()
    for name in names:
        print({end!r} + json.dumps([name, error]), flush=True)
    sys.exit()
for name in names:
    print({start!r} + name, flush=True)
    try:
        getattr(module, name)()
        error = None
    except Exception:
        error = traceback.format_exc()
    print({end!r} + json.dumps([name, error]), flush=True)
"""


def _run_in_fresh_interpreters(
    module: str, names: list[str], legacy_keras: bool, xla_o0: bool
) -> tuple[dict[str, str | None], dict[str, float]]:
    """Runs the cases ``names`` of ``cases_<module>.py`` in order in a fresh interpreter: ({name: traceback or None},
    {name: wall seconds}). A case past `CASE_TIMEOUT_S` (or whose interpreter exits) fails with that message, and the
    cases after it run in another fresh interpreter; if the interpreter ends before its first case, every case left
    fails with its output. Each interpreter's start and import count in the seconds of the first case it runs."""
    results: dict[str, str | None] = {}
    seconds: dict[str, float] = {}
    while len(results) < len(names):
        todo = [name for name in names if name not in results]
        results.update(_run_until_a_case_fails_to_end(module, todo, legacy_keras, xla_o0, seconds))
    return results, seconds


def _run_until_a_case_fails_to_end(
    module: str, names: list[str], legacy_keras: bool, xla_o0: bool, seconds: dict[str, float]
) -> dict[str, str | None]:
    """Runs the cases ``names`` in one fresh interpreter until they all end or one runs past `CASE_TIMEOUT_S` or ends
    the interpreter: {name: traceback or None} of the cases that ended and of that one (of all left, if it ended
    between cases). Adds each case's wall seconds to ``seconds``, the interpreter's start to its first case's. With
    ``xla_o0``, XLA_FLAGS gets `XLA_BACKEND_O0_FLAG`."""
    code = _RUNNER.format(names=names, path=os.path.join(HERE, f"{module}.py"), start=_START, end=_END)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1" if legacy_keras else "0")
    if xla_o0:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_BACKEND_O0_FLAG}".strip()
    results: dict[str, str | None] = {}
    current, problem = None, None
    since = time.monotonic()  # the interpreter's start, then the end of the last case
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        lines: queue.Queue = queue.Queue()

        def read() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + CASE_TIMEOUT_S
            while len(results) < len(names):
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    problem = f"timed out: still running after {CASE_TIMEOUT_S} s"
                    break
                if line is None:
                    problem = f"the interpreter exited (code {proc.wait()})"
                    break
                if line.startswith(_START):
                    current, deadline = line[len(_START) :].rstrip("\n"), time.monotonic() + CASE_TIMEOUT_S
                elif line.startswith(_END):
                    name, error = json.loads(line[len(_END) :])
                    results[name], current = error, None
                    now = time.monotonic()
                    seconds[name], since = seconds.get(name, 0.0) + now - since, now
        finally:
            proc.kill()
            proc.wait()
            reader.join(timeout=10)
            proc.stdout.close()
        if problem is not None:
            stderr.seek(0)
            message = f"{problem}\n--- stderr (last 8000 characters)\n{stderr.read()[-8000:]}"
            left = [current] if current is not None else [name for name in names if name not in results]
            results.update(dict.fromkeys(left, message))
            seconds[left[0]] = seconds.get(left[0], 0.0) + time.monotonic() - since
    return results


@functools.cache  # read once per session: every case of the module asks
def _module_tree(module: str) -> ast.Module:
    with open(os.path.join(HERE, f"{module}.py")) as f:
        return ast.parse(f.read())


def case_names(module: str) -> list[str]:
    """The ``case_*`` functions of ``cases_<module>.py``, in file order, read without importing it."""
    tree = _module_tree(module)
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("case_")]


def xla_backend_o0(module: str) -> bool:
    """Whether ``cases_<module>.py`` sets ``XLA_BACKEND_O0 = True`` at its top level, read without importing it."""
    for node in _module_tree(module).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["XLA_BACKEND_O0"]:
            return ast.literal_eval(node.value) is True
    return False


def load_cases(module: str):
    """Imports ``cases_<module>.py`` of this folder in this process (Keras 3)."""
    path = os.path.join(HERE, f"{module}.py")
    spec = importlib.util.spec_from_file_location(f"ppml_keras_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def _selected_cases(request, module: str, case: str, flavour: str) -> list[str]:
    """The cases of ``cases_<module>.py`` this session runs on ``flavour`` from the test file of ``request`` (``case``
    among them), in file order: a fresh interpreter runs those only (not the cases `-k` or `-m` left out)."""
    chosen = {case}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.path == request.node.path and params.get("flavour") == flavour and "case" in params:
            chosen.add(params["case"])
    return [name for name in case_names(module) if name in chosen]


@pytest.fixture
def run_case(request):
    """``run_case(module, case, flavour, isolated=False)`` runs one case on "keras3" or "tf_keras"."""

    def run(module: str, case: str, flavour: str, isolated: bool = False) -> None:
        xla_o0 = xla_backend_o0(module)
        if flavour == "keras3" and not isolated and not xla_o0:
            getattr(load_cases(module), case)()
            return
        key = (module, flavour)
        if key not in _subprocess_runs:
            _subprocess_runs[key] = _run_in_fresh_interpreters(
                module, _selected_cases(request, module, case, flavour), flavour == "tf_keras", xla_o0
            )
        results, seconds = _subprocess_runs[key]
        request.node.stash[_OWN_SECONDS] = seconds.get(case, 0.0)
        if case not in results:
            pytest.fail(f"{module}.{case} did not run ({flavour})")
        if results[case] is not None:
            pytest.fail(f"in a fresh interpreter ({flavour}):\n{results[case]}", pytrace=False)

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A case run in a fresh interpreter reports its own seconds there as its call's duration (module docstring)."""
    report = yield
    if call.when == "call" and _OWN_SECONDS in item.stash:
        report.duration = item.stash[_OWN_SECONDS]
    return report
