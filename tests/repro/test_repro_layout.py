"""The layout of attnlab.repro: every module registered, the harness shared by import, nothing private crossing."""
from __future__ import annotations

import ast
from pathlib import Path

import attnlab.repro as repro

ROOT = Path(repro.__file__).parent


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names)


def test_every_reproduction_module_is_registered():
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert modules == set(repro.REPROS)
    assert all(repro.REPROS[slug] == f"attnlab.repro.{slug}" for slug in repro.REPROS)


def test_no_private_module_or_name_is_imported_and_no_benchmark():
    files = sorted(ROOT.rglob("*.py"))
    assert not [p for p in files if p.stem.startswith("_") and p.stem != "__init__"]
    for path in files:
        for module, names in _imports(path):
            assert not module.startswith("attnlab.bench"), path  # reproductions never time through benchmarks
            assert module == "__future__" or not any(p.startswith("_") for p in module.split(".")), (path, module)
            assert not [n for n in names if n.startswith("_")], (path, module, names)


def test_reproductions_do_not_import_each_other():
    for path in ROOT.glob("*.py"):
        for module, _ in _imports(path):
            assert module.removeprefix("attnlab.repro.") not in repro.REPROS or path.stem == "__init__", (path, module)
