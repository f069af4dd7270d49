"""Repro sea (P20): the quick mode runs for real (teacher, SEA / SEA+distillation / linear students); the verdict rule."""
from __future__ import annotations

import math

from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS, ReproContext
from attnlab.repro.sea import judge, run


def test_quick_run(tmp_path):
    out = run(ReproContext(quick=True, out_dir=tmp_path, progress=False))
    assert out.verdict in VERDICTS
    m = out.measured
    assert set(m["bpc_finetuned"]) == {"sea", "sea+distill", "linear_attention"}
    assert all(0.0 < v < 8.0 for v in m["bpc_finetuned"].values())
    sim = m["similarity_to_teacher"]
    for label in ("sea", "sea+distill", "linear_attention"):
        assert math.isfinite(sim[label]["kl"]) and sim[label]["kl"] >= 0
        assert 0.0 <= sim[label]["topk_overlap"] <= 1.0
    assert 0.0 < sim["sea"]["mass_recall"] <= 1.0
    assert (tmp_path / "sea_similarity.png").exists()
    assert m["judged_without_distillation"]["verdict"] in VERDICTS


def test_verdict_rule():
    good = {"sea+distill": {"kl": 0.2, "topk_overlap": 0.8}, "linear_attention": {"kl": 1.0, "topk_overlap": 0.3}}
    bad = {"sea+distill": {"kl": 1.2, "topk_overlap": 0.2}, "linear_attention": {"kl": 1.0, "topk_overlap": 0.3}}
    close = {"sea+distill": 2.05, "linear_attention": 2.6}
    far = {"sea+distill": 2.7, "linear_attention": 2.6}
    assert judge(good, close, 2.0)[0] == HOLDS
    assert judge(good, far, 2.0)[0] == INCONCLUSIVE
    assert judge(bad, far, 2.0)[0] == DOES_NOT_HOLD
    assert judge(bad, close, 2.0)[0] == INCONCLUSIVE
    # a student below the teacher is not "further away" than one above it
    assert judge(good, {"sea+distill": 1.8, "linear_attention": 2.1}, 2.0)[3]
    # the undistilled arm is judged by the same rule on request
    plain = {"sea": {"kl": 1.5, "topk_overlap": 0.6}, **good}
    assert judge(plain, {"sea": 2.2, **close}, 2.0, arm="sea")[0] == INCONCLUSIVE
