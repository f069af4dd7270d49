"""P32 TNT at CPU scale: transformer in transformer vs ViTs of equal parameters.

Arms: ``tnt`` (the tiny config: 32 px, 16 patches of 8 px, each with 4x4 pixel
words of width 12, outer width 96, 4 blocks), ``ViT-p8`` (the same patch grid
as TNT's outer transformer, as in the paper's TNT-S vs DeiT-S) and ``ViT-p4``,
both ``attnlab.models.ViT`` matched to TNT's parameter count.

Rule (on ``shapes``, mean over seeds): holds if TNT's accuracy is at least
ViT-p8's (the paper's comparison) plus 0.5 point; does not hold if it is more
than 0.5 point below; inconclusive in between. ViT-p4 is reported as context.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, flat_measured, format_table, full_budget, learned_guard, mean_acc, plot_bars, quick_budget, run_arms,
    vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P32"
CLAIM = ("Modelling pixel-level words inside each patch with an inner transformer (TNT) improves on a ViT with the "
         "same patch size: TNT-S 81.5% vs DeiT-S 79.8% top-1 on ImageNet.")
BAND = 0.005

QUICK = quick_budget()
FULL = full_budget(300)


def _arms(quick: bool) -> list[Arm]:
    from attnlab.models.tnt import TNT, TNT_CONFIGS

    cfg = dict(TNT_CONFIGS["tiny"])
    if quick:
        cfg.update(embed_dim=32, inner_dim=8, depth=1, num_heads_outer=2)
    tnt = lambda img, ch, ncls: TNT(img_size=img, in_chans=ch, num_classes=ncls, **cfg)  # noqa: E731
    target = lambda img, ch, ncls: sum(p.numel() for p in tnt(img, ch, ncls).parameters())  # noqa: E731
    depth = 2 if quick else 4
    return [
        Arm("tnt", tnt),
        Arm("ViT-p8", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, patch_size=8, depth=depth)),
        Arm("ViT-p4", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, patch_size=4, depth=depth)),
    ]


def run(ctx: ReproContext) -> ReproOutcome:
    """Train TNT and the matched ViTs; judge TNT against the same-patch ViT."""
    budget = QUICK if ctx.quick else FULL
    table = run_arms(_arms(ctx.quick), budget, progress=ctx.progress)
    tnt, p8, p4 = (mean_acc(table, "shapes", a) for a in ("tnt", "ViT-p8", "ViT-p4"))
    margin = tnt - p8
    verdict = HOLDS if margin > BAND else DOES_NOT_HOLD if margin < -BAND else INCONCLUSIVE
    measured = flat_measured(table)
    measured["shapes: tnt - ViT-p8 (points)"] = 100 * margin
    plots = [p for p in [plot_bars(table, ctx.path("tnt.png"), "TNT vs matched ViTs")] if p]
    summary = (f"On shapes TNT {100 * tnt:.1f}% vs ViT-p8 {100 * p8:.1f}% (same patch grid, equal parameters; margin "
               f"{100 * margin:+.1f} points, rule: > +0.5 holds, < -0.5 does not); ViT-p4 {100 * p4:.1f}%.\n\n"
               f"{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
