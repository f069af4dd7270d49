"""The vision side of the harness: small-data tasks, matched ViTs, the table the rules read, the learned guard."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.repro import crossvit, spectformer, tnt
from attnlab.repro.harness.arms import Arm, count_params
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproContext
from attnlab.repro.harness.vision import (
    SHAPES_LEARNED, Budget, SubsetTask, VisionTable, design_arms, image_kwargs, make_task, train_vision_arms,
    vision_outcome, vit_matched,
)
from attnlab.tasks.base import Batch, Task, TaskSpec


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
    spec = make_task("digits").spec
    for target in (40_000, 150_000):
        vit = vit_matched(target, spec)
        assert abs(count_params(vit) - target) / target < 0.1
    assert image_kwargs(spec) == {"img_size": spec.img_size[0], "in_chans": spec.in_chans, "num_classes": 10}


def test_design_arms_match_every_vit_to_the_design():
    from attnlab.models import ViT

    spec = make_task("digits").spec
    design = lambda s: ViT(**image_kwargs(s), patch_size=4, dim=48, depth=2, num_heads=4)  # noqa: E731
    arms = design_arms("design", design, patches=(4, 8), depth=2)
    assert [a.name for a in arms] == ["design", "ViT-p4", "ViT-p8"]
    target = count_params(design(spec))
    for arm in arms[1:]:
        assert abs(count_params(arm.build(spec)) - target) / target < 0.05


def _table(shapes: dict[str, float]) -> VisionTable:
    table = VisionTable(num_classes={"shapes": 8})
    table.summary["shapes"] = {a: dict(accuracy=acc, accuracy_std=0.0, params=10, images_per_s=100.0 * (i + 1))
                               for i, (a, acc) in enumerate(shapes.items())}
    table.rows = [dict(arm=a, task="shapes", seed=0, accuracy=acc) for a, acc in shapes.items()]
    return table


def test_not_learned_is_decided_at_chance_plus_the_margin():
    assert _table({"a": 0.125, "b": 0.174}).not_learned("shapes").startswith("shapes was not learned")
    assert _table({"a": 0.125, "b": 0.176}).not_learned("shapes") is None  # chance 12.5 % + 5 points


def test_table_views():
    t = _table({"a": 0.5, "b": 0.25})
    assert t.accuracy("a") == 0.5 and t.speed_ratio("b", "a") == 2.0
    assert t.flat("full/")["full/shapes/b accuracy"] == 0.25
    assert t.per_seed() == {"shapes/a accuracy": [0.5], "shapes/b accuracy": [0.25]}
    t.add(_table({"c": 0.75}))
    assert t.accuracy("c") == 0.75 and len(t.rows) == 3
    assert "| shapes | c | 75.0 +- 0.0 | 0 k | 100 |" in t.markdown()


def test_vision_outcome_records_the_guard_and_says_why(tmp_path):
    ctx = ReproContext(quick=True, out_dir=tmp_path)
    judge = lambda f: HOLDS  # noqa: E731
    out = vision_outcome(ctx, {"": _table({"a": 0.13, "b": 0.12})}, {"margin": 1.0}, "Summary.", judge=judge,
                         plots={"": ("bars.png", "title")})
    assert out.measured[SHAPES_LEARNED] is False and out.measured["margin"] == 1.0
    assert out.summary.startswith("Inconclusive: shapes was not learned")
    assert "had it been learned: holds" in out.summary
    assert ctx.plots == [str(tmp_path / "bars.png")] and out.per_seed == {"shapes/a accuracy": [0.13],
                                                                          "shapes/b accuracy": [0.12]}
    out = vision_outcome(ctx, {"": _table({"a": 0.5})}, {}, "Summary.", judge=judge, plots={})
    assert out.measured[SHAPES_LEARNED] is True and out.summary.startswith("Summary.")


@pytest.mark.parametrize("module", [crossvit, tnt, spectformer])
@pytest.mark.parametrize("margin, learned, verdict", [
    (2.0, True, HOLDS), (0.51, True, HOLDS), (0.5, True, INCONCLUSIVE), (0.0, True, INCONCLUSIVE),
    (-0.5, True, INCONCLUSIVE), (-0.51, True, DOES_NOT_HOLD), (-20.0, True, DOES_NOT_HOLD),
    (math.nan, True, INCONCLUSIVE), (5.0, False, INCONCLUSIVE), (-5.0, False, INCONCLUSIVE),
])
def test_rule_of_each_margin_study(module, margin, learned, verdict):
    assert module.FIGURES == (module.MARGIN, SHAPES_LEARNED)
    assert module.judge({module.MARGIN: margin, SHAPES_LEARNED: learned}) == verdict


def test_train_vision_arms_trains_every_arm_and_seed_from_its_seed():
    from attnlab.models import ViT

    budget = Budget(steps=2, batch_size=4, eval_batches=1, eval_batch_size=8, seeds=(0, 1), tasks=("digits",),
                    bench_repeats=1)
    build = lambda spec: ViT(**image_kwargs(spec), patch_size=8, dim=8, depth=1, num_heads=2)  # noqa: E731
    t = train_vision_arms([Arm("x", build), Arm("y", build)], budget, keep_models=True)
    rows = [(r["arm"], r["seed"]) for r in t.rows]
    assert rows == [("x", 0), ("x", 1), ("y", 0), ("y", 1)]
    # the same build and seed give the same model: the arms are trained identically
    assert t.per_seed()["digits/x accuracy"] == t.per_seed()["digits/y accuracy"]
    for a, b in zip(t.models["digits"]["x"], t.models["digits"]["y"]):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert t.summary["digits"]["x"]["images_per_s"] > 0
    shifted = train_vision_arms([Arm("x", build)], budget, measure_speed=False, seed_offset=1)
    assert [r["seed"] for r in shifted.rows] == [1, 2] and shifted.rows[0]["accuracy"] == t.rows[1]["accuracy"]
