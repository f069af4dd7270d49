"""The drop study (P17): perplexity after k drops in score order, single-module loss increases, the plot."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.analysis.drop_study import drop_curve, plot_drop_study, single_drop_nll
from attnlab.analysis.lm_eval import next_token_nll, perplexity
from attnlab.analysis.module_drop import DropPlan, drop_modules
from attnlab.analysis.redundancy import choose_drops, redundancy_scores
from attnlab.models import SequenceModel


@pytest.fixture
def setting():
    torch.manual_seed(1)
    model = SequenceModel(vocab_size=20, dim=16, depth=4, num_heads=2).eval()
    calib = [torch.randint(0, 20, (2, 12)) for _ in range(2)]
    evals = [torch.randint(0, 20, (2, 12)) for _ in range(2)]
    return model, redundancy_scores(model, calib, consecutive=True), evals


@pytest.mark.parametrize("target", ["attn", "mlp", "block", "joint", "consecutive"])
def test_drop_curve_applies_each_plan_and_restores(setting, target):
    model, scores, evals = setting
    base = perplexity(model, evals)
    curve = drop_curve(model, scores, 3, target, evals)
    assert [s.k for s in curve] == [0, 1, 2, 3] and curve[0].perplexity == pytest.approx(base, rel=1e-12)
    for step in curve:
        assert step.plan == choose_drops(scores, step.k, target)
        with drop_modules(model, step.plan):
            assert perplexity(model, evals) == pytest.approx(step.perplexity, rel=1e-12)
    assert perplexity(model, evals) == pytest.approx(base, rel=1e-12)  # restored
    with pytest.raises(ValueError, match="n: expected 0 <= n <= 4"):
        drop_curve(model, scores, 5, "attn", evals)


def test_single_drop_losses(setting):
    model, _, evals = setting
    out = single_drop_nll(model, evals, depth=4)
    base = next_token_nll(model, evals)[0]
    assert out["base"] == [pytest.approx(base)] and len(out["attn"]) == len(out["mlp"]) == 4
    with drop_modules(model, DropPlan(mlp=(2,))):
        assert out["mlp"][2] == pytest.approx(next_token_nll(model, evals)[0] - base, abs=1e-12)


def test_plot_is_written(setting, tmp_path):
    model, scores, evals = setting
    curve = drop_curve(model, scores, 2, "attn", evals)
    scores.attn[1] = math.nan  # a dropped module's bar is simply missing
    path = plot_drop_study(scores, curve, "attn", tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 10_000 and path.endswith("d.png")
