"""Module structure: each module of `privacy` imports on its own, first in its interpreter's `privacy` (no import
cycle, no module relying on another having been imported first), and none of them pulls in the layers above
(`pipelines`, `federated`, TFX itself); no module of ppml imports or reaches into another's private (``_x``) names."""

import ast
import json
import os
import threading

from tests.conftest import REPO

CODE = """
import importlib, json, sys, traceback
failed = {}
for name in NAMES:
    for loaded in [m for m in sys.modules if m == "privacy" or m.startswith("privacy.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
above = sorted(m for m in sys.modules if m.split(".")[0] in ("pipelines", "federated", "tfx", "benchmarks"))
print(json.dumps({"failed": failed, "above": above}))
"""


def privacy_modules() -> list[str]:
    """Dotted names of every module under privacy/, packages included."""
    names = []
    for folder, _, files in os.walk(os.path.join(REPO, "privacy")):
        package = os.path.relpath(folder, REPO).replace(os.sep, ".")
        names += [package if f == "__init__.py" else f"{package}.{f[:-3]}" for f in files if f.endswith(".py")]
    return sorted(names)


def test_every_privacy_module_imports_alone_and_not_the_layers_above(python_subprocess):
    names = privacy_modules()
    assert len(names) > 100 and "privacy.keras.callback" in names and "privacy.keras.model" in names
    proc = python_subprocess(f"NAMES = {names!r}\n{CODE}", timeout=600)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}, "\n".join(f"{name}:\n{tb}" for name, tb in result["failed"].items())
    assert result["above"] == []


def cross_module_private_names(top: str) -> list[str]:
    """``path:line: name`` for each private name of another ppml module that a module under ``top`` imports
    (``from m import _x``) or reaches through an imported module or class (``m._x``)."""
    packages = ("privacy", "federated", "pipelines", "benchmarks")
    found = []
    for folder, _, files in os.walk(os.path.join(REPO, top)):
        for file in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, file)
            with open(path) as f:
                tree = ast.parse(f.read())
            imported = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in packages:
                    for alias in node.names:
                        imported.add(alias.asname or alias.name)
                        if alias.name.startswith("_"):
                            found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {alias.name}")
                elif isinstance(node, ast.Import):
                    imported |= {a.asname or a.name for a in node.names if a.name.split(".")[0] in packages}
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.endswith("__")
                    and isinstance(node.value, ast.Name)
                    and node.value.id in imported
                ):
                    found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [
        hit for top in ("privacy", "federated", "pipelines", "benchmarks") for hit in cross_module_private_names(top)
    ]
    assert found == [], found


def import_graph(repo: str = REPO) -> dict[str, set[str]]:
    """{module: the ppml modules it imports}, at module level or inside functions (deferred imports count: a cycle
    through one still ties the two modules together), for every module of privacy, federated, pipelines and
    benchmarks under ``repo``; ``from package import name`` counts as the submodule ``package.name`` where there is
    one, and a namespace package (no __init__.py: no code) as nothing."""
    packages = ("privacy", "federated", "pipelines", "benchmarks")
    files = {}
    for top in packages:
        for folder, _, names in os.walk(os.path.join(repo, top)):
            for file in (n for n in names if n.endswith(".py")):
                dotted = os.path.relpath(os.path.join(folder, file), repo)[:-3].replace(os.sep, ".")
                files[dotted.removesuffix(".__init__")] = os.path.join(folder, file)

    def module_of(name: str) -> str:
        """The module with a file that importing ``name`` runs; '' for a package without one (a namespace)."""
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in files.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {module_of(a.name) for a in node.names if a.name.split(".")[0] in packages}
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, f"{path}:{node.lineno}: a relative import (ppml imports absolutely)"
                base = node.module or ""
                if base.split(".")[0] in packages:
                    imported |= {module_of(f"{base}.{a.name}") for a in node.names}
        graph[module] = imported - {module, ""}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, each importing the next and the last the first) through each module on one."""
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return cycles


def test_the_import_graph_skips_a_package_without_a_file(tmp_path):
    """``import benchmarks`` names a namespace package (no __init__.py, no code): no edge, and no endless search."""
    os.makedirs(tmp_path / "benchmarks")
    (tmp_path / "benchmarks" / "b.py").write_text("import benchmarks\nfrom benchmarks import b\n")
    found = []
    worker = threading.Thread(target=lambda: found.append(import_graph(str(tmp_path))), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and found == [{"benchmarks.b": set()}]


def test_no_import_cycle_among_ppml_modules():
    graph = import_graph()
    assert {"pipelines.pipeline", "pipelines.runners"} <= graph["pipelines.cli.pipeline"]  # deferred, from a package
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles(graph) == []
