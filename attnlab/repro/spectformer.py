"""P04 SpectFormer at CPU scale: spectral gating first, attention after, vs all-attention and all-spectral.

Arms (width 64, depth 4, 4 heads): ``SSAA`` (SpectFormer: spectral gating in the first half,
attention in the second), ``AAAA`` (all attention), ``SSSS`` (all spectral, GFNet-like),
``AASS`` (the reversed order, the paper's ablation), and ``attnlab.models.ViT`` matched to
SSAA's parameter count (context). Protocol (``attnlab.repro.harness.protocol``): every arm at its
own LR from a sweep over 3e-4 / 1e-3 / 3e-3 at 75 of the 300 steps on the val split, then three
seeds, test accuracy. ``digits``, reported as context before issue 18, is no longer trained.

Rule (on ``shapes``, test accuracy, seed by seed; written before the run): inconclusive if every
arm it reads (SSAA, AAAA, SSSS) learned nothing at any LR tried; does not hold if SSAA learned
nothing while another did; otherwise, with margin = SSAA - the better (by mean) of AAAA and SSSS
in points, holds if its 95 % interval lies above +0.5 point, does not hold if it lies below,
inconclusive if it contains +0.5.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.vision import full_budget, image_model, margin_rule, margin_study, matched_vit, quick_budget

PAPER = "P04"
CLAIM = ("Spectral gating layers in the first blocks followed by multi-head attention (SpectFormer) beat both "
         "an all-attention transformer and an all-spectral one (GFNet).")

QUICK, FULL = quick_budget(), full_budget(300)

MARGIN = "shapes: SSAA - max(AAAA, SSSS) (points)"
FIGURES = (MARGIN, AT_CHANCE)
judge = margin_rule(MARGIN, "SSAA", ("AAAA", "SSSS"))


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
    return margin_study(ctx, arms, judged="SSAA", against=("AAAA", "SSSS"), figure=MARGIN, plot="spectformer.png",
                        title="SpectFormer layouts")
