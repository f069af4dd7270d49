"""Repro path_ensemble (P31): the rule on hand-written intervals; the prune set of the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import path_ensemble as pe
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("posthoc, gain, at_chance, verdict", [
    ((0.6, 3.0), (0.51, 2.0), [], HOLDS),
    ((0.5, 3.0), (0.6, 2.0), [], INCONCLUSIVE), ((0.6, 3.0), (0.5, 2.0), [], INCONCLUSIVE),  # strictly above +0.5
    ((-1.0, 0.49), (0.6, 2.0), [], INCONCLUSIVE),                   # one finding of two
    ((-1.0, 0.49), (-0.4, 0.49), [], DOES_NOT_HOLD),                # neither finding
    ((0.6, 3.0), (-3.0, -0.51), [], DOES_NOT_HOLD),                 # pruning / EnsembleScale made the model worse
    ((0.6, 3.0), (-3.0, -0.5), [], INCONCLUSIVE),
    ((0.6, 3.0), (0.6, 2.0), ["ViT"], INCONCLUSIVE),                # the ViT learned nothing: its paths say nothing
    ((0.6, 3.0), (0.6, 2.0), ["pruned"], HOLDS),
])
def test_rule(iv, posthoc, gain, at_chance, verdict):
    assert pe.judge({pe.POSTHOC: iv(*posthoc), pe.GAIN: iv(*gain), AT_CHANCE: at_chance}) == verdict


def test_quick_run_prunes_exactly_the_paths_whose_removal_helped(quick_run):
    r = quick_run("path_ensemble")
    m = r.measured
    helps = [k.split("without ")[1].split(" (")[0] for k, v in m.items()
             if k.startswith("val change without") and v > 0]
    assert m["paths whose removal helps (val)"] == (", ".join(helps) or "none")
    assert m["shapes/pruned params"] == m["shapes/ViT params"]
    best = m["better of escale and pruned"]
    assert m[pe.GAIN].values == pytest.approx([100 * (x - y) for x, y in zip(r.per_seed[f"shapes/{best} accuracy"],
                                                                             r.per_seed["shapes/ViT accuracy"])])
    assert {rec["name"] for rec in r.protocol} == {"shapes"} and set(r.protocol[0]["chosen"]) == {"ViT", "escale",
                                                                                                  "pruned"}
