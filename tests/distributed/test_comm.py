"""The differentiable collectives on 2 gloo ranks (from the shared attention session): values and gradients
checked against hand-built expectations."""
from __future__ import annotations

import torch


def _rank_input(rank):
    return torch.arange(2 * 4 * 3, dtype=torch.float64).reshape(1, 4, 3, 2) + 100 * rank


def test_all_to_all_moves_head_blocks_to_their_rank(parallel_attention_all_ranks):
    for res in (r["comm"] for r in parallel_attention_all_ranks):
        rank = res["rank"]
        # rank r receives heads [2r, 2r+2) of every rank's block, concatenated along the sequence in rank order
        want = torch.cat([_rank_input(src)[:, 2 * rank:2 * rank + 2] for src in range(2)], dim=2)
        assert torch.equal(res["y"], want)


def test_all_to_all_backward_is_the_inverse_exchange(parallel_attention_all_ranks):
    # upstream gradient on rank r's output = arange over its (1, 2, 6, 2) output; element (h, s) of rank src's
    # input went to rank h // 2, position (h % 2, src * 3 + s)
    up = torch.arange(24, dtype=torch.float64).reshape(1, 2, 6, 2)
    for res in (r["comm"] for r in parallel_attention_all_ranks):
        src = res["rank"]
        want = torch.cat([up[:, :, src * 3:(src + 1) * 3] for _dest in range(2)], dim=1)
        assert torch.equal(res["x_grad"], want)


def test_gather_for_loss_gathers_and_scales_the_own_gradient(parallel_attention_all_ranks):
    for res in (r["comm"] for r in parallel_attention_all_ranks):
        rank, world = res["rank"], res["world"]
        assert torch.equal(res["g"], torch.cat([torch.full((2, 3), float(r + 1)) for r in range(world)]))
        own = torch.arange(12, dtype=torch.float32).reshape(4, 3)[2 * rank:2 * rank + 2]
        assert torch.equal(res["z_grad"], own * world)
