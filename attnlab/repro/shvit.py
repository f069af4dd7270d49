"""P29 SHViT at CPU scale: faster at equal accuracy than a ViT of equal parameters.

Arms: ``shvit`` (the tiny config: 4x stem to 8x8 tokens at 32 px, widths
32/48/64, single-head attention on a quarter of the channels in stages 2-3),
``shvit_fullch`` (the same network attending over all channels: the paper's
ablation of the partial split) and ``attnlab.models.ViT`` matched to SHViT's
parameter count (patch 4, 8x8 tokens).

Rule (on ``shapes``, mean over seeds): holds if SHViT trains at least 1.2x the
ViT's images/s and its accuracy is no more than 1 point below the ViT's; does
not hold otherwise. The full-channel variant is reported as context (speed of
the partial split).
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, format_table, full_budget, learned_guard, mean_acc, plot_bars, quick_budget, run_arms, vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, ReproContext, ReproOutcome

PAPER = "P29"
CLAIM = ("A single-head attention on a fraction of the channels behind a large-stride stem (SHViT) gives a better "
         "speed-accuracy trade-off: faster than multi-head ViT-style models at equal or better accuracy.")
MIN_SPEEDUP = 1.2
TOLERANCE = 0.01

QUICK = quick_budget()
FULL = full_budget(400)


def _arms(quick: bool) -> list[Arm]:
    from attnlab.models.shvit import SHVIT_CONFIGS, SHViT

    cfg = dict(SHVIT_CONFIGS["tiny"])
    if quick:
        cfg.update(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1))
    sh = lambda img, ch, ncls: SHViT(img_size=img, in_chans=ch, num_classes=ncls, **cfg)  # noqa: E731
    full_cfg = dict(cfg, partial_dim=tuple(cfg["embed_dim"]))
    shf = lambda img, ch, ncls: SHViT(img_size=img, in_chans=ch, num_classes=ncls, **full_cfg)  # noqa: E731
    target = lambda img, ch, ncls: sum(p.numel() for p in sh(img, ch, ncls).parameters())  # noqa: E731
    return [Arm("shvit", sh), Arm("shvit_fullch", shf),
            Arm("ViT", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, depth=2 if quick else 4))]


def run(ctx: ReproContext) -> ReproOutcome:
    """Train SHViT, its full-channel variant and a matched ViT; judge speed at equal accuracy."""
    budget = QUICK if ctx.quick else FULL
    table = run_arms(_arms(ctx.quick), budget, progress=ctx.progress)
    s = table["summary"]["shapes"]
    sh, vit = mean_acc(table, "shapes", "shvit"), mean_acc(table, "shapes", "ViT")
    speedup = s["shvit"]["images_per_s"] / s["ViT"]["images_per_s"]
    verdict = HOLDS if speedup >= MIN_SPEEDUP and sh >= vit - TOLERANCE else DOES_NOT_HOLD
    measured = {f"{t}/{a} {k}": v for t, arms in table["summary"].items() for a, x in arms.items() for k, v in x.items()}
    measured["shapes: shvit speed / ViT speed"] = speedup
    measured["shapes: shvit speed / full-channel speed"] = s["shvit"]["images_per_s"] / s["shvit_fullch"]["images_per_s"]
    plots = [p for p in [plot_bars(table, ctx.path("shvit.png"), "SHViT vs ViT")] if p]
    summary = (f"On shapes SHViT {100 * sh:.1f}% at {speedup:.2f}x the images/s of a ViT of equal parameters "
               f"({100 * vit:.1f}%) (rule: >= {MIN_SPEEDUP}x and at most 1 point below holds). "
               f"Full-channel SHViT: {100 * mean_acc(table, 'shapes', 'shvit_fullch'):.1f}%.\n\n{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
