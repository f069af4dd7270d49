"""P04 SpectFormer at CPU scale: spectral gating first, attention after, vs all-attention and all-spectral.

Arms (width 64, depth 4, 4 heads): ``SSAA`` (SpectFormer: spectral gating in the first half,
attention in the second), ``AAAA`` (all attention), ``SSSS`` (all spectral, GFNet-like),
``AASS`` (the reversed order, the paper's ablation), and ``attnlab.models.ViT`` matched to
SSAA's parameter count (context).

Rule (on ``shapes``, mean over seeds): holds if SSAA beats the better of AAAA and SSSS
by more than 0.5 point; does not hold if it trails it by more than 0.5 point;
inconclusive in between, or if no arm learned shapes.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.vision import (
    SHAPES_LEARNED, full_budget, image_model, margin_rule, margin_study, matched_vit, quick_budget,
)

PAPER = "P04"
CLAIM = ("Spectral gating layers in the first blocks followed by multi-head attention (SpectFormer) beat both "
         "an all-attention transformer and an all-spectral one (GFNet).")

QUICK, FULL = quick_budget(), full_budget(300)

MARGIN = "shapes: SSAA - max(AAAA, SSSS) (points)"
FIGURES = (MARGIN, SHAPES_LEARNED)
judge = margin_rule(MARGIN)


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.spectformer import SpectFormer

    def layout(layers: str):
        return image_model(SpectFormer, embed_dim=dim, depth=depth, layers=layers, num_heads=4)

    half = depth // 2  # the names say the full run's layouts; a quick run halves them
    arms = [Arm("SSAA", layout("s" * half + "a" * (depth - half))), Arm("AAAA", layout("a" * depth)),
            Arm("SSSS", layout("s" * depth)), Arm("AASS", layout("a" * (depth - half) + "s" * half))]
    return arms + [matched_vit("ViT", arms[0].build, depth=depth)]


def run(ctx):
    """Train the five arms; record SSAA's margin over the better of the two ends."""
    arms = _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4)
    return margin_study(ctx, arms, judged="SSAA", against=("AAAA", "SSSS"), figure=MARGIN, judge=judge,
                        plot="spectformer.png", title="SpectFormer layouts")
