"""Differentiable collectives the parallel attention and training code share (torch.distributed, any backend).

- :func:`all_to_all`: split a tensor along one dimension across the ranks and concatenate what
  arrives along another (Ulysses' sequence-shard <-> head-shard exchange); its backward is the
  inverse exchange.
- :func:`gather_for_loss`: concatenate every rank's block along a dimension so that a loss can be
  computed on the whole batch on every rank; the backward keeps this rank's block of the gradient,
  scaled so that DistributedDataParallel's gradient average gives the exact single-process gradient.
- :func:`all_gather_cat`: the same concatenation without autograd (masks, results).
- :func:`ring_pass`: send tensors to the next rank and receive the previous rank's.

All of them assume every rank passes tensors of the same shape.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_to_all", "gather_for_loss", "all_gather_cat", "ring_pass", "group_peer", "head_chunks",
           "default_heads_per_chunk", "CHUNK_BYTES"]

#: the size a head chunk's (B, heads, n, D) block aims at: the parallel attentions work on this many bytes of
#: heads at a time, so their transient buffers stay small next to the inputs and outputs
CHUNK_BYTES = 2 * 2**20


def head_chunks(num_heads: int, per_chunk: int) -> list[slice]:
    """Slices of ``per_chunk`` consecutive heads covering ``num_heads`` (the last may be shorter)."""
    return [slice(i, min(i + per_chunk, num_heads)) for i in range(0, num_heads, per_chunk)]


def default_heads_per_chunk(x: torch.Tensor) -> int:
    """Heads per chunk so that one chunk of ``x`` (B, H, n, D) holds about :data:`CHUNK_BYTES` (at least 1 head)."""
    per_head = x.shape[0] * x.shape[2] * x.shape[3] * x.element_size()
    return max(1, min(x.shape[1], CHUNK_BYTES // max(per_head, 1)))


def group_peer(group: dist.ProcessGroup | None, group_rank: int) -> int:
    """The global rank of ``group_rank`` in ``group`` (the world: itself)."""
    return group_rank if group is None else dist.get_global_rank(group, group_rank)


def all_gather_cat(x: torch.Tensor, dim: int, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Every rank's ``x`` concatenated along ``dim`` in rank order (not differentiable)."""
    world = dist.get_world_size(group)
    if world == 1:
        return x
    # gloo has no bool collectives: bools travel as uint8
    send = x.to(torch.uint8) if x.dtype == torch.bool else x
    parts = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(parts, send.contiguous(), group=group)
    return torch.cat(parts, dim=dim).to(x.dtype)


def ring_pass(tensors: list[torch.Tensor], group: dist.ProcessGroup | None = None) -> list[torch.Tensor]:
    """Send ``tensors`` to rank+1 of ``group`` and return what rank-1 sent (same shapes)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if world == 1:
        return tensors
    send_to, recv_from = group_peer(group, (rank + 1) % world), group_peer(group, (rank - 1) % world)
    received = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t.contiguous(), send_to, group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, r, recv_from, group) for r in received]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return received


def _exchange(x: torch.Tensor, scatter_dim: int, gather_dim: int, group) -> torch.Tensor:
    world = dist.get_world_size(group)
    if world == 1:
        return x
    send = [c.contiguous() for c in x.chunk(world, dim=scatter_dim)]
    recv = [torch.empty_like(send[0]) for _ in range(world)]
    dist.all_to_all(recv, send, group=group)
    return torch.cat(recv, dim=gather_dim)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scatter_dim, gather_dim, group):
        ctx.dims, ctx.group = (scatter_dim, gather_dim), group
        return _exchange(x, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx, grad):
        scatter_dim, gather_dim = ctx.dims
        return _exchange(grad, gather_dim, scatter_dim, ctx.group), None, None, None


def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: dist.ProcessGroup | None = None):
    """Split ``x`` into W chunks along ``scatter_dim`` (chunk r goes to rank r) and concatenate the chunks
    received from ranks 0..W-1 along ``gather_dim``. Differentiable (the backward is the inverse exchange).

    E.g. Ulysses: (B, H, N/W, D) with ``scatter_dim=1, gather_dim=2`` -> (B, H/W, N, D). ``x.shape[scatter_dim]``
    must divide by W (the callers check it with a clear error first).
    """
    return _AllToAll.apply(x, scatter_dim, gather_dim, group)


class _GatherForLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, group):
        ctx.dim, ctx.group = dim, group
        ctx.rank, ctx.world, ctx.size = dist.get_rank(group), dist.get_world_size(group), x.shape[dim]
        return all_gather_cat(x, dim, group)

    @staticmethod
    def backward(ctx, grad):
        own = grad.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size)
        return own * ctx.world, None, None


def gather_for_loss(x: torch.Tensor, dim: int, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Every rank's block of ``x`` concatenated along ``dim``, for a loss computed identically on every rank.

    Backward: this rank's block of the (identical) upstream gradient times the world size W. Each rank's
    parameter gradients are then W times its share of the full gradient, and the average over ranks that
    DistributedDataParallel takes is exactly the single-process gradient of the whole batch.
    """
    if dist.get_world_size(group) == 1:
        return x
    return _GatherForLoss.apply(x, dim, group)
