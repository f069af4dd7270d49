"""Loading one file of an optional peer library whose package ``__init__`` cannot be imported here.

fla's package imports Triton at import time, which has no CPU build; its pure-torch reference
files (e.g. ``ops/delta_rule/naive.py``) import only torch, so the tests (as an oracle) and the
benchmarks (as a peer) load those files directly by path.
"""
from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

__all__ = ["load_peer_file", "load_fla_delta_rule_naive"]


def load_peer_file(package: str, *relpath: str) -> ModuleType | None:
    """Execute ``<package dir>/<relpath...>`` as a module without importing ``package``; None if absent.

    Args:
        package: top-level package name, e.g. ``"fla"``.
        relpath: path parts inside the package, e.g. ``("ops", "delta_rule", "naive.py")``.
    Returns:
        The loaded module, or None when the package or the file is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*relpath)
    if not path.is_file():
        return None
    name = "_peer_" + "_".join([package, *relpath]).replace(".py", "").replace(".", "_")
    mod_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def load_fla_delta_rule_naive() -> ModuleType | None:
    """fla's pure-torch delta-rule reference (``delta_rule_recurrence``, ``delta_rule_chunkwise``); None if absent."""
    return load_peer_file("fla", "ops", "delta_rule", "naive.py")
