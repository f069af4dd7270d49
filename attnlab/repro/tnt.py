"""P32 TNT at CPU scale: transformer in transformer vs ViTs of equal parameters.

Arms: ``tnt`` (the tiny config: 32 px, 16 patches of 8 px, each with 4x4 pixel
words of width 12, outer width 96, 4 blocks), ``ViT-p8`` (the same patch grid
as TNT's outer transformer, as in the paper's TNT-S vs DeiT-S) and ``ViT-p4``,
both ``attnlab.models.ViT`` matched to TNT's parameter count. Protocol
(``attnlab.repro.harness.protocol``): every arm at its own LR from a sweep over 3e-4 / 1e-3 /
3e-3 at 75 of the 300 steps on the val split, then three seeds, test accuracy. ``digits``,
reported as context before issue 18, is no longer trained.

Rule (on ``shapes``, test accuracy, seed by seed; written before the run): inconclusive if TNT
and ViT-p8 both learned nothing at any LR tried; does not hold if TNT learned nothing while
ViT-p8 did; otherwise, with margin = TNT - ViT-p8 (the paper's comparison) in points, holds if
its 95 % interval lies above +0.5 point, does not hold if it lies below, inconclusive if it
contains +0.5. ViT-p4 is reported as context.
"""
from __future__ import annotations

from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.vision import design_vs_matched_vits, full_budget, image_model, margin_rule, quick_budget

PAPER = "P32"
CLAIM = ("Modelling pixel-level words inside each patch with an inner transformer (TNT) improves on a ViT with the "
         "same patch size: TNT-S 81.5% vs DeiT-S 79.8% top-1 on ImageNet.")

QUICK, FULL = quick_budget(), full_budget(300)
#: the quick run's smaller TNT (over the tiny config)
QUICK_CONFIG = dict(embed_dim=32, inner_dim=8, depth=1, num_heads_outer=2)

MARGIN = "shapes: tnt - ViT-p8 (points)"
FIGURES = (MARGIN, AT_CHANCE)
judge = margin_rule(MARGIN, "tnt", ("ViT-p8",))


def run(ctx):
    """Train TNT and the matched ViTs; record TNT's margin over the same-patch ViT."""
    from attnlab.models.tnt import TNT, TNT_CONFIGS

    config = TNT_CONFIGS["tiny"] | (QUICK_CONFIG if ctx.quick else {})
    return design_vs_matched_vits(ctx, "tnt", image_model(TNT, **config), patches=(8, 4), against=("ViT-p8",),
                                  figure=MARGIN, title="TNT vs matched ViTs",
                                  note="ViT-p8 has TNT's patch grid; ViT-p4 is context. ")
