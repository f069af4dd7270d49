"""The package's layering and module privacy hold, checked on the source with ``ast``.

(a) Imports go down the layers only:

    utils, papers  <-  ops  <-  layers  <-  mixers  <-  models  <-  train / analysis / distributed
                   <-  repro / bench / compare / suites  <-  cli

``tasks`` may import only utils and papers; everything from models up may import tasks. A
module may import its own package and the packages of its own level (train may use analysis).
The rules are by module prefix (``attnlab.<top>``; ``attnlab.bench_*`` modules count as bench),
so new modules inside a package are covered without editing this file; a new top-level package
fails here until it is given a level.

(b) No private name crosses a module: ``from attnlab.x import _name``, or ``mod._name`` where
``mod`` names another attnlab module (``import attnlab.x as mod``, ``from attnlab import x``),
or a dotted ``attnlab.x._name``. Dunder names are not private.

Every violation is reported with file:line. Lazy imports inside functions count too: they are
dependencies all the same.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "attnlab"

#: level of each top-level package / module of attnlab (its first dotted component below attnlab).
LEVELS = {
    "utils": 0, "papers": 0,
    "ops": 1,
    "layers": 2,
    "mixers": 3,
    "tasks": 3,  # beside the mixers: below models, above nothing but utils (see TASK_IMPORTS)
    "models": 4,
    "train": 5, "analysis": 5, "distributed": 5,
    "repro": 6, "bench": 6, "compare": 6, "suites": 6, "executors": 6,
    "cli": 7, "__main__": 7,
}
#: what a tasks module may import (tasks know nothing of ops, mixers or models).
TASK_IMPORTS = {"utils", "papers", "tasks"}
#: the package root re-exports ``record_attention`` from ops and may import nothing higher.
ROOT_LEVEL = LEVELS["ops"]



def _top(module: str) -> str:
    """``attnlab.mixers.deltanet`` -> ``mixers``; ``attnlab.bench_local`` -> ``bench``; ``attnlab`` -> ``""``."""
    parts = module.split(".")
    if parts[0] != "attnlab":
        return "?"
    if len(parts) == 1:
        return ""
    top = parts[1]
    return "bench" if top.startswith("bench_") else top


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """True when ``attnlab.a.b`` is a module or package of the source tree."""
    rel = Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").exists() or (PKG.parent / rel / "__init__.py").exists()


def _resolve_from(node: ast.ImportFrom, module: str, is_pkg: bool) -> str | None:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _sources() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(tree: ast.AST, module: str, is_pkg: bool):
    """(line, imported module, imported names or None) for every import in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, None, a.asname
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_from(node, module, is_pkg)
            if target:
                yield node.lineno, target, [(a.name, a.asname) for a in node.names], None


def _layer_violations(path: Path) -> list[str]:
    module = _module_name(path)
    here = _top(module)
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PKG)
    out = []
    if here not in LEVELS and here != "":
        return [f"attnlab/{rel}:1: package {here!r} has no level: add it to LEVELS in tests/test_layering.py"]
    for line, target, names, _ in _imports(tree, module, path.name == "__init__.py"):
        if _top(target) == "?":
            continue
        targets = [target]
        if names and target == "attnlab":  # from attnlab import mixers -> attnlab.mixers
            targets = [f"attnlab.{n}" if _is_module(f"attnlab.{n}") else "attnlab" for n, _ in names]
        for t in targets:
            there = _top(t)
            if there == here:
                continue
            level = ROOT_LEVEL if there == "" else LEVELS.get(there)
            if level is None:
                out.append(f"attnlab/{rel}:{line}: imports {t}, whose package {there!r} has no level in LEVELS")
            elif here == "tasks" and there not in TASK_IMPORTS:
                out.append(f"attnlab/{rel}:{line}: tasks may import only {sorted(TASK_IMPORTS)}, imports {t}")
            elif here == "":
                if level > ROOT_LEVEL:
                    out.append(f"attnlab/{rel}:{line}: the package root may re-export ops only, imports {t}")
            elif level > LEVELS[here]:
                out.append(f"attnlab/{rel}:{line}: {here} (level {LEVELS[here]}) imports {t} ({there}, level {level})")
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name != "_"


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _private_violations(path: Path) -> list[str]:
    module = _module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PKG)
    out = []
    aliases: dict[str, str] = {}  # local name -> attnlab module it names
    for line, target, names, asname in _imports(tree, module, path.name == "__init__.py"):
        if _top(target) == "?":
            continue
        if names is None:
            if asname:
                aliases[asname] = target
            else:
                aliases.setdefault("attnlab", "attnlab")
            continue
        for n, alias in names:
            full = f"{target}.{n}"
            if _is_module(full):
                aliases[alias or n] = full
            elif _private(n) and target != module:
                out.append(f"attnlab/{rel}:{line}: imports the private name {full}")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        base = _dotted(node.value)
        if base is None:
            continue
        head, _, rest = base.partition(".")
        if head not in aliases:
            continue
        owner = aliases[head] + (f".{rest}" if rest else "")
        if _is_module(owner) and owner != module:
            out.append(f"attnlab/{rel}:{node.lineno}: uses the private name {owner}.{node.attr}")
    return out


