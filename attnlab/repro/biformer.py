"""P10 BiFormer at CPU scale: bi-level routing attention keeps dense-attention accuracy at a lower cost.

Arms: ``attnlab.models.ViT`` with ``bilevel_routing`` in every layer (16x16 tokens,
2x2 regions of 8x8 tokens, top-1 routing, LCE 5x5: BiFormer-T's stage-1 setting of
8x8-token regions and top-1, so each query attends to a quarter of the tokens) against
the same ViT with dense softmax attention, width matched to equal parameters; trained on
``digits`` (see :mod:`attnlab.repro.harness.dense`; ``shapes``, where the dense ViT stayed at
chance in every earlier run, is no longer trained).

Claimed margin: BiFormer reports ImageNet accuracy at or above dense-attention and
window-attention baselines of similar size at lower FLOPs (BiFormer-T 81.4% at 2.2
GFLOPs). At this scale we read that as "no more than 1 point below dense attention".
Rule, written before the run: :func:`attnlab.repro.harness.dense.judge` with a margin of 1
point (the BRA ViT's test accuracy minus dense's above -1 point and its images/s over dense's
above 1, as 95 % intervals over seeds; a dense ViT at chance makes it inconclusive).
"""
from __future__ import annotations

from attnlab.repro.harness import dense
from attnlab.repro.harness.dense import ceil_div, dense_macs, efficient_vs_dense

PAPER = "P10"
CLAIM = ("Bi-level routing attention (region-level top-k routing, then token attention over the routed regions, "
         "plus local context enhancement) reaches the accuracy of dense-attention vision transformers at a lower "
         "computational cost.")

N_WIN, TOPK, LCE = 2, 1, 5
MARGIN_POINTS = 1.0
QUICK, FULL = dense.quick_budget(), dense.full_budget()
FIGURES = dense.FIGURES
judge = dense.rule(MARGIN_POINTS)


def attn_macs(n: int, c: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(BRA, dense) attention-core MACs per image and layer: routed token attention + routing + LCE vs 2 N^2 C."""
    regions = N_WIN * N_WIN
    per_region = ceil_div(grid[0], N_WIN) * ceil_div(grid[1], N_WIN)
    bra = 2 * n * min(TOPK, regions) * per_region * c + regions * regions * c + n * c * LCE * LCE
    return bra, dense_macs(n, c)


def run(ctx):
    """Train a BRA ViT and a dense ViT of equal parameters; record the accuracy gap and the cost."""
    return efficient_vs_dense(ctx, label="BRA ViT", mixer="bilevel_routing", attn_macs=attn_macs, margin=MARGIN_POINTS,
                              mixer_kwargs={"n_win": N_WIN, "topk": TOPK, "lce_kernel": LCE},
                              title="BiFormer (bi-level routing) ViT vs dense ViT")
