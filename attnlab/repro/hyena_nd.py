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
nothing with more); does not hold if gap_small <= -0.5; inconclusive otherwise.
The attention-free Hyena ViT is reported beside it.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, SubsetTask, flat_measured, format_table, full_budget, learned_guard, mean_acc, plot_bars,
    quick_budget, run_arms, vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P15"
CLAIM = ("Hyena N-D in place of attention gives a data-efficient ViT, and the hybrid with Hyena N-D in the first "
         "layers and attention after consistently improves on the plain ViT, most of all on small datasets.")
SMALL_BATCHES = 10
BAND = 0.005

QUICK = quick_budget()
FULL = full_budget(250, task_seeds={"digits": (0,)})


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.hyena_vit import HyenaViT

    def hy(num_hyena: int):
        return lambda img, ch, ncls: HyenaViT(img_size=img, in_chans=ch, num_classes=ncls, patch_size=4, dim=dim,
                                              depth=depth, num_heads=4, num_hyena=num_hyena)

    arms = [Arm("hybrid", hy(depth // 2)), Arm("hyena", hy(depth))]
    target = lambda img, ch, ncls: sum(p.numel() for p in arms[0].build(img, ch, ncls).parameters())  # noqa: E731
    arms.append(Arm("ViT", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, depth=depth)))
    return arms


def run(ctx: ReproContext) -> ReproOutcome:
    """Train hybrid, Hyena ViT and a matched ViT on full and small data; judge the hybrid's gain on shapes."""
    budget = QUICK if ctx.quick else FULL
    arms = _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4)
    small_batches = 2 if ctx.quick else SMALL_BATCHES
    full = run_arms(arms, budget, progress=ctx.progress)
    small = run_arms(arms, budget, progress=ctx.progress, measure_speed=False,
                     task_wrap=lambda t: SubsetTask(t, small_batches))
    gap = lambda table, a: mean_acc(table, "shapes", a) - mean_acc(table, "shapes", "ViT")  # noqa: E731
    gap_full, gap_small = gap(full, "hybrid"), gap(small, "hybrid")
    if gap_small >= BAND and gap_full >= -BAND:
        verdict = HOLDS
    elif gap_small <= -BAND:
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    measured = flat_measured(full, "full/") | flat_measured(small, "small/")
    measured["shapes: hybrid - ViT, full (points)"] = 100 * gap_full
    measured["shapes: hybrid - ViT, small (points)"] = 100 * gap_small
    measured["shapes: hyena - ViT, full (points)"] = 100 * gap(full, "hyena")
    measured["shapes: hyena - ViT, small (points)"] = 100 * gap(small, "hyena")
    n_small = small_batches * budget.batch_size
    plots = [p for p in [plot_bars(full, ctx.path("hyena_nd_full.png"), "Hyena N-D vs ViT, full data"),
                         plot_bars(small, ctx.path("hyena_nd_small.png"), f"Hyena N-D vs ViT, {n_small} images")] if p]
    summary = (f"Hybrid (Hyena N-D then attention) - ViT of equal parameters on shapes: {100 * gap_full:+.1f} points "
               f"with the full stream, {100 * gap_small:+.1f} with {n_small} distinct training images (rule: small-data "
               f"gain >= +0.5 with full-data gap >= -0.5 holds; small-data gap <= -0.5 does not). Attention-free Hyena "
               f"ViT: {100 * gap(full, 'hyena'):+.1f} (full), {100 * gap(small, 'hyena'):+.1f} (small). "
               f"{budget.steps} steps x {budget.batch_size}.\n\nFull data:\n\n{format_table(full)}\n\n"
               f"Small data:\n\n{format_table(small)}")
    verdict, summary = learned_guard(measured, verdict, summary, full, small)
    return ReproOutcome(measured, verdict, summary, plots)