def test_every_source_file_is_checked():
    files = _sources()
    assert len(files) > 50 and any(p.name == "cli.py" for p in files)


def test_imports_follow_the_layering():
    violations = [v for p in _sources() for v in _layer_violations(p)]
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_no_private_name_crosses_a_module():
    violations = [v for p in _sources() for v in _private_violations(p)]
    assert not violations, "private names used across modules:\n" + "\n".join(violations)


@pytest.mark.parametrize("src, expected", [
    ("from attnlab.models import ViT\n", "ops (level 1) imports attnlab.models"),
    ("from attnlab import mixers\n", "ops (level 1) imports attnlab.mixers"),
    ("import attnlab.layers.block\n", "ops (level 1) imports attnlab.layers.block"),
    ("def f():\n    from attnlab.compare import run_compare\n", "imports attnlab.compare"),
])
def test_an_upward_import_is_reported_with_file_and_line(tmp_path, monkeypatch, src, expected):
    fake = PKG / "ops" / "attention.py"  # checked as if it were this file
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src if self == fake else _read(self))
    (v,) = _layer_violations(fake)
    assert v.startswith("attnlab/ops/attention.py:") and expected in v


def test_tasks_may_not_import_ops(monkeypatch):
    fake = PKG / "tasks" / "base.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "import attnlab.ops.attention\n" if self == fake
                        else _read(self))
    (v,) = _layer_violations(fake)
    assert v == ("attnlab/tasks/base.py:1: tasks may import only ['papers', 'tasks', 'utils'], "
                 "imports attnlab.ops.attention")


@pytest.mark.parametrize("src, line, name", [
    ("from attnlab.ops.attention import _validate\n", 1, "attnlab.ops.attention._validate"),
    ("import attnlab.ops.attention as at\nx = 1\ny = at._validate\n", 3, "attnlab.ops.attention._validate"),
    ("from attnlab.ops import attention\nattention._validate(1)\n", 2, "attnlab.ops.attention._validate"),
    ("import attnlab\nattnlab.ops.attention._validate\n", 2, "attnlab.ops.attention._validate"),
])
def test_a_private_name_from_another_module_is_reported(monkeypatch, src, line, name):
    fake = PKG / "mixers" / "softmax.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src if self == fake else _read(self))
    (v,) = _private_violations(fake)
    assert v.startswith(f"attnlab/mixers/softmax.py:{line}:") and name in v


def test_own_private_names_and_dunders_are_fine(monkeypatch):
    fake = PKG / "ops" / "attention.py"
    src = "import attnlab.ops.attention as me\nme._validate\nfrom attnlab import __version__\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: src if self == fake else _read(self))
    assert _private_violations(fake) == []


_ORIGINAL_READ = Path.read_text


def _read(path: Path) -> str:
    return _ORIGINAL_READ(path)


@pytest.mark.parametrize("area", ["ops", "layers", "mixers", "models"])
def test_every_module_has_its_test_file(area):
    """tests/<area>/ mirrors attnlab/<area>/ one to one: test_<module>.py per module (the mixers' base and
    registry included; their registry-wide contract tests live in test_contract.py)."""
    modules = sorted(p.stem for p in (PKG / area).glob("*.py") if p.stem != "__init__")
    tests = PKG.parent / "tests" / area
    missing = [f"tests/{area}/test_{m}.py" for m in modules if not (tests / f"test_{m}.py").exists()]
    assert not missing, f"attnlab/{area}/ modules without their test file: {missing}"
