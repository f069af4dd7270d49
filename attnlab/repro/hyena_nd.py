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
    BAND_POINTS, SHAPES_LEARNED, full_and_small, full_budget, image_model, matched_vit, quick_budget,
    small_data_outcome,
)

PAPER = "P15"
CLAIM = ("Hyena N-D in place of attention gives a data-efficient ViT, and the hybrid with Hyena N-D in the first "
         "layers and attention after consistently improves on the plain ViT, most of all on small datasets.")
SMALL_BATCHES = 10

QUICK, FULL = quick_budget(), full_budget(250, task_seeds={"digits": (0,)})

GAP_FULL, GAP_SMALL = "shapes: hybrid - ViT, full (points)", "shapes: hybrid - ViT, small (points)"
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
    budget, small_batches = ctx.budget, 2 if ctx.quick else SMALL_BATCHES
    full, small = full_and_small(ctx, _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), small_batches)
    gap = lambda table, arm: 100 * (table.accuracy(arm) - table.accuracy("ViT"))  # noqa: E731
    entries = {GAP_FULL: gap(full, "hybrid"), GAP_SMALL: gap(small, "hybrid"),
               "shapes: hyena - ViT, full (points)": gap(full, "hyena"),
               "shapes: hyena - ViT, small (points)": gap(small, "hyena")}
    n_small = small_batches * budget.batch_size
    summary = (f"Hybrid (Hyena N-D then attention) - ViT of equal parameters on shapes: {entries[GAP_FULL]:+.1f} "
               f"points with the full stream, {entries[GAP_SMALL]:+.1f} with {n_small} distinct training images "
               f"(rule: small-data gain >= +0.5 with full-data gap >= -0.5 holds; small-data gap <= -0.5 does not). "
               f"Attention-free Hyena ViT: {gap(full, 'hyena'):+.1f} (full), {gap(small, 'hyena'):+.1f} (small). "
               f"{budget.steps} steps x {budget.batch_size}.")
    return small_data_outcome(ctx, full, small, entries, summary, judge=judge, plot="hyena_nd",
                              title="Hyena N-D vs ViT", small_images=n_small)
