"""The repro framework: outcome validation, result files, verdict vocabulary, CLI wiring."""
from __future__ import annotations

import json
import sys
import types

import pytest

import attnlab.repro as repro
from attnlab.repro.base import HOLDS, ReproOutcome, run_repro


@pytest.fixture
def fake_repro(monkeypatch):
    mod = types.ModuleType("attnlab_fake_repro")
    mod.PAPER = "P00"
    mod.CLAIM = "x squared is non-negative"

    def run(ctx):
        xs = [-2.0, 0.5, 3.0] if ctx.quick else [-5.0, 1.0]
        squares = [x * x for x in xs]
        path = ctx.path("plot.txt")
        path.write_text("not really a plot")
        verdict = HOLDS if min(squares) >= 0 else "does not hold at this scale"
        return ReproOutcome({"min square": min(squares), "n": len(xs)}, verdict, "squares measured", [str(path)])

    mod.run = run
    monkeypatch.setitem(sys.modules, "attnlab_fake_repro", mod)
    monkeypatch.setitem(repro.REPROS, "fake", "attnlab_fake_repro")
    return mod


def test_run_writes_result_and_report(fake_repro, tmp_path):
    r = run_repro("fake", quick=True, out_dir=tmp_path)
    assert r.verdict == HOLDS and r.measured == {"min square": 0.25, "n": 3}
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["claim"] == fake_repro.CLAIM and saved["quick"] is True
    report = (tmp_path / "report.md").read_text()
    assert "Verdict: holds" in report and "| min square | 0.25 |" in report


def test_outcome_refuses_unknown_verdicts():
    with pytest.raises(ValueError, match="verdict: expected one of"):
        ReproOutcome({}, "probably", "")


def test_unknown_slug_lists_the_known_ones(fake_repro):
    with pytest.raises(KeyError, match=r"slug: expected one of .*did you mean fake"):
        run_repro("fakee")


def test_every_registered_repro_module_declares_paper_and_claim():
    import importlib

    for slug, mod_name in repro.REPROS.items():
        mod = importlib.import_module(mod_name)
        assert mod.PAPER.startswith("P") and len(mod.CLAIM) > 20, slug
        assert callable(mod.run)
