"""P13 CrossViT at CPU scale: two patch sizes fused by CLS cross-attention vs ViTs of equal parameters.

Arms: ``crossvit`` (patch 4 branch of width 48 + patch 8 branch of width 96,
two multi-scale blocks, the tiny config), ``ViT-p4`` and ``ViT-p8``:
``attnlab.models.ViT`` with patch 4 (the fine branch's grid) and patch 8 (the
coarse branch's grid), each matched to CrossViT's parameter count.

Rule (on ``shapes``, mean over seeds): holds if CrossViT beats the better of
the two matched ViTs by more than 0.5 point; does not hold if it trails it by
more than 0.5 point; inconclusive in between.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, flat_measured, format_table, full_budget, learned_guard, mean_acc, plot_bars, quick_budget, run_arms,
    vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P13"
CLAIM = ("A dual-branch transformer with small and large patches, fused by cross-attention with each branch's "
         "CLS token as the only query, beats a single-scale ViT (DeiT) by about 2 points at modest extra cost.")
BAND = 0.005

QUICK = quick_budget()
FULL = full_budget(300)


def _arms(quick: bool) -> list[Arm]:
    from attnlab.models.crossvit import CROSSVIT_CONFIGS, CrossViT

    cfg = dict(CROSSVIT_CONFIGS["tiny"])
    if quick:
        cfg.update(embed_dim=(16, 32), depth=((1, 1, 0),), num_heads=(2, 2))
    cv = lambda img, ch, ncls: CrossViT(img_size=img, in_chans=ch, num_classes=ncls, **cfg)  # noqa: E731
    target = lambda img, ch, ncls: sum(p.numel() for p in cv(img, ch, ncls).parameters())  # noqa: E731
    depth = 2 if quick else 4
    return [
        Arm("crossvit", cv),
        Arm("ViT-p4", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, patch_size=4, depth=depth)),
        Arm("ViT-p8", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, patch_size=8, depth=depth)),
    ]


def run(ctx: ReproContext) -> ReproOutcome:
    """Train CrossViT and the two matched ViTs; judge CrossViT against the better ViT."""
    budget = QUICK if ctx.quick else FULL
    table = run_arms(_arms(ctx.quick), budget, progress=ctx.progress)
    cv, p4, p8 = (mean_acc(table, "shapes", a) for a in ("crossvit", "ViT-p4", "ViT-p8"))
    margin = cv - max(p4, p8)
    verdict = HOLDS if margin > BAND else DOES_NOT_HOLD if margin < -BAND else INCONCLUSIVE
    measured = flat_measured(table)
    measured["shapes: crossvit - best ViT (points)"] = 100 * margin
    plots = [p for p in [plot_bars(table, ctx.path("crossvit.png"), "CrossViT vs matched ViTs")] if p]
    summary = (f"On shapes CrossViT {100 * cv:.1f}%, ViT-p4 {100 * p4:.1f}%, ViT-p8 {100 * p8:.1f}% (equal parameters); "
               f"margin over the better ViT {100 * margin:+.1f} points (rule: > +0.5 holds, < -0.5 does not).\n\n"
               f"{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
