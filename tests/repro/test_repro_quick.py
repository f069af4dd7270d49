"""Every registered reproduction's quick mode, end to end (run by the campaign runner, as ``attnlab repro --all
--quick`` does), and its verdict re-derived by its own rule from what ``result.json`` holds.

The verdict stored in result.json must be what the module's ``judge`` gives for the figures stored beside it
(read back from the file, intervals revived), the figures must be the ones the module names, every comparison
must have gone through the protocol (an LR per arm, the seeds), and the quick run must say it is a smoke test.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from attnlab.repro import REPROS, VERDICTS, load_result
from attnlab.repro.harness.intervals import Interval
from attnlab.repro.harness.rules import QUICK_NOTE
from attnlab.repro.harness.runner import load_module


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("slug", list(REPROS))
def test_quick_run_follows_its_rule(slug, quick_run):
    result = quick_run(slug)
    mod = load_module(slug)
    out = Path(result.plots[0]).parent
    assert all(Path(p).stat().st_size > 5_000 for p in result.plots)
    saved = load_result(out)
    assert saved.verdict in VERDICTS and saved.quick and saved.slug == slug and saved.paper == mod.PAPER
    assert list(saved.figures) == list(mod.FIGURES) and saved.headline in saved.figures
    assert all(_same(saved.measured[k], v) for k, v in saved.figures.items())
    for key, v in saved.figures.items():
        assert isinstance(v, (bool, int, float, Interval)) or (isinstance(v, list) and all(isinstance(x, str)
                                                                                         for x in v)), key
    assert saved.verdict == mod.judge(saved.figures)
    report = (out / "report.md").read_text()
    assert QUICK_NOTE in report and f"**Verdict: {saved.verdict_line}.**" in report
    assert json.loads((out / "result.json").read_text())["budget"] is not None
    assert 0 < saved.cpu_seconds < 60 and saved.threads == 1
    assert saved.protocol, "every reproduction records its protocol"
    for rec in saved.protocol:
        assert set(rec["chosen"]) == set(rec["test"]) and all(len(v) == len(rec["seeds"]) for v in rec["test"].values())
        assert all(lr in rec["grid"] for lr in rec["chosen"].values()) and len(rec["seeds"]) >= 2
