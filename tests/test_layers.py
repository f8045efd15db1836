"""Imports flow one way: utilities -> config -> data -> models -> checkpoint -> inference ->
evaluation -> training -> command line. A module may import only from layers below it."""

import ast
from pathlib import Path

import doctune

LAYERS = [
    {"errors", "files"},
    {"metrics", "images"},
    {"config", "synth"},
    {"sources"},
    {"data", "prompt"},
    {"models"},
    {"checkpoint"},
    {"inference"},
    {"evaluate", "serve"},
    {"train"},
    {"demo"},
    {"cli"},
]
PACKAGE = Path(doctune.__file__).parent


def _layer_of(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _doctune_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("doctune."):
            found.add(node.module.removeprefix("doctune."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("doctune.") for a in node.names if a.name.startswith("doctune.")}
    return found


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py" or path.parent != PACKAGE:
            _layer_of(str(path.relative_to(PACKAGE).with_suffix("")).replace("/", "."))


def test_imports_only_go_down():
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        module = str(path.relative_to(PACKAGE).with_suffix("")).replace("/", ".")
        for imported in _doctune_imports(path):
            if imported.split(".")[0] == module.split(".")[0]:
                continue  # inside one package
            assert _layer_of(imported) < _layer_of(module), f"{module} imports {imported}, a layer above or beside it"
