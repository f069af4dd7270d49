"""attnlab.utils.peers: one file of an installed package is loaded by path, without importing the package."""
from __future__ import annotations

import sys

from attnlab.utils.peers import load_peer_file


def test_loads_a_file_of_an_installed_package_by_path():
    mod = load_peer_file("json", "scanner.py")
    assert mod is not None
    assert mod.__name__ == "_peer_json_scanner"
    assert mod.__name__ not in sys.modules  # loaded beside the package, not registered as its submodule
    assert callable(mod.py_make_scanner)


def test_absent_package_or_file_gives_none():
    assert load_peer_file("no_such_package_attnlab", "x.py") is None
    assert load_peer_file("json", "no_such_file.py") is None
    assert load_peer_file("json", "tool.py" + "x") is None
