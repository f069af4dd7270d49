"""Repro sea (P20): the rule on hand-written intervals (each outcome, with and without distillation); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import sea
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS

BELOW, ABOVE, ACROSS = (-0.5, -0.1), (0.1, 0.5), (-0.1, 0.1)


def _f(iv, arm="sea+distill", kl=BELOW, overlap=ABOVE, bpc=BELOW, at_chance=()):
    return {sea.KL_DIFF.format(arm): iv(*kl), sea.OVERLAP_DIFF.format(arm): iv(*overlap),
            sea.BPC_DIFF.format(arm): iv(*bpc), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"bpc": ABOVE}, INCONCLUSIVE),                               # (A) but not (B)
    ({"kl": ABOVE, "overlap": BELOW, "bpc": ABOVE}, DOES_NOT_HOLD),
    ({"kl": ABOVE}, INCONCLUSIVE),                                # (B) but not (A): A needs both its parts
    ({"overlap": BELOW}, INCONCLUSIVE), ({"kl": ACROSS}, INCONCLUSIVE), ({"bpc": ACROSS}, INCONCLUSIVE),
    ({"kl": (-0.5, 0.0)}, INCONCLUSIVE), ({"kl": (-0.5, -1e-9)}, HOLDS),   # strictly below 0
    ({"at_chance": ["linear_attention"]}, HOLDS), ({"at_chance": ["sea+distill"]}, DOES_NOT_HOLD),
    ({"at_chance": ["sea+distill", "linear_attention"]}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert sea.judge(_f(iv, **kw)) == verdict


def test_rule_without_distillation_reads_the_other_arm(iv):
    f = _f(iv) | _f(iv, arm="sea", kl=ABOVE)
    assert sea.judge(f) == HOLDS and sea.judge(f, arm="sea") == INCONCLUSIVE
    assert set(sea.FIGURES) == set(_f(iv))  # the verdict reads SEA as the paper trains it, with distillation


def test_quick_run(quick_run):
    r = quick_run("sea")
    m = r.measured
    for label in sea.STUDENTS:
        kl, overlap = m[f"kl: {label}"], m[f"topk_overlap: {label}"]
        assert all(math.isfinite(v) and v >= 0 for v in kl.values) and all(0 <= v <= 1 for v in overlap.values)
    assert m[sea.KL_DIFF.format("sea")].values == pytest.approx(
        [a - b for a, b in zip(m["kl: sea"].values, m["kl: linear_attention"].values)])
    assert 0.0 < m["mass_recall: sea"].mean <= 1.0 and "mass_recall: linear_attention" not in m
    assert m["judged_without_distillation"]["verdict"] in VERDICTS
    assert set(r.protocol[0]["chosen"]) == set(sea.STUDENTS) and r.protocol[0]["steps"] == sea.QUICK["finetune_steps"]
