"""P11 ConViT at CPU scale: sample efficiency of gated positional self-attention vs DeiT.

Arms: ``convit`` (width 64, 4 heads, 4 blocks of which the first 2 are GPSA with
the local init; the class token joins after them), ``deit`` (the same network
with plain attention everywhere and the class token from the start: the
paper's DeiT baseline, equal parameters up to GPSA's 4 x 4 positional weights
and gates) and ``attnlab.models.ViT`` matched to ConViT's parameter count
(mean-pooled, the library's plain ViT; reported as context). Two data regimes
on each task: the full training stream, and a small pool of ``SMALL_BATCHES``
batches cycled (``SubsetTask``), i.e. a few hundred distinct images.

Rule (on ``shapes``, mean over seeds): with gap = acc(ConViT) - acc(DeiT), holds
if gap_small >= +2 points and gap_small > gap_full (the advantage grows as data
shrinks); does not hold if gap_small <= 0; inconclusive otherwise, or if no arm
learned shapes in either regime. The same gaps against the plain ViT are reported beside it.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, guard_learned
from attnlab.repro.harness.vision import (
    SHAPES_LEARNED, data_efficiency_study, full_budget, image_model, matched_vit, quick_budget,
)

PAPER = "P11"
CLAIM = ("Gated positional self-attention with a convolutional (local) initialisation makes a ViT more sample "
         "efficient: ConViT beats DeiT, and the gain grows sharply as the training data shrinks.")
SMALL_BATCHES = 10
MIN_GAIN = 2.0  # points

QUICK, FULL = quick_budget(), full_budget(300, lr=1e-3, task_seeds={"digits": (0,)})

GAP_FULL, GAP_SMALL = "shapes gap full (points)", "shapes gap small (points)"
VIT_FULL, VIT_SMALL = "shapes gap vs ViT full (points)", "shapes gap vs ViT small (points)"  # context
FIGURES = (GAP_FULL, GAP_SMALL, SHAPES_LEARNED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    small, full = figures[GAP_SMALL], figures[GAP_FULL]
    verdict = HOLDS if small >= MIN_GAIN and small > full else DOES_NOT_HOLD if small <= 0 else INCONCLUSIVE
    return guard_learned(figures[SHAPES_LEARNED], verdict)


def _arms(dim: int, depth: int, local: int) -> list[Arm]:
    from attnlab.models.convit import ConViT

    def convit(local_up_to_layer: int):
        return image_model(ConViT, embed_dim=dim, depth=depth, num_heads=4, local_up_to_layer=local_up_to_layer)

    return [Arm("convit", convit(local)), Arm("deit", convit(0)), matched_vit("ViT", convit(local), depth=depth)]


def run(ctx):
    """Train ConViT, DeiT and a matched ViT on full and small data; record ConViT's gaps on shapes."""
    return data_efficiency_study(
        ctx, _arms(*((32, 2, 1) if ctx.quick else (64, 4, 2))), small_batches=2 if ctx.quick else SMALL_BATCHES,
        gaps={(GAP_FULL, GAP_SMALL): ("convit", "deit"), (VIT_FULL, VIT_SMALL): ("convit", "ViT")}, judge=judge,
        rule="convit - deit with small data >= +2 and above its full-data value holds, <= 0 does not",
        plot="convit", title="ConViT vs ViT")
