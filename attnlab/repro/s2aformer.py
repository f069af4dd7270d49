"""P09 S2AFormer at CPU scale: strip self-attention keeps dense-attention accuracy at a lower cost.

Arms: ``attnlab.models.ViT`` with ``strip_attention`` in every layer (16x16 tokens;
keys/values reduced 2x2 -> 64 tokens by a depthwise stride-2 convolution; queries and
keys compressed to d' = C/8 channels; one head) against the same ViT with dense
softmax attention, width matched to equal parameters; trained on ``digits`` (see
:mod:`attnlab.repro.harness.dense`; ``shapes``, where the dense ViT stayed at chance in every
earlier run, is no longer trained). Only the token mixer changes: the
Hybrid Perception Block around it (depthwise conv, local interaction module) belongs
to the S2AFormer model, not to this comparison of attention mechanisms.

Claimed margin: S2AFormer reports accuracy above efficient-ViT baselines at lower
MACs and latency on GPU and CPU. At this scale we read that as "no more than 1 point
below dense attention". Rule, written before the run: :func:`attnlab.repro.harness.dense.judge` with a margin of 1
point (the strip-attention ViT's test accuracy minus dense's above -1 point and its images/s over dense's
above 1, as 95 % intervals over seeds; a dense ViT at chance makes it inconclusive).
"""
from __future__ import annotations

from attnlab.repro.harness import dense
from attnlab.repro.harness.dense import ceil_div, dense_macs, efficient_vs_dense

PAPER = "P09"
CLAIM = ("Strip self-attention (keys/values spatially reduced, queries/keys channel-compressed) keeps the accuracy "
         "of full self-attention at a much lower cost in MACs and CPU/GPU latency.")

SR_RATIO, HEADS = 2, 1
MARGIN_POINTS = 1.0
QUICK, FULL = dense.quick_budget(), dense.full_budget()
FIGURES = dense.FIGURES
judge = dense.rule(MARGIN_POINTS)


def attn_macs(n: int, c: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(strip, dense) attention-core MACs per image and layer: N M (d' + C) + reduction N C vs 2 N^2 C."""
    m = ceil_div(grid[0], SR_RATIO) * ceil_div(grid[1], SR_RATIO)
    d_qk = max(c // 8, HEADS)
    return n * m * (d_qk + c) + n * c, dense_macs(n, c)


def run(ctx):
    """Train a strip-attention ViT and a dense ViT of equal parameters; record the accuracy gap and the cost."""
    return efficient_vs_dense(ctx, label="strip ViT", mixer="strip_attention", attn_macs=attn_macs,
                              margin=MARGIN_POINTS, mixer_kwargs={"sr_ratio": SR_RATIO, "num_heads": HEADS},
                              title="S2AFormer (strip attention) ViT vs dense ViT")
