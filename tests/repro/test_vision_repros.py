"""The six vision reproductions in quick mode, and the shared routine behind them.

Each quick run trains tiny arms for a few steps (seconds); the test checks the
outcome is well formed and that the verdict is the one the module's stated rule
gives on the measured figures (so a verdict can never be hard-coded).
"""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import REPROS, run_repro
from attnlab.repro._vision_common import SubsetTask, count_params, vit_matched
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, VERDICTS
from attnlab.tasks.base import Batch, Task, TaskSpec

VISION = ["spectformer", "activator", "convit", "crossvit", "tnt", "shvit", "path_ensemble", "hyena_nd"]


def _band(points: float, band: float = 0.5) -> str:
    return HOLDS if points > band else DOES_NOT_HOLD if points < -band else INCONCLUSIVE


def _expected_verdict(slug: str, m: dict) -> str:
    """Re-derive each module's verdict from its measured figures (the rules in the module docstrings)."""
    if not m["shapes learned"]:  # every arm at chance: comparing them measures noise
        return INCONCLUSIVE
    if slug == "spectformer":
        return _band(m["shapes: SSAA - max(AAAA, SSSS) (points)"])
    if slug == "crossvit":
        return _band(m["shapes: crossvit - best ViT (points)"])
    if slug == "tnt":
        return _band(m["shapes: tnt - ViT-p8 (points)"])
    if slug == "activator":
        vit = m["shapes/ViT accuracy"]
        ok = (m["shapes/activator accuracy"] >= vit - 0.03 and m["shapes/only_glu accuracy"] >= vit - 0.03
              and m["shapes: activator speed / ViT speed"] >= 1.0)
        return HOLDS if ok else DOES_NOT_HOLD
    if slug == "shvit":
        ok = (m["shapes: shvit speed / ViT speed"] >= 1.2
              and m["shapes/shvit accuracy"] >= m["shapes/ViT accuracy"] - 0.01)
        return HOLDS if ok else DOES_NOT_HOLD
    if slug == "convit":
        small, full = m["shapes gap small (points)"], m["shapes gap full (points)"]
        return HOLDS if small >= 2.0 and small > full else DOES_NOT_HOLD if small <= 0 else INCONCLUSIVE
    if slug == "path_ensemble":
        posthoc, gain = m["shapes: post-hoc pruning gain, test (points)"], m["shapes: best(escale, pruned) - ViT (points)"]
        if posthoc >= 0.5 and gain >= 0.5:
            return HOLDS
        return DOES_NOT_HOLD if gain <= -0.5 or (posthoc < 0.5 and gain < 0.5) else INCONCLUSIVE
    if slug == "hyena_nd":
        small, full = m["shapes: hybrid - ViT, small (points)"], m["shapes: hybrid - ViT, full (points)"]
        return HOLDS if small >= 0.5 and full >= -0.5 else DOES_NOT_HOLD if small <= -0.5 else INCONCLUSIVE
    raise KeyError(slug)


@pytest.mark.parametrize("slug", VISION)
def test_quick_repro_runs_and_follows_its_rule(slug, tmp_path):
    assert slug in REPROS
    res = run_repro(slug, quick=True, out_dir=tmp_path, progress=False)
    assert res.verdict in VERDICTS
    accs = {k: v for k, v in res.measured.items() if k.endswith(" accuracy")}
    assert accs and all(0.0 <= v <= 1.0 for v in accs.values())
    params = {k: v for k, v in res.measured.items() if k.endswith(" params")}
    assert params and all(v > 0 for v in params.values())
    assert res.verdict == _expected_verdict(slug, res.measured)
    assert (tmp_path / "result.json").exists() and (tmp_path / "report.md").exists()
    if slug == "path_ensemble":
        # The prune set is exactly the paths whose removal raised val accuracy in the ablation.
        helps = [k.split("without ")[1].split(" (")[0] for k, v in res.measured.items()
                 if k.startswith("shapes: val change without") and v > 0]
        listed = res.measured["shapes: paths whose removal helps (val)"]
        assert listed == (", ".join(helps) or "none")
        assert res.measured["shapes/pruned params"] == res.measured["shapes/ViT params"]


class _Counting(Task):
    """Batch i carries its own index as the target, so cycling is visible."""

    name = "counting"

    @property
    def spec(self):
        return TaskSpec(input="image", output="class", img_size=(4, 4), in_chans=1, num_classes=100)

    def batch(self, split, index, batch_size):
        return Batch(torch.zeros(batch_size, 1, 4, 4), torch.full((batch_size,), index))

    def loss(self, outputs, batch):
        return outputs.sum(), {"accuracy": 0.0}


def test_subset_task_cycles_only_the_training_split():
    t = SubsetTask(_Counting(), 3)
    assert [int(t.batch("train", i, 2).targets[0]) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert int(t.batch("val", 5, 2).targets[0]) == 5
    with pytest.raises(ValueError, match="num_batches: expected a positive int"):
        SubsetTask(_Counting(), 0)


def test_vit_matched_lands_near_the_target():
    target = 150_000
    vit = vit_matched(target, 32, 3, 10)
    assert abs(count_params(vit) - target) / target < 0.1
