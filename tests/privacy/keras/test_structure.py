"""privacy.keras's modules import each other without cycles and use only each other's public names."""

import ast
import os

PACKAGE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "privacy", "keras"
)
MODULES = sorted(name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py")


def _imports(module):
    """(modules of privacy.keras that ``module`` imports anywhere, names of them it uses)."""
    with open(os.path.join(PACKAGE, f"{module}.py")) as f:
        tree = ast.parse(f.read())
    imported, used, aliases = set(), [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "privacy.keras":
            for alias in node.names:
                if alias.name in MODULES:
                    imported.add(alias.name)
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("privacy.keras."):
            imported.add(node.module.split(".")[2])
            used += [(node.module.split(".")[2], alias.name) for alias in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.append((aliases[node.value.id], node.attr))
    return imported, used


def test_no_import_cycles():
    graph = {module: _imports(module)[0] for module in MODULES}

    def visit(module, path):
        assert module not in path, f"import cycle: {' -> '.join(path + [module])}"
        for other in graph[module]:
            visit(other, path + [module])

    for module in MODULES:
        visit(module, [])


def test_only_public_names_cross_modules():
    assert not [module for module in MODULES if module.startswith("_")], "modules the others import are public"
    private = [
        f"{module} uses {owner}.{name}"
        for module in MODULES
        for owner, name in _imports(module)[1]
        if name.startswith("_") and owner != module
    ]
    assert not private, private
