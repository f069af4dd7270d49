"""P11 ConViT at CPU scale: sample efficiency of gated positional self-attention vs a ViT of equal parameters.

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
shrinks); does not hold if gap_small <= 0; inconclusive otherwise. The same
gaps against the plain ViT are reported beside it.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, SubsetTask, flat_measured, format_table, full_budget, learned_guard, mean_acc, plot_bars,
    quick_budget, run_arms, vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P11"
CLAIM = ("Gated positional self-attention with a convolutional (local) initialisation makes a ViT more sample "
         "efficient: ConViT beats DeiT, and the gain grows sharply as the training data shrinks.")
SMALL_BATCHES = 10
MIN_GAIN = 0.02

QUICK = quick_budget()
FULL = full_budget(300, lr=1e-3, task_seeds={"digits": (0,)})


def _arms(dim: int, depth: int, local: int) -> list[Arm]:
    from attnlab.models.convit import ConViT

    conv = lambda img, ch, ncls: ConViT(img_size=img, in_chans=ch, num_classes=ncls, embed_dim=dim, depth=depth,  # noqa: E731
                                        num_heads=4, local_up_to_layer=local)
    target = lambda img, ch, ncls: sum(p.numel() for p in conv(img, ch, ncls).parameters())  # noqa: E731
    deit = lambda img, ch, ncls: ConViT(img_size=img, in_chans=ch, num_classes=ncls, embed_dim=dim, depth=depth,  # noqa: E731
                                        num_heads=4, local_up_to_layer=0)
    return [Arm("convit", conv), Arm("deit", deit),
            Arm("ViT", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, depth=depth))]


def run(ctx: ReproContext) -> ReproOutcome:
    """Train ConViT and a matched ViT on full and small data; judge the small-data gain."""
    budget = QUICK if ctx.quick else FULL
    arms = _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4, 1 if ctx.quick else 2)
    small_batches = 2 if ctx.quick else SMALL_BATCHES
    full = run_arms(arms, budget, progress=ctx.progress)
    small = run_arms(arms, budget, progress=ctx.progress, measure_speed=False,
                     task_wrap=lambda t: SubsetTask(t, small_batches))
    gap = lambda table, base: mean_acc(table, "shapes", "convit") - mean_acc(table, "shapes", base)  # noqa: E731
    gap_full, gap_small = gap(full, "deit"), gap(small, "deit")
    vit_full, vit_small = gap(full, "ViT"), gap(small, "ViT")
    if gap_small >= MIN_GAIN and gap_small > gap_full:
        verdict = HOLDS
    elif gap_small <= 0:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    measured = flat_measured(full, "full/") | flat_measured(small, "small/")
    measured["shapes gap full (points)"] = 100 * gap_full
    measured["shapes gap small (points)"] = 100 * gap_small
    measured["shapes gap vs ViT full (points)"] = 100 * vit_full
    measured["shapes gap vs ViT small (points)"] = 100 * vit_small
    plots = [p for p in [plot_bars(full, ctx.path("convit_full.png"), "ConViT vs ViT, full data"),
                         plot_bars(small, ctx.path("convit_small.png"),
                                   f"ConViT vs ViT, {small_batches * budget.batch_size} images")] if p]
    summary = (f"ConViT - DeiT on shapes: {100 * gap_full:+.1f} points with the full stream, {100 * gap_small:+.1f} with "
               f"{small_batches * budget.batch_size} distinct training images (rule: small-data gain >= +2 and larger "
               f"than the full-data gain holds; <= 0 does not). Against the mean-pooled plain ViT of equal parameters: "
               f"{100 * vit_full:+.1f} (full) and {100 * vit_small:+.1f} (small).\n\nFull data:\n\n{format_table(full)}\n\n"
               f"Small data:\n\n{format_table(small)}")
    verdict, summary = learned_guard(measured, verdict, summary, full, small)
    return ReproOutcome(measured, verdict, summary, plots)
