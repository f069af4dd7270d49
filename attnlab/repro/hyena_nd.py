"""P15 Hyena N-D at CPU scale: Hyena-first hybrid and attention-free Hyena ViT vs a ViT of equal parameters.

Arms (width 64, depth 4, patch 4, 8x8 grid, mean pooling):
``hybrid`` (``attnlab.models.hyena_vit.HyenaViT`` with Hyena N-D in the first 2
blocks, softmax attention in the last 2: the paper's best layout),
``hyena`` (Hyena N-D in all 4 blocks, attention-free) and ``ViT``
(``attnlab.models.ViT`` widened until its parameter count matches the hybrid's).
Two data regimes on each task: the full training stream, and a small pool of
``SMALL_BATCHES`` batches cycled (``SubsetTask``), since the paper's claim is
about data efficiency (small datasets).

Rule (on ``shapes``, mean over seeds): with gap = acc(hybrid) - acc(ViT), holds
if gap_small >= +0.5 point and gap_full >= -0.5 (helps with little data, costs
nothing with more); does not hold if gap_small <= -0.5; inconclusive otherwise,
or if no arm learned shapes in either regime. The attention-free Hyena ViT is reported beside it.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, guard_learned
from attnlab.repro.harness.vision import (
    BAND_POINTS, SHAPES_LEARNED, data_efficiency_study, full_budget, image_model, matched_vit, quick_budget,
)

PAPER = "P15"
CLAIM = ("Hyena N-D in place of attention gives a data-efficient ViT, and the hybrid with Hyena N-D in the first "
         "layers and attention after consistently improves on the plain ViT, most of all on small datasets.")
SMALL_BATCHES = 10

QUICK, FULL = quick_budget(), full_budget(250, task_seeds={"digits": (0,)})

GAP_FULL, GAP_SMALL = "shapes: hybrid - ViT, full (points)", "shapes: hybrid - ViT, small (points)"
HYENA_FULL, HYENA_SMALL = "shapes: hyena - ViT, full (points)", "shapes: hyena - ViT, small (points)"  # context
FIGURES = (GAP_FULL, GAP_SMALL, SHAPES_LEARNED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    small, full = figures[GAP_SMALL], figures[GAP_FULL]
    if small >= BAND_POINTS and full >= -BAND_POINTS:
        verdict = HOLDS
    else:
        verdict = DOES_NOT_HOLD if small <= -BAND_POINTS else INCONCLUSIVE
    return guard_learned(figures[SHAPES_LEARNED], verdict)


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.hyena_vit import HyenaViT

    def hyena(num_hyena: int):
        return image_model(HyenaViT, patch_size=4, dim=dim, depth=depth, num_heads=4, num_hyena=num_hyena)

    return [Arm("hybrid", hyena(depth // 2)), Arm("hyena", hyena(depth)),
            matched_vit("ViT", hyena(depth // 2), depth=depth)]


def run(ctx):
    """Train hybrid, Hyena ViT and a matched ViT on full and small data; record the hybrid's gaps on shapes."""
    return data_efficiency_study(
        ctx, _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), small_batches=2 if ctx.quick else SMALL_BATCHES,
        gaps={(GAP_FULL, GAP_SMALL): ("hybrid", "ViT"), (HYENA_FULL, HYENA_SMALL): ("hyena", "ViT")}, judge=judge,
        rule="hybrid - ViT with small data >= +0.5 and with full data >= -0.5 holds, with small data <= -0.5 does "
             "not", plot="hyena_nd", title="Hyena N-D vs ViT")
