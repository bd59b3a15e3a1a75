"""Test snippets that share one fresh interpreter, so that TFX, TFMA or TensorFlow is imported once for several.

Each fresh interpreter that imports TFX costs about 20 s of CPU; a test file whose tests each ran ``python -c`` paid
it per test. `run_snippets` runs them one after another in one ``python -c`` (no fork: the imports start native
threads). Each snippet runs as ``__main__`` in a namespace of its own, with ``tmp_dir`` a folder of its own, and its
stdout captured; afterwards every module of this project (pipelines, privacy, federated) gets back the attributes
its import left it (an import hook records them; a submodule imported since stays), so a snippet's monkeypatching is
not seen by the next one. `Snippets.module_fixture` makes a module fixture that runs only the snippets of the tests
selected in that module.
"""

import json
import os

import pytest

from ..conftest import run_python

_RUNNER = """
import contextlib, importlib.machinery, io, json, os, sys, traceback, types
OWN = ("pipelines", "privacy", "federated")
pristine = {}  # each of this project's modules' attributes as its import left them


class Pristine:
    @staticmethod
    def find_spec(name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path) if name.split(".")[0] in OWN else None
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                pristine[module.__name__] = dict(vars(module))

            spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Pristine)
results = {}
for name, code in SNIPPETS.items():
    folder = os.path.join(ROOT, name)
    os.makedirs(folder)
    stdout, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(stdout):
            exec(compile(code, f"<snippet {name}>", "exec"), {"__name__": "__main__", "tmp_dir": folder})
    except BaseException:  # SystemExit too: a snippet's exit is its failure
        error = traceback.format_exc()
    for module, attributes in pristine.items():
        namespace = vars(sys.modules[module])
        for key in [key for key in namespace if key not in attributes]:
            if not isinstance(namespace[key], types.ModuleType):  # a submodule imported since stays
                del namespace[key]
        namespace.update(attributes)
    results[name] = {"stdout": stdout.getvalue(), "error": error, "dir": folder}
print("SNIPPET RESULTS " + json.dumps(results))
"""


def run_snippets(snippets: dict[str, str], root: str, *, legacy_keras: bool, timeout: float = 900) -> dict:
    """Runs each ``{name: code}`` in one fresh interpreter (see the module docstring), in folders under ``root``:
    ``{name: {"stdout": its stdout, "error": its traceback or None, "dir": its tmp_dir}}``. The timeout is the
    whole run's, in seconds."""
    if not snippets:
        return {}
    code = f"SNIPPETS = {snippets!r}\nROOT = {root!r}\n{_RUNNER}"
    proc = run_python(code, legacy_keras=legacy_keras, timeout=timeout)
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("SNIPPET RESULTS ")]
    return json.loads(line.removeprefix("SNIPPET RESULTS "))


def snippet_output(results: dict, name: str) -> str:
    """The stdout of snippet ``name``; fails the test with the snippet's output and traceback if it raised."""
    result = results[name]
    if result["error"] is not None:
        pytest.fail(
            f"snippet {name} failed:\n--- stdout\n{result['stdout'][-4000:]}\n--- traceback\n{result['error']}",
            pytrace=False,
        )
    return result["stdout"]


class Snippets(dict):
    """Test function name -> its snippet's code; ``@SNIPPETS.of(code)`` above a test registers its snippet."""

    def of(self, code: str):
        def register(test):
            self[test.__name__] = code
            return test

        return register

    def module_fixture(self, *, legacy_keras: bool):
        """A module fixture running, in one interpreter, the snippets whose tests are selected in the requesting
        module; it returns `run_snippets`' results."""

        @pytest.fixture(scope="module")
        def fixture(request, tmp_path_factory):
            selected = {item.originalname for item in request.session.items if item.module is request.module}
            chosen = {name: code for name, code in self.items() if name in selected}
            root = str(tmp_path_factory.mktemp("snippets"))
            return run_snippets(chosen, os.path.join(root, "runs"), legacy_keras=legacy_keras)

        return fixture
