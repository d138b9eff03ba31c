"""The package is layered and imports only go down; every medgan import sits at module level.

Layers, lowest first: ``atomic``/``config`` -> ``data``, ``models``, ``losses`` -> ``train`` ->
``metrics`` -> ``analysis`` -> ``reports`` -> ``studies`` -> the ``medgan`` command. A module may
import its own layer and the layers below it. A function-local import is allowed only for an
optional third-party package, with a comment on that line or the line above saying why.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medgan"
LAYERS = {"atomic": 0, "config": 0, "data": 1, "models": 1, "losses": 1, "train": 2, "metrics": 3,
          "analysis": 4, "reports": 5, "studies": 6, "cli": 7, "__main__": 7, "__init__": 7}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _layer(dotted: str) -> int:
    parts = dotted.split(".")
    if parts[0] != "medgan":
        raise ValueError(dotted)
    if len(parts) == 1:
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts)


def _imports(tree: ast.AST):
    """(node, imported module name, at module level?) for every import in a module."""
    top = {id(n) for n in tree.body}
    top |= {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try)) for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module, id(node) in top


@pytest.mark.parametrize("path", MODULES, ids=[_module_name(p) for p in MODULES])
def test_imports_go_down_and_sit_at_module_level(path):
    name = _module_name(path)
    own = _layer(name)
    source = path.read_text()
    lines = source.splitlines()
    problems = []
    for node, module, at_top in _imports(ast.parse(source)):
        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        if module.split(".")[0] == "medgan":
            if not at_top:
                problems.append(f"{where}: function-local import of {module} (move it to the top of the module)")
            if _layer(module) > own and not name.startswith(module):
                problems.append(f"{where}: {name} (layer {own}) imports {module} (layer {_layer(module)}): upward")
        elif not at_top:
            said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if not said:
                problems.append(f"{where}: local import of {module} without a comment saying why")
    assert not problems, "\n".join(problems)


def test_the_layer_table_covers_every_top_level_name():
    names = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in MODULES}
    assert names <= set(LAYERS), sorted(names - set(LAYERS))
