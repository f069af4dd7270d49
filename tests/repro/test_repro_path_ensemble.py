"""Repro path_ensemble (P31): the rule on hand-written figures; the prune set of the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import path_ensemble as pe
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.vision import SHAPES_LEARNED


@pytest.mark.parametrize("posthoc, gain, learned, verdict", [
    (0.5, 0.5, True, HOLDS), (3.0, 2.0, True, HOLDS),
    (0.49, 0.5, True, INCONCLUSIVE), (0.5, 0.49, True, INCONCLUSIVE),   # one finding of two
    (0.49, 0.49, True, DOES_NOT_HOLD), (5.0, -0.5, True, DOES_NOT_HOLD), (5.0, -0.49, True, INCONCLUSIVE),
    (3.0, 2.0, False, INCONCLUSIVE),
])
def test_rule(posthoc, gain, learned, verdict):
    assert pe.judge({pe.POSTHOC: posthoc, pe.GAIN: gain, SHAPES_LEARNED: learned}) == verdict


def test_quick_run_prunes_exactly_the_paths_whose_removal_helped(quick_run):
    m = quick_run("path_ensemble").measured
    helps = [k.split("without ")[1].split(" (")[0] for k, v in m.items()
             if k.startswith("shapes: val change without") and v > 0]
    assert m["shapes: paths whose removal helps (val)"] == (", ".join(helps) or "none")
    assert m["shapes/pruned params"] == m["shapes/ViT params"]
    best = max(m["shapes/escale accuracy"], m["shapes/pruned accuracy"])
    assert m[pe.GAIN] == pytest.approx(100 * (best - m["shapes/ViT accuracy"]))
