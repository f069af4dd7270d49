"""Repro sea (P20): the rule on hand-written figures (each outcome, with and without distillation); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import sea
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS


def _f(arm="sea+distill", kl=0.2, overlap=0.8, bpc=2.05, lin_kl=1.0, lin_overlap=0.3, lin_bpc=2.6, teacher=2.0):
    return {sea.KL.format(arm): kl, sea.OVERLAP.format(arm): overlap, sea.TUNED_BPC.format(arm): bpc,
            sea.KL.format("linear_attention"): lin_kl, sea.OVERLAP.format("linear_attention"): lin_overlap,
            sea.TUNED_BPC.format("linear_attention"): lin_bpc, sea.TEACHER_BPC: teacher}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(bpc=2.7), INCONCLUSIVE),                          # (A) but not (B)
    (_f(kl=1.2, overlap=0.2, bpc=2.7), DOES_NOT_HOLD),
    (_f(kl=1.2, overlap=0.2), INCONCLUSIVE),              # (B) but not (A)
    (_f(kl=1.0), INCONCLUSIVE), (_f(overlap=0.3), INCONCLUSIVE),  # (A) needs both parts, strictly
    (_f(bpc=2.6), INCONCLUSIVE),                          # (B) strictly closer
    (_f(bpc=1.8, lin_bpc=2.1), HOLDS),                    # a student below the teacher is not "further away"
])
def test_rule(figures, verdict):
    assert sea.judge(figures) == verdict


def test_rule_without_distillation_reads_the_other_arm():
    f = _f() | _f(arm="sea", kl=1.5, overlap=0.6, bpc=2.2)
    assert sea.judge(f) == HOLDS and sea.judge(f, arm="sea") == INCONCLUSIVE
    assert set(sea.FIGURES) == set(_f())  # the verdict reads SEA as the paper trains it, with distillation


def test_quick_run(quick_run):
    m = quick_run("sea").measured
    assert set(m["bpc_finetuned"]) == {"sea", "sea+distill", "linear_attention"}
    sim = m["similarity_to_teacher"]
    for label in sea.STUDENTS:
        assert math.isfinite(sim[label]["kl"]) and sim[label]["kl"] >= 0 and 0.0 <= sim[label]["topk_overlap"] <= 1.0
        assert m[sea.KL.format(label)] == pytest.approx(sim[label]["kl"], abs=1e-4)
    assert 0.0 < sim["sea"]["mass_recall"] <= 1.0 and "mass_recall" not in sim["linear_attention"]
    assert m["judged_without_distillation"]["verdict"] in VERDICTS
