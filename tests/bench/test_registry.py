"""The case registry names real ops and real tests, and case modules stay inside attnlab.bench."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import attnlab
from attnlab.bench.registry import CASE_MODULES, available_cases, get_case, register_case, validate_sizes

REPO = Path(attnlab.__file__).resolve().parent.parent
PACKAGE = REPO / "attnlab"
CASES = available_cases()


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and walk the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_named_op_imports_and_every_named_test_file_exists(name):
    case = CASES[name]
    assert case.ops and case.tests, f"{name}: a case names the ops it times and the tests that prove them"
    for op in case.ops:
        obj = _resolve(op)
        assert callable(obj), f"{name}: {op} is not a function or class"
        assert f"{obj.__module__}.{obj.__qualname__}" == op, f"{name}: {op} is defined at {obj.__module__}"
    for test in case.tests:
        assert test.startswith("tests/") and (REPO / test).is_file(), f"{name}: no test file {test}"


def test_every_case_module_registers_cases_and_all_are_listed():
    modules = {c.setup.__module__ for c in CASES.values()}
    assert modules == set(CASE_MODULES)
    assert {p.stem for p in PACKAGE.joinpath("bench").glob("*.py")} >= {m.rsplit(".", 1)[1] for m in CASE_MODULES}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return found


def test_nothing_outside_attnlab_bench_imports_a_case_module():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if PACKAGE / "bench" in path.parents:
            continue
        hits = _imported_modules(path) & set(CASE_MODULES)
        offenders += [f"{path.relative_to(REPO)} imports {h}" for h in sorted(hits)]
    assert not offenders, offenders


def test_the_import_scan_sees_the_three_import_forms(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import attnlab.bench.local\nfrom attnlab.bench import sparse\n"
                   "importlib.import_module('attnlab.bench.vision')\n")
    assert _imported_modules(src) >= {"attnlab.bench.local", "attnlab.bench.sparse", "attnlab.bench.vision"}


def test_sizes_are_validated_with_the_argument_named():
    assert validate_sizes(get_case("attention"), [1, 64]) == [1, 64]
    for bad in ([0], [-5], [2.5], [True], [], "64"):
        with pytest.raises(ValueError, match="^--sizes: expected"):
            validate_sizes(get_case("attention"), bad, arg="--sizes")
    with pytest.raises(ValueError, match=r"sizes: expected positive square numbers .* received 1000"):
        validate_sizes(get_case("na2d"), [1024, 1000])


def test_registration_refuses_duplicates_and_unknown_params():
    with pytest.raises(ValueError, match="already registered"):
        register_case("attention", description="", sizes=(1,), reference="x", ops=(), tests=(), tiny=(1, {}))(print)
    with pytest.raises(ValueError, match="params: expected keys among"):
        get_case("attention").setup_params({"window": 3})
    assert "threads" not in get_case("ssa").setup_params({"threads": 2})
