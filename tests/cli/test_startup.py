"""Start-up stays light (issue 17): `attnlab list` and `--help` import none of the heavy optional libraries.

Timing is a benchmark (python -m attnlab.bench.startup, benchmarks/cli.md); this test guards the cause of
the regressions seen so far: a module-level import of scikit-learn, scipy or matplotlib in a registered
task or model made `attnlab list` 1.5 s slower.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sklearn", "scipy", "matplotlib", "transformers", "cvxpy", "ray")

PROBE = """
import contextlib, io, json, sys
import attnlab.cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        attnlab.cli.main({argv!r})
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


@pytest.mark.parametrize("argv", [["list"], ["--help"]])
def test_list_and_help_import_no_heavy_library(argv):
    code = PROBE.format(argv=argv, heavy=list(HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    roots = sorted({m.split(".")[0] for m in loaded})
    assert roots == [], f"attnlab {' '.join(argv)} imported {roots} ({len(loaded)} modules)"
