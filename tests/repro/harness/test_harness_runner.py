"""The runner: module checks, the verdict from the module's rule, result files, quick-run wording, threads, timing."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch

import attnlab.repro as repro
from attnlab.repro.harness.plots import pyplot
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, QUICK_NOTE
from attnlab.repro.harness.runner import ReproOutcome, format_value, load_module, load_result, run_repro

MIN_SQUARE = "min square"


@pytest.fixture
def fake_repro(monkeypatch):
    mod = types.ModuleType("attnlab_fake_repro")
    mod.PAPER, mod.CLAIM = "P00", "x squared is non-negative"
    mod.QUICK, mod.FULL = {"xs": [-2.0, 0.5, 3.0]}, {"xs": [-5.0, 1.0]}
    mod.FIGURES = (MIN_SQUARE,)
    mod.judge = lambda f: HOLDS if f[MIN_SQUARE] >= 0 else DOES_NOT_HOLD
    seen = {}

    def run(ctx):
        seen["threads"], seen["budget"] = torch.get_num_threads(), ctx.budget
        squares = [x * x for x in ctx.budget["xs"]]
        fig, ax = pyplot().subplots()
        ax.plot(ctx.budget["xs"], squares)
        ctx.save_plot(fig, "squares.png")
        return ReproOutcome({MIN_SQUARE: min(squares), "n": len(squares)}, "squares measured",
                            per_seed={MIN_SQUARE: [min(squares)]})

    mod.run, mod.seen = run, seen
    monkeypatch.setitem(sys.modules, "attnlab_fake_repro", mod)
    monkeypatch.setitem(repro.REPROS, "fake", "attnlab_fake_repro")
    return mod


def test_quick_run_writes_result_and_report(fake_repro, tmp_path):
    r = run_repro("fake", quick=True, out_dir=tmp_path, threads=1)
    assert fake_repro.seen == {"threads": 1, "budget": fake_repro.QUICK}
    assert r.verdict == HOLDS and r.figures == {MIN_SQUARE: 0.25} and r.measured == {MIN_SQUARE: 0.25, "n": 3}
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["claim"] == fake_repro.CLAIM and saved["quick"] is True and saved["budget"] == fake_repro.QUICK
    assert saved["per_seed"] == {MIN_SQUARE: [0.25]} and saved["threads"] == 1 and saved["cpu_seconds"] >= 0
    assert load_result(tmp_path) == r
    report = (tmp_path / "report.md").read_text()
    assert f"Verdict: holds ({QUICK_NOTE})." in report and "| min square | 0.25 |" in report and "| n | 3 |" in report
    assert report.index("figure the rule reads") < report.index("| min square") < report.index("| measured |")
    assert (tmp_path / "squares.png").stat().st_size > 1000 and r.plots == [str(tmp_path / "squares.png")]
    assert r.verdict_line == f"holds ({QUICK_NOTE})"


def test_full_run_uses_the_full_budget_and_states_no_quick_note(fake_repro, tmp_path):
    r = run_repro("fake", out_dir=tmp_path)
    assert fake_repro.seen["budget"] == fake_repro.FULL and r.measured["n"] == 2
    assert r.verdict_line == HOLDS and QUICK_NOTE not in (tmp_path / "report.md").read_text()


def test_the_rule_decides_not_the_module(fake_repro, tmp_path, monkeypatch):
    monkeypatch.setattr(fake_repro, "judge", lambda f: DOES_NOT_HOLD)
    assert run_repro("fake", quick=True, out_dir=tmp_path).verdict == DOES_NOT_HOLD
    monkeypatch.setattr(fake_repro, "judge", lambda f: "probably")
    with pytest.raises(ValueError, match="judge: expected one of"):
        run_repro("fake", quick=True, out_dir=tmp_path)


def test_threads_are_pinned_for_the_run_and_restored(fake_repro, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_repro("fake", quick=True, out_dir=tmp_path, threads=1)
        assert fake_repro.seen["threads"] == 1 and torch.get_num_threads() == 2
        run_repro("fake", quick=True, out_dir=tmp_path, threads=0)  # 0: torch's own setting
        assert fake_repro.seen["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_missing_figures_and_members_are_named(fake_repro, tmp_path, monkeypatch):
    monkeypatch.setattr(fake_repro, "FIGURES", (MIN_SQUARE, "max square"))
    with pytest.raises(KeyError, match=r"missing \['max square'\]"):
        run_repro("fake", quick=True, out_dir=tmp_path)
    monkeypatch.delattr(fake_repro, "judge")
    with pytest.raises(TypeError, match=r"missing \['judge'\]"):
        load_module("fake")
    monkeypatch.setattr(fake_repro, "judge", lambda f: HOLDS, raising=False)
    monkeypatch.setattr(fake_repro, "run", lambda ctx: {"x": 1})
    with pytest.raises(TypeError, match="expected a ReproOutcome, received dict"):
        run_repro("fake", quick=True, out_dir=tmp_path)


def test_unknown_slug_lists_the_known_ones(fake_repro):
    with pytest.raises(KeyError, match=r"slug: expected one of .*did you mean fake"):
        run_repro("fakee")


@pytest.mark.parametrize("value, text", [(0.123456, "0.1235"), (float("nan"), "nan"), ([1, 2.5], "[1, 2.5]"),
                                         ({"a": 1}, '{"a": 1}'), (True, "True"), ("x", "x")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_every_registered_module_defines_what_the_runner_needs():
    for slug in repro.REPROS:
        mod = load_module(slug)
        assert mod.PAPER.startswith("P") and len(mod.CLAIM) > 20, slug
        assert mod.FIGURES and len(set(mod.FIGURES)) == len(mod.FIGURES), slug
        assert "Rule" in mod.__doc__ or "rule" in mod.__doc__, slug


def test_intervals_protocol_and_arms_at_chance_reach_the_files(fake_repro, tmp_path, monkeypatch):
    from attnlab.repro.harness.intervals import Interval, t_interval
    from attnlab.repro.harness.protocol import AT_CHANCE, NOT_LEARNED, Chance, Protocol, Trial, fair_arms

    def trial(arm, lr, seed, steps, split):
        # a: at chance in its sweep (val) but not on its seeds, so its sweep was blind
        metric = 0.1 if arm.name == "b" else (0.12 if split == "val" else 0.9)
        return Trial(lr=lr, seed=seed, steps=steps, split=split, val_loss=lr, metric=metric)

    def run(ctx):
        f = fair_arms([repro.harness.arms.Arm("a", None), repro.harness.arms.Arm("b", None)], trial,
                      Protocol((1e-3, 1e-2), seeds=(0, 1, 2)), steps=4, name="toy", metric="accuracy",
                      chance=Chance(0.1, 0.05))
        return ReproOutcome({MIN_SQUARE: f.difference("a", "b"), AT_CHANCE: f.at_chance, "other": t_interval([1, 2])},
                            "measured", protocol=[f.record()])

    monkeypatch.setattr(fake_repro, "run", run)
    monkeypatch.setattr(fake_repro, "FIGURES", (MIN_SQUARE, AT_CHANCE))
    monkeypatch.setattr(fake_repro, "judge", lambda f: HOLDS if f[MIN_SQUARE].low > 0.5 else DOES_NOT_HOLD)
    r = run_repro("fake", out_dir=tmp_path)
    assert r.verdict == HOLDS and r.headline == MIN_SQUARE and len(r.load) == 2
    assert r.verdict_line == f"holds; b {NOT_LEARNED}" and r.not_learned == ["b"]
    assert (tmp_path / "lr_sweeps.png").stat().st_size > 5000 and str(tmp_path / "lr_sweeps.png") in r.plots
    saved = load_result(tmp_path)
    assert isinstance(saved.figures[MIN_SQUARE], Interval) and saved.figures[MIN_SQUARE] == r.figures[MIN_SQUARE]
    assert isinstance(saved.measured["other"], Interval) and saved.protocol[0]["chosen"] == {"a": 1e-3, "b": 1e-3}
    assert fake_repro.judge(saved.figures) == r.verdict
    report = (tmp_path / "report.md").read_text()
    assert f"**Verdict: holds; b {NOT_LEARNED}.**" in report and "| min square | 0.8 [0.8, 0.8] (n=3) |" in report
    assert "**Protocol: toy.**" in report and "At chance at every lr tried: b." in report
    assert "but not on every seed, so the lr was chosen by validation loss alone: a." in report
    monkeypatch.setattr(fake_repro, "HEADLINE", "nope", raising=False)
    with pytest.raises(KeyError, match="HEADLINE: expected one of its FIGURES"):
        run_repro("fake", out_dir=tmp_path)


def test_verdict_line_of_several_comparisons(fake_repro, tmp_path):
    from attnlab.repro.harness.protocol import AT_CHANCE, NOT_LEARNED

    r = run_repro("fake", quick=True, out_dir=tmp_path)
    r.figures = {f"{AT_CHANCE}: full": ["x"], f"{AT_CHANCE}: small": ["x", "y"], "other": 1.0}
    assert r.not_learned == ["x (full)", "x (small)", "y (small)"]
    assert r.verdict_line == f"holds; x (full), x (small), y (small) {NOT_LEARNED} ({QUICK_NOTE})"


def test_the_placement_of_the_trials_is_recorded_and_an_older_result_loads(fake_repro, tmp_path):
    serial = run_repro("fake", quick=True, out_dir=tmp_path / "serial")
    pooled = run_repro("fake", quick=True, out_dir=tmp_path / "pooled", workers=2)  # no trials: no pool starts
    assert serial.placement == {} and pooled.figures == serial.figures and pooled.verdict == serial.verdict
    assert pooled.placement == {"executor": "local", "workers": 2, "address": None, "threads_per_trial": 1,
                                "trials_in_workers": 0, "worker_cpu_seconds": 0.0}
    assert "trials on 2 local worker(s)." in (tmp_path / "pooled" / "report.md").read_text()
    data = json.loads((tmp_path / "serial" / "result.json").read_text())
    del data["placement"]  # a result.json written before issue 15's fan-out
    (tmp_path / "serial" / "result.json").write_text(json.dumps(data))
    assert load_result(tmp_path / "serial") == serial
    with pytest.raises(ValueError, match="workers: expected an int >= 1"):
        run_repro("fake", quick=True, out_dir=tmp_path / "bad", workers=0)
