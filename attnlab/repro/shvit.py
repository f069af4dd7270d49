"""P29 SHViT at CPU scale: faster at equal accuracy than a ViT of equal parameters.

Arms: ``shvit`` (the tiny config: 4x stem to 8x8 tokens at 32 px, widths
32/48/64, single-head attention on a quarter of the channels in stages 2-3),
``shvit_fullch`` (the same network attending over all channels: the paper's
ablation of the partial split) and ``attnlab.models.ViT`` matched to SHViT's
parameter count (patch 4, 8x8 tokens).

Rule (on ``shapes``, mean over seeds): holds if SHViT trains at least 1.2x the
ViT's images/s and its accuracy is no more than 1 point below the ViT's; does
not hold otherwise; inconclusive if no arm learned shapes. The full-channel
variant is reported as context (speed of the partial split).
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, guard_learned
from attnlab.repro.harness.vision import (
    SHAPES_LEARNED, full_budget, image_model, matched_vit, quick_budget, train_vision_arms, vision_outcome,
)

PAPER = "P29"
CLAIM = ("A single-head attention on a fraction of the channels behind a large-stride stem (SHViT) gives a better "
         "speed-accuracy trade-off: faster than multi-head ViT-style models at equal or better accuracy.")
MIN_SPEEDUP = 1.2
TOLERANCE = 0.01

QUICK, FULL = quick_budget(), full_budget(400)
#: the quick run's smaller SHViT (over the tiny config)
QUICK_CONFIG = dict(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1))

SHVIT, VIT = "shapes/shvit accuracy", "shapes/ViT accuracy"
SPEEDUP = "shapes: shvit speed / ViT speed"
FIGURES = (SHVIT, VIT, SPEEDUP, SHAPES_LEARNED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES`` (accuracies as fractions)."""
    ok = figures[SPEEDUP] >= MIN_SPEEDUP and figures[SHVIT] >= figures[VIT] - TOLERANCE
    return guard_learned(figures[SHAPES_LEARNED], HOLDS if ok else DOES_NOT_HOLD)


def _arms(quick: bool) -> list[Arm]:
    from attnlab.models.shvit import SHVIT_CONFIGS, SHViT

    cfg = SHVIT_CONFIGS["tiny"] | (QUICK_CONFIG if quick else {})
    sh = image_model(SHViT, **cfg)
    return [Arm("shvit", sh), Arm("shvit_fullch", image_model(SHViT, **cfg | {"partial_dim": tuple(cfg["embed_dim"])})),
            matched_vit("ViT", sh, depth=2 if quick else 4)]


def run(ctx):
    """Train SHViT, its full-channel variant and a matched ViT; record accuracy and relative speed."""
    table = train_vision_arms(_arms(ctx.quick), ctx.budget, progress=ctx.progress, seed_offset=ctx.seed)
    sh, vit, full = (table.accuracy(a) for a in ("shvit", "ViT", "shvit_fullch"))
    speedup = table.speed_ratio("shvit", "ViT")
    figures = {SPEEDUP: speedup, "shapes: shvit speed / full-channel speed": table.speed_ratio("shvit", "shvit_fullch")}
    summary = (f"On shapes SHViT {100 * sh:.1f}% at {speedup:.2f}x the images/s of a ViT of equal parameters "
               f"({100 * vit:.1f}%) (rule: >= {MIN_SPEEDUP}x and at most 1 point below holds). "
               f"Full-channel SHViT: {100 * full:.1f}%.")
    return vision_outcome(ctx, {"": table}, figures, summary, judge=judge, plots={"": ("shvit.png", "SHViT vs ViT")})
