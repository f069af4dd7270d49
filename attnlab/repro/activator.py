"""P07 Activator at CPU scale: GLU-MLP token "mixer" vs a ViT of equal parameters.

Arms: ``activator`` (GLU + channel MLP), ``only_glu`` (the paper's variant
without the second MLP), and ``attnlab.models.ViT`` with the parameter count of
``activator``. As in the official model, Activator mixes no tokens and has no
position embedding, so it is a bag of patches; ``shapes`` labels need global
context, which is where this should show.

Rule (on ``shapes``, mean over seeds): holds if both Activator variants are
within 3 points of the ViT's accuracy and Activator trains at least as fast
(images/s); does not hold if either variant trails by more than 3 points or it
is slower; there is no inconclusive band beyond the 3 points the claim allows,
except when no arm learned shapes (inconclusive).
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, guard_learned
from attnlab.repro.harness.vision import (
    SHAPES_LEARNED, full_budget, image_model, matched_vit, quick_budget, train_vision_arms, vision_outcome,
)

PAPER = "P07"
CLAIM = ("A GLU-based MLP in place of attention (Activator) is competitive with ViT and MLP baselines at lower "
         "compute, even without the second (channel) MLP.")
TOLERANCE = 0.03

QUICK, FULL = quick_budget(), full_budget(400)

ACTIVATOR, ONLY_GLU, VIT = "shapes/activator accuracy", "shapes/only_glu accuracy", "shapes/ViT accuracy"
SPEED = "shapes: activator speed / ViT speed"
FIGURES = (ACTIVATOR, ONLY_GLU, VIT, SPEED, SHAPES_LEARNED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES`` (accuracies as fractions)."""
    vit = figures[VIT]
    ok = figures[ACTIVATOR] >= vit - TOLERANCE and figures[ONLY_GLU] >= vit - TOLERANCE and figures[SPEED] >= 1.0
    return guard_learned(figures[SHAPES_LEARNED], HOLDS if ok else DOES_NOT_HOLD)


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.activator import Activator

    def act(channel_mlp: bool):
        return image_model(Activator, embed_dim=dim, depth=depth, channel_mlp=channel_mlp)

    return [Arm("activator", act(True)), Arm("only_glu", act(False)), matched_vit("ViT", act(True), depth=depth)]


def run(ctx):
    """Train Activator, only-GLU and a matched ViT; record their accuracies and Activator's relative speed."""
    budget = ctx.budget
    table = train_vision_arms(_arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), budget, progress=ctx.progress,
                              seed_offset=ctx.seed)
    act, glu, vit = (table.accuracy(a) for a in ("activator", "only_glu", "ViT"))
    speed = table.speed_ratio("activator", "ViT")
    summary = (f"On shapes Activator {100 * act:.1f}%, only-GLU {100 * glu:.1f}%, ViT (equal params) {100 * vit:.1f}%; "
               f"Activator trains {speed:.2f}x the ViT's images/s (rule: both within 3 points and >= 1x). "
               f"{budget.steps} steps x {budget.batch_size}, seeds {list(budget.seeds)}.")
    return vision_outcome(ctx, {"": table}, {SPEED: speed}, summary, judge=judge,
                          plots={"": ("activator.png", "Activator vs ViT")})
