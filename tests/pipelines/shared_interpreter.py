"""Test snippets that share one fresh interpreter, so that TFX, TFMA or TensorFlow is imported once for several.

Each fresh interpreter that imports TFX costs about 20 s of CPU; a test file whose tests each ran ``python -c`` paid
it per test. `run_snippets` runs them one after another in one ``python -c`` (no fork: the imports start native
threads). Each snippet runs as ``__main__`` in a namespace of its own, with ``tmp_dir`` a folder of its own, and its
stdout captured; afterwards the working folder and umask are put back, and every module of this project (pipelines,
privacy, federated) gets back the attributes its import left it (an import hook records them; a submodule imported
since stays), so a snippet's rebinding of a module attribute is not seen by the next one. Not put back: objects
changed in place (a class's attribute, a registry, a cache), environment variables (imports of TensorFlow set some)
and third-party modules, so a snippet must not patch those. An interpreter that ends inside a snippet fails that
snippet only. `Snippets.module_fixture` makes a module fixture that runs only the snippets of the tests selected
in that module.
"""

import json
import os
import subprocess

import pytest

from ..conftest import run_python

_RUNNER = """
import contextlib, importlib.machinery, json, os, sys, traceback, types
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
cwd, umask = os.getcwd(), os.umask(0o022)  # umask: read by setting it, then put back
os.umask(umask)
for name, code in SNIPPETS.items():
    folder = os.path.join(ROOT, name)
    os.makedirs(folder)
    error = None
    with open(folder + ".stdout", "w", buffering=1) as stdout:  # beside its folder: kept if the interpreter dies in it
        try:
            with contextlib.redirect_stdout(stdout):
                exec(compile(code, f"<snippet {name}>", "exec"), {"__name__": "__main__", "tmp_dir": folder})
        except BaseException:  # SystemExit too: a snippet's exit is its failure
            error = traceback.format_exc()
    os.chdir(cwd)
    os.umask(umask)
    for module, attributes in pristine.items():
        namespace = vars(sys.modules[module])
        for key in [key for key in namespace if key not in attributes]:
            if not isinstance(namespace[key], types.ModuleType):  # a submodule imported since stays
                del namespace[key]
        namespace.update(attributes)
    print(DONE + json.dumps([name, error]), flush=True)
"""
_DONE = "SNIPPET DONE "


def run_snippets(snippets: dict[str, str], root: str, *, legacy_keras: bool, timeout: float = 900) -> dict:
    """Runs each ``{name: code}`` in one fresh interpreter (see the module docstring), in folders under ``root``:
    ``{name: {"stdout": its stdout, "error": its traceback or None, "dir": its tmp_dir}}``. If the interpreter ends
    inside a snippet (``os._exit``, a crash, or past ``timeout``, in seconds per interpreter), that snippet gets the
    error and the snippets after it run in a fresh interpreter."""
    results = {}
    while snippets:
        code = f"SNIPPETS = {snippets!r}\nROOT = {root!r}\nDONE = {_DONE!r}\n{_RUNNER}"
        try:
            proc = run_python(code, legacy_keras=legacy_keras, timeout=timeout, check=False)
            output, stderr, ended = proc.stdout, proc.stderr, f"exited with status {proc.returncode}"
            clean = proc.returncode == 0
        except subprocess.TimeoutExpired as err:
            output, stderr, ended = _text(err.stdout), _text(err.stderr), f"ran past its timeout of {timeout} s"
            clean = False
        done = dict(json.loads(line.removeprefix(_DONE)) for line in output.splitlines() if line.startswith(_DONE))
        for name in snippets:
            folder = os.path.join(root, name)
            stdout = open(folder + ".stdout").read() if os.path.exists(folder + ".stdout") else ""
            error = done.get(name, f"the shared interpreter {ended} in this snippet; its stderr:\n{stderr[-8000:]}")
            results[name] = {"stdout": stdout, "error": error, "dir": folder}
            if name not in done:
                break
        if len(done) == len(snippets) and not clean:  # each snippet ran to its end, then the interpreter failed
            pytest.fail(f"the shared interpreter {ended} after its last snippet:\n{stderr[-8000:]}", pytrace=False)
        snippets = {name: code for name, code in snippets.items() if name not in results}
    return results


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


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
