"""The vision side of the harness: small-data tasks, matched ViTs, the table the rules read, the learned guard."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.repro import crossvit, spectformer, tnt
from attnlab.repro.harness.arms import Arm, count_params
from attnlab.repro.harness.intervals import Interval
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, FairArms, Protocol, Trial
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproContext
from attnlab.repro.harness.vision import (
    Budget, SubsetTask, VisionTable, design_arms, image_kwargs, make_task, train_vision_arms, vision_outcome,
    vit_matched,
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


def _table(accs: dict[str, list[float]], speed: dict[str, float] | None = None, task: str = "shapes") -> VisionTable:
    """A table of hand-written test accuracies per seed (fractions), chance 1/8, images/s per arm if given."""
    f = FairArms(task, "accuracy", Protocol((1e-3,), seeds=tuple(range(len(next(iter(accs.values())))))), 10,
                 Chance(0.125, 0.05))
    for arm, vals in accs.items():
        f.lr[arm] = 1e-3
        f.runs[arm] = [Trial(1e-3, s, 10, "test", 1.0, v, measured={"images_per_s": speed[arm]} if speed else {})
                       for s, v in enumerate(vals)]
    return VisionTable(fair={task: f}, params={a: 10 for a in accs})


def test_table_views_read_the_seeds():
    t = _table({"a": [0.5, 0.6, 0.7], "b": [0.25, 0.25, 0.25]}, speed={"a": 100.0, "b": 200.0})
    assert t.accuracy("a").mean == pytest.approx(60.0) and isinstance(t.accuracy("a"), Interval)
    assert t.gap("a", "b").values == pytest.approx((25.0, 35.0, 45.0))
    assert t.speed_ratio("b", "a").mean == pytest.approx(2.0) and t.best(["a", "b"]) == "a"
    flat = t.flat("full/")
    assert flat["full/shapes/b accuracy"].mean == pytest.approx(25.0) and flat["full/shapes/b lr"] == 1e-3
    assert flat["full/shapes/a images_per_s"] == pytest.approx(100.0) and flat["full/shapes/a params"] == 10
    assert t.per_seed() == {"shapes/a accuracy": [0.5, 0.6, 0.7], "shapes/b accuracy": [0.25, 0.25, 0.25]}
    t.add(_table({"c": [0.75, 0.75, 0.75]}))
    assert t.accuracy("c").mean == pytest.approx(75.0) and t.fair["shapes"].arms == ["a", "b", "c"]
    assert "| shapes | c | 75.0 [75.0, 75.0] | 1e-03 | 0 k | - |" in t.markdown()


def test_vision_outcome_records_arms_at_chance_and_the_protocol(tmp_path):
    ctx = ReproContext(quick=True, out_dir=tmp_path)
    out = vision_outcome(ctx, {"": _table({"a": [0.13, 0.12], "b": [0.5, 0.6]})}, {"margin": 1.0}, "Summary.",
                         plots={"": ("bars.png", "title")})
    assert out.measured[AT_CHANCE] == ["a"] and out.measured["margin"] == 1.0
    assert out.summary.startswith("Summary.") and ctx.plots == [str(tmp_path / "bars.png")]
    assert out.per_seed == {"shapes/a accuracy": [0.13, 0.12], "shapes/b accuracy": [0.5, 0.6]}
    assert out.protocol[0]["at_chance"] == ["a"] and out.protocol[0]["test"]["b"] == [0.5, 0.6]
    two = vision_outcome(ctx, {"full/": _table({"a": [0.5]}), "small/": _table({"a": [0.1]}, task="small")}, {}, "S.",
                         plots={})
    assert two.measured[f"{AT_CHANCE}: shapes"] == [] and two.measured[f"{AT_CHANCE}: small"] == ["a"]


def _iv(low, high):
    return Interval((low + high) / 2, low, high, (low, high))


@pytest.mark.parametrize("module, design, base", [(crossvit, "crossvit", "ViT-p4"), (tnt, "tnt", "ViT-p8"),
                                                  (spectformer, "SSAA", "AAAA")])
@pytest.mark.parametrize("low, high, at_chance, verdict", [
    (1.0, 5.0, [], HOLDS), (0.51, 9.0, [], HOLDS), (0.5, 9.0, [], INCONCLUSIVE),     # must clear +0.5 strictly
    (-3.0, 2.0, [], INCONCLUSIVE), (-9.0, 0.49, [], DOES_NOT_HOLD), (-9.0, 0.5, [], INCONCLUSIVE),
    (math.nan, math.nan, [], INCONCLUSIVE), (-math.inf, math.inf, [], INCONCLUSIVE),
    (1.0, 5.0, ["base"], HOLDS),                     # a baseline at chance: the interval decides
    (1.0, 5.0, ["design"], DOES_NOT_HOLD),           # the design learned nothing its baseline learned
])
def test_rule_of_each_margin_study(module, design, base, low, high, at_chance, verdict):
    assert module.FIGURES == (module.MARGIN, AT_CHANCE)
    names = [{"base": base, "design": design}[a] for a in at_chance]
    assert module.judge({module.MARGIN: _iv(low, high), AT_CHANCE: names}) == verdict


@pytest.mark.parametrize("module, arms", [(crossvit, ["crossvit", "ViT-p4", "ViT-p8"]), (tnt, ["tnt", "ViT-p8"]),
                                          (spectformer, ["SSAA", "AAAA", "SSSS"])])
def test_every_arm_at_chance_is_inconclusive(module, arms):
    assert module.judge({module.MARGIN: _iv(5.0, 9.0), AT_CHANCE: arms}) == INCONCLUSIVE


def test_train_vision_arms_runs_the_protocol_for_every_arm():
    from attnlab.models import ViT

    budget = Budget(steps=2, batch_size=4, eval_batches=1, eval_batch_size=8, tasks=("digits",), bench_repeats=1,
                    protocol=Protocol((1e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
    build = lambda spec: ViT(**image_kwargs(spec), patch_size=8, dim=8, depth=1, num_heads=2)  # noqa: E731
    t = train_vision_arms([Arm("x", build), Arm("y", build)], budget, keep_models=True)
    f = t.fair["digits"]
    assert f.arms == ["x", "y"] and [r.seed for r in f.runs["x"]] == [0, 1] and len(f.sweep["x"]) == 2
    # the same build and seed give the same model: the arms are trained identically, LR choice included
    assert f.lr["x"] == f.lr["y"] and f.values("x") == f.values("y")
    for a, b in zip(f.runs["x"], f.runs["y"]):
        assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert all(r.measured["images_per_s"] > 0 for r in f.runs["x"]) and t.params["x"] == count_params(build(
        make_task("digits").spec))
    assert f.chance.level == pytest.approx(0.1) and f.runs["x"][0].split == "test"
    shifted = train_vision_arms([Arm("x", build)], budget, measure_speed=False, seed_offset=1)
    assert [r.seed for r in shifted.fair["digits"].runs["x"]] == [1, 2]
    assert all(r.model is None for r in shifted.fair["digits"].runs["x"])
