"""P29 SHViT at CPU scale: faster at equal accuracy than a ViT of equal parameters.

Arms: ``shvit`` (the tiny config: 4x stem to 8x8 tokens at 32 px, widths
32/48/64, single-head attention on a quarter of the channels in stages 2-3),
``shvit_fullch`` (the same network attending over all channels: the paper's
ablation of the partial split) and ``attnlab.models.ViT`` matched to SHViT's
parameter count (patch 4, 8x8 tokens). Protocol (``attnlab.repro.harness.protocol``):
each arm at its own LR from a sweep over 3e-4 / 1e-3 / 3e-3 at 100 of the 400 steps on the
val split, then three seeds, test accuracy; images/s timed on every seed's models.

Rule (on ``shapes``, seed by seed, 95 % intervals; written before the run): inconclusive if
SHViT and the ViT both learned nothing at any LR tried; does not hold if SHViT learned nothing
while the ViT did; otherwise two parts, both needed: SHViT's images/s over the ViT's above 1.2,
and its accuracy minus the ViT's (points) above -1. Holds if both intervals clear their margins,
does not hold if either lies on the wrong side, else inconclusive. The full-channel variant is
reported as context (speed of the partial split).
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import all_parts, chance_rule, clears
from attnlab.repro.harness.vision import full_budget, image_model, matched_vit, quick_budget, train_vision_arms, \
    vision_outcome

PAPER = "P29"
CLAIM = ("A single-head attention on a fraction of the channels behind a large-stride stem (SHViT) gives a better "
         "speed-accuracy trade-off: faster than multi-head ViT-style models at equal or better accuracy.")
MIN_SPEEDUP = 1.2
TOLERANCE = 1.0  # points

QUICK, FULL = quick_budget(), full_budget(400)
#: the quick run's smaller SHViT (over the tiny config)
QUICK_CONFIG = dict(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1))

GAP = "shapes: shvit - ViT (points)"
SPEEDUP = "shapes: shvit speed / ViT speed"
FIGURES = (SPEEDUP, GAP, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], ("shvit", "ViT"), counts_against=("shvit",)) \
        or all_parts(clears(figures[SPEEDUP], MIN_SPEEDUP), clears(figures[GAP], -TOLERANCE))


def _arms(quick: bool) -> list[Arm]:
    from attnlab.models.shvit import SHVIT_CONFIGS, SHViT

    cfg = SHVIT_CONFIGS["tiny"] | (QUICK_CONFIG if quick else {})
    sh = image_model(SHViT, **cfg)
    return [Arm("shvit", sh), Arm("shvit_fullch", image_model(SHViT, **cfg | {"partial_dim": tuple(cfg["embed_dim"])})),
            matched_vit("ViT", sh, depth=2 if quick else 4)]


def run(ctx):
    """Train SHViT, its full-channel variant and a matched ViT; record the accuracy gap and relative speed."""
    table = train_vision_arms(_arms(ctx.quick), ctx.budget, progress=ctx.progress, seed_offset=ctx.seed)
    figures = {SPEEDUP: table.speed_ratio("shvit", "ViT"), GAP: table.gap("shvit", "ViT"),
               "shapes: shvit speed / full-channel speed": table.speed_ratio("shvit", "shvit_fullch")}
    summary = (f"On shapes (test accuracy, each arm at its own LR, 95 % intervals over seeds): SHViT - ViT of equal "
               f"parameters {figures[GAP].text(3)} points at {figures[SPEEDUP].text(3)}x its images/s (rule: ratio "
               f"above {MIN_SPEEDUP} and gap above -{TOLERANCE:g} hold). Full-channel SHViT: "
               f"{table.accuracy('shvit_fullch').mean:.1f}%.")
    return vision_outcome(ctx, {"": table}, figures, summary, plots={"": ("shvit.png", "SHViT vs ViT")})
