"""Every registered reproduction's quick mode, end to end, and its verdict re-derived by its own rule.

The verdict stored in result.json must be what the module's ``judge`` gives for the figures stored
beside it (read back from the file), the figures must be the ones the module names, and the quick run
must say it is a smoke test. The slowest quick modes are marked slow to keep the default run
short; ``pytest -m slow tests/repro`` runs them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from attnlab.repro import REPROS, VERDICTS, load_result
from attnlab.repro.harness.rules import QUICK_NOTE
from attnlab.repro.harness.runner import load_module

#: the longest quick modes (5-10 s each in process at load 2; unified_long_sequence starts gloo ranks, 10-40 s;
#: the others take 1-6 s): -m slow
SLOW = {"instability_proxies", "deltanet", "icl_regression", "unified_long_sequence"}


def _params():
    return [pytest.param(slug, marks=pytest.mark.slow) if slug in SLOW else slug for slug in REPROS]


@pytest.mark.parametrize("slug", _params())
def test_quick_run_follows_its_rule(slug, quick_run):
    threads = torch.get_num_threads()
    result = quick_run(slug)
    mod = load_module(slug)
    out = Path(result.plots[0]).parent if result.plots else None
    assert out is not None and all(Path(p).stat().st_size > 5_000 for p in result.plots)
    saved = load_result(out)
    assert saved.verdict in VERDICTS and saved.quick and saved.slug == slug and saved.paper == mod.PAPER
    assert list(saved.figures) == list(mod.FIGURES)
    assert all(saved.measured[k] == v or (isinstance(v, float) and math.isnan(v)) for k, v in saved.figures.items())
    assert all(isinstance(v, (bool, int, float)) for v in saved.figures.values())
    assert saved.verdict == mod.judge(saved.figures) == result.verdict
    report = (out / "report.md").read_text()
    assert QUICK_NOTE in report and f"**Verdict: {result.verdict} ({QUICK_NOTE}).**" in report
    assert json.loads((out / "result.json").read_text())["budget"] is not None
    assert 0 < saved.seconds < 60 and saved.cpu_seconds > 0 and saved.threads == 1
    assert torch.get_num_threads() == threads  # the run's thread pinning is undone


def test_slow_names_are_registered():
    assert SLOW <= set(REPROS)
