"""P11 ConViT at CPU scale: sample efficiency of gated positional self-attention vs DeiT.

Arms: ``convit`` (width 64, 4 heads, 4 blocks of which the first 2 are GPSA with
the local init; the class token joins after them), ``deit`` (the same network
with plain attention everywhere and the class token from the start: the
paper's DeiT baseline, equal parameters up to GPSA's 4 x 4 positional weights
and gates) and ``attnlab.models.ViT`` matched to ConViT's parameter count
(mean-pooled, the library's plain ViT; reported as context). Two data regimes
on ``shapes``: the full training stream, and a small pool of ``SMALL_BATCHES``
batches cycled (``SubsetTask``), i.e. 320 distinct images. Protocol
(``attnlab.repro.harness.protocol``), in each regime: each arm at its own LR from a sweep
over 3e-4 / 1e-3 / 3e-3 at 75 of the 300 steps on the val split, then three seeds, test
accuracy. ``digits``, reported as context before issue 18, is no longer trained.

Rule (seed by seed, 95 % intervals; written before the run): inconclusive if ConViT and DeiT
both learned nothing at any LR tried in either regime (a regime where training failed says
nothing about data size); does not hold if ConViT learned nothing in a regime where DeiT did;
otherwise two parts, both needed: gap_small = acc(ConViT) - acc(DeiT) with little data above
+2 points, and the growth gap_small - gap_full above 0 (the advantage grows as data shrinks).
Holds if both intervals clear their margins, does not hold if either lies on the wrong side,
else inconclusive. The same gaps against the plain ViT are reported beside it.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import all_parts, chance_rule_each, clears
from attnlab.repro.harness.vision import data_efficiency_study, full_budget, image_model, matched_vit, quick_budget

PAPER = "P11"
CLAIM = ("Gated positional self-attention with a convolutional (local) initialisation makes a ViT more sample "
         "efficient: ConViT beats DeiT, and the gain grows sharply as the training data shrinks.")
SMALL_BATCHES = 10
MIN_GAIN = 2.0  # points

QUICK, FULL = quick_budget(), full_budget(300)

GAP_FULL, GAP_SMALL = "shapes gap full (points)", "shapes gap small (points)"
GROWTH = "shapes gap small - gap full (points)"
VIT_FULL, VIT_SMALL = "shapes gap vs ViT full (points)", "shapes gap vs ViT small (points)"  # context
CHANCE_FULL, CHANCE_SMALL = f"{AT_CHANCE}: shapes", f"{AT_CHANCE}: shapes[{SMALL_BATCHES} batches]"
FIGURES = (GAP_SMALL, GROWTH, GAP_FULL, CHANCE_FULL, CHANCE_SMALL)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    chance = [figures[CHANCE_FULL], figures[CHANCE_SMALL]]
    return chance_rule_each(chance, ("convit", "deit"), counts_against=("convit",)) \
        or all_parts(clears(figures[GAP_SMALL], MIN_GAIN), clears(figures[GROWTH], 0.0))


def _arms(dim: int, depth: int, local: int) -> list[Arm]:
    from attnlab.models.convit import ConViT

    def convit(local_up_to_layer: int):
        return image_model(ConViT, embed_dim=dim, depth=depth, num_heads=4, local_up_to_layer=local_up_to_layer)

    return [Arm("convit", convit(local)), Arm("deit", convit(0)), matched_vit("ViT", convit(local), depth=depth)]


def run(ctx):
    """Train ConViT, DeiT and a matched ViT on full and small data; record ConViT's gaps on shapes."""
    return data_efficiency_study(
        ctx, _arms(*((32, 2, 1) if ctx.quick else (64, 4, 2))), small_batches=SMALL_BATCHES,
        gaps={(GAP_FULL, GAP_SMALL): ("convit", "deit"), (VIT_FULL, VIT_SMALL): ("convit", "ViT")}, growth=GROWTH,
        rule="convit - deit with small data above +2 and above its full-data value holds, either interval on the "
             "wrong side does not", plot="convit", title="ConViT vs ViT")
