"""P19 Axial attention at CPU scale: accuracy of dense attention at a lower cost.

Arms: ``attnlab.models.ViT`` with the ``axial`` mixer in every layer (16 x 16 tokens;
rows then columns, one layer's q/k/v shared by both passes, so exactly the parameters of
softmax attention) against the same ViT with dense softmax attention, width matched to
equal parameters (here: equal width); trained on ``digits`` (upsampled to 32 px, patch 2)
(see :mod:`attnlab.repro.harness.dense`).

Claimed margin: the paper reports that Axial Transformers reach the state of the art
(on par with or better than full-attention autoregressive models, e.g. 3.76 bits/dim on
ImageNet-32) while attention costs O(N (H + W)) instead of O(N^2). At this scale we read
that as "no more than 1 point of accuracy below dense attention".

Rule, written before the run: :func:`attnlab.repro.harness.dense.judge` with a margin of 1
point (the axial ViT's test accuracy minus dense's above -1 point and its images/s over dense's
above 1, as 95 % intervals over seeds; a dense ViT at chance makes it inconclusive).
The masked (autoregressive) form of P19 is tested in the mixer tests (exactly raster-causal
with full context), not trained here.
"""
from __future__ import annotations

from attnlab.repro.harness import dense
from attnlab.repro.harness.dense import dense_macs, efficient_vs_dense

PAPER = "P19"
CLAIM = ("Axial attention (self-attention along one axis of the tensor at a time, the axes in turn) keeps the "
         "expressiveness and accuracy of full self-attention on images while costing O(N (H + W)) instead of O(N^2).")

MARGIN_POINTS = 1.0
# digits only: in the first full run (250 steps, shapes + digits) neither ViT left chance on
# shapes at 16x16 tokens (12.2% both, chance 12.5%), so shapes judged nothing.
QUICK, FULL = dense.quick_budget(), dense.full_budget()
FIGURES = dense.FIGURES
judge = dense.rule(MARGIN_POINTS)


def attn_macs(n: int, c: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(axial, dense) attention-core MACs per image and layer: a row pass and a column pass vs 2 N^2 C."""
    axial = 2 * n * grid[1] * c + 2 * n * grid[0] * c
    return axial, dense_macs(n, c)


def run(ctx):
    """Train an axial ViT and a dense ViT of equal parameters; record the accuracy gap and the cost."""
    return efficient_vs_dense(ctx, label="axial ViT", mixer="axial", mixer_kwargs={}, attn_macs=attn_macs,
                              margin=MARGIN_POINTS, title="Axial-attention ViT vs dense ViT")
