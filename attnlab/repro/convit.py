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
    SHAPES_LEARNED, full_and_small, full_budget, image_model, matched_vit, quick_budget, small_data_outcome,
)

PAPER = "P11"
CLAIM = ("Gated positional self-attention with a convolutional (local) initialisation makes a ViT more sample "
         "efficient: ConViT beats DeiT, and the gain grows sharply as the training data shrinks.")
SMALL_BATCHES = 10
MIN_GAIN = 2.0  # points

QUICK, FULL = quick_budget(), full_budget(300, lr=1e-3, task_seeds={"digits": (0,)})

GAP_FULL, GAP_SMALL = "shapes gap full (points)", "shapes gap small (points)"
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
    budget, small_batches = ctx.budget, 2 if ctx.quick else SMALL_BATCHES
    full, small = full_and_small(ctx, _arms(*((32, 2, 1) if ctx.quick else (64, 4, 2))), small_batches)
    gap = lambda table, base: 100 * (table.accuracy("convit") - table.accuracy(base))  # noqa: E731
    entries = {GAP_FULL: gap(full, "deit"), GAP_SMALL: gap(small, "deit"),
               "shapes gap vs ViT full (points)": gap(full, "ViT"),
               "shapes gap vs ViT small (points)": gap(small, "ViT")}
    n_small = small_batches * budget.batch_size
    summary = (f"ConViT - DeiT on shapes: {entries[GAP_FULL]:+.1f} points with the full stream, "
               f"{entries[GAP_SMALL]:+.1f} with {n_small} distinct training images (rule: small-data gain >= +2 and "
               f"larger than the full-data gain holds; <= 0 does not). Against the mean-pooled plain ViT of equal "
               f"parameters: "
               f"{gap(full, 'ViT'):+.1f} (full) and {gap(small, 'ViT'):+.1f} (small).")
    return small_data_outcome(ctx, full, small, entries, summary, judge=judge, plot="convit", title="ConViT vs ViT",
                              small_images=n_small)
