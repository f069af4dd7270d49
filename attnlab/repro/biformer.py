"""P10 BiFormer at CPU scale: bi-level routing attention keeps dense-attention accuracy at a lower cost.

Arms: ``attnlab.models.ViT`` with ``bilevel_routing`` in every layer (16x16 tokens,
2x2 regions of 8x8 tokens, top-1 routing, LCE 5x5: BiFormer-T's stage-1 setting of
8x8-token regions and top-1, so each query attends to a quarter of the tokens) against the same ViT with dense softmax attention, width matched to
equal parameters; trained on ``shapes`` and ``digits`` (see
``attnlab.repro._mixer_vs_dense``).

Claimed margin: BiFormer reports ImageNet accuracy at or above dense-attention and
window-attention baselines of similar size at lower FLOPs (BiFormer-T 81.4% at 2.2
GFLOPs). At this scale we read that as "no more than 1 point below dense attention".
Rule (``_mixer_vs_dense.judge``): holds if the BRA ViT trains faster (images/s) on
both tasks and its accuracy, averaged over tasks and seeds, is at most 1 point below
the dense ViT's; does not hold if it is not faster or is more than 1 point + seed
noise below; inconclusive if the gap lies within noise or the dense ViT learned no
task (tasks it did not learn, accuracy < chance + 10 points, are reported, not judged). Attention MACs are reported beside.
"""
from __future__ import annotations

from attnlab.repro._mixer_vs_dense import Budget, ceil_div, compare, dense_macs
from attnlab.repro.base import ReproContext, ReproOutcome

PAPER = "P10"
CLAIM = ("Bi-level routing attention (region-level top-k routing, then token attention over the routed regions, "
         "plus local context enhancement) reaches the accuracy of dense-attention vision transformers at a lower "
         "computational cost.")

N_WIN, TOPK, LCE = 2, 1, 5
QUICK = Budget(steps=8, batch_size=16, eval_batches=2, eval_batch_size=32, seeds=(0,), tasks=("shapes",),
               bench_repeats=1)
FULL = Budget(steps=250, batch_size=32, lr=2e-3, eval_batches=8, seeds=(0, 1), tasks=("shapes", "digits"),
              task_seeds={"digits": (0,)}, bench_repeats=5)


def attn_macs(n: int, c: int, grid: tuple[int, int]) -> tuple[int, int]:
    """(BRA, dense) attention-core MACs per image and layer: routed token attention + routing + LCE vs 2 N^2 C."""
    regions = N_WIN * N_WIN
    per_region = ceil_div(grid[0], N_WIN) * ceil_div(grid[1], N_WIN)
    bra = 2 * n * min(TOPK, regions) * per_region * c + regions * regions * c + n * c * LCE * LCE
    return bra, dense_macs(n, c)


def run(ctx: ReproContext) -> ReproOutcome:
    """Train a BRA ViT and a dense ViT of equal parameters on shapes and digits; judge accuracy at cost."""
    measured, verdict, summary, plots = compare(
        ctx, label="BRA ViT", mixer="bilevel_routing",
        mixer_kwargs={"n_win": N_WIN, "topk": TOPK, "lce_kernel": LCE}, attn_macs=attn_macs, quick=QUICK, full=FULL,
        title="BiFormer (bi-level routing) ViT vs dense ViT",
    )
    return ReproOutcome(measured, verdict, summary, plots)
