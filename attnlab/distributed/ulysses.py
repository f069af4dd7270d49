"""Ulysses sequence parallelism: all-to-all from sequence shards to head shards, local attention, and back.

Each of W ranks holds a contiguous block of N/W tokens for all H heads. One all-to-all (q, k and v
together) gives every rank the whole sequence for H/W heads; it runs softmax attention on them
(torch's CPU flash kernel, ``aten::_scaled_dot_product_flash_attention_for_cpu``: O(N) memory), and a
second all-to-all returns each rank its own tokens for all heads. The rank's heads go through this a
chunk at a time (``heads_per_chunk``), and the backward pass exchanges q, k, v (with the output and its
gradient) again rather than keeping their head layout, so a rank holds little beyond its own blocks.
Communication per rank and step, with E = B * H * N/W * D: 4 E (W-1)/W elements sent forward (q, k, v,
output) and 8 E (W-1)/W backward (q, k, v, output, its gradient; dq, dk, dv). H must divide by W.

After Jacobs et al. 2023 (DeepSpeed-Ulysses); the unified hybrid with ring attention is
:mod:`attnlab.distributed.hybrid`. Motivation: P06.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from attnlab.distributed.comm import all_gather_cat, all_to_all, default_heads_per_chunk, head_chunks
from attnlab.distributed.ring_attention import check_sequence_parallel_call
from attnlab.utils.checks import check_positive_int, fail

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward

__all__ = ["ulysses_attention", "check_heads_divisible", "sequence_to_heads", "heads_to_sequence"]


def check_heads_divisible(num_heads: int, world: int, what: str = "q") -> None:
    """ValueError unless ``num_heads`` divides by ``world`` (Ulysses gives every rank H / W whole heads)."""
    if num_heads % world:
        fail(what, f"a head count divisible by the {world} ranks of the Ulysses group (each rank takes whole heads)",
             f"{num_heads} heads")


def sequence_to_heads(q, k, v, group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, N/W, D) sequence shards of q, k, v -> (B, H/W, N, D) head shards, in one all-to-all (two when v's
    head dim differs from q's)."""
    if v.shape == q.shape:
        return all_to_all(torch.stack([q, k, v]), scatter_dim=2, gather_dim=3, group=group).unbind(0)
    qh, kh = all_to_all(torch.stack([q, k]), scatter_dim=2, gather_dim=3, group=group).unbind(0)
    return qh, kh, all_to_all(v, scatter_dim=1, gather_dim=2, group=group)


def heads_to_sequence(out: torch.Tensor, group) -> torch.Tensor:
    """(B, H/W, N, D) head shard -> (B, H, N/W, D) sequence shard (the inverse all-to-all)."""
    return all_to_all(out, scatter_dim=2, gather_dim=1, group=group)


def _visible_rows(kpm_full: torch.Tensor | None, causal: bool) -> torch.Tensor | None:
    """(B, 1, N) bool: rows that see at least one key (None: all of them)."""
    if kpm_full is None:
        return None
    seen = kpm_full.cumsum(-1) > 0 if causal else kpm_full.any(-1, keepdim=True).expand_as(kpm_full)
    return seen[:, None, :]


def _gather_heads(tensors: list[torch.Tensor], heads: slice, group) -> list[torch.Tensor]:
    """Sequence shards (B, H, n, D) -> head layout (B, g, N, D) for heads ``heads`` of this rank's H/W block (rank
    d is sent its block's heads ``heads`` of this rank's n tokens). One all-to-all per tensor, received straight
    into the head layout (no further copy when B * g == 1)."""
    world = dist.get_world_size(group)
    out = []
    for t in tensors:  # (inputs owned by the caller: nothing to free here)
        b, h, n, d = t.shape
        per_rank = h // world
        send = [t[:, r * per_rank + heads.start:r * per_rank + heads.stop].contiguous() for r in range(world)]
        buf = t.new_empty(world, b, heads.stop - heads.start, n, d)
        dist.all_to_all(list(buf.unbind(0)), send, group=group)
        del send
        out.append(buf.permute(1, 2, 0, 3, 4).reshape(b, heads.stop - heads.start, world * n, d))
    return out


def _scatter_heads(tensors: list[torch.Tensor], heads: slice, group, outs: list[torch.Tensor]) -> None:
    """Head layout (B, g, N, D) -> this rank's tokens of those heads of every rank's block, received straight into
    ``outs`` (B, H, n, D) (the inverse of :func:`_gather_heads`). Empties ``tensors`` as it goes (each head-layout
    tensor is freed once sent)."""
    world = dist.get_world_size(group)
    for out in outs:
        x = tensors.pop(0)
        n, per_rank = out.shape[2], out.shape[1] // world
        send = [x[:, :, r * n:(r + 1) * n].contiguous() for r in range(world)]
        targets = [out[:, r * per_rank + heads.start:r * per_rank + heads.stop] for r in range(world)]
        recv = [t if t.is_contiguous() else torch.empty_like(t) for t in targets]
        dist.all_to_all(recv, send, group=group)
        del send, x
        for t, r in zip(targets, recv):
            if r is not t:
                t.copy_(r)


class _Ulysses(torch.autograd.Function):
    """Ulysses attention, a chunk of heads at a time; the backward exchanges q, k, v again instead of keeping
    their head layout (memory per rank: its own blocks and one chunk's exchange buffers)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, scale, kpm, group, per_chunk):
        world = dist.get_world_size(group)
        kpm_full = all_gather_cat(kpm, 1, group) if kpm is not None else None
        mask = _additive_mask(kpm_full, q.dtype)
        visible = _visible_rows(kpm_full, causal)
        out = torch.empty(q.shape[:3] + (v.shape[-1],), dtype=q.dtype)
        lse = torch.empty(q.shape[0], q.shape[1] // world, q.shape[2] * world,
                          dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
        for hs in head_chunks(q.shape[1] // world, per_chunk):
            qh, kh, vh = _gather_heads([q, k, v], hs, group)
            o_h, l_h = _flash(qh, kh, vh, 0.0, causal, attn_mask=mask, scale=scale)
            del qh, kh, vh
            if visible is not None:  # rows that see no key: output 0, and +inf so the backward gives them 0
                o_h = o_h.masked_fill(~visible[..., None], 0.0)
                l_h = l_h.masked_fill(~visible, float("inf"))
            lse[:, hs] = l_h
            del l_h
            _scatter_heads([o_h], hs, group, [out])
            del o_h
        ctx.save_for_backward(q, k, v, out, lse, kpm_full if kpm_full is not None else torch.empty(0))
        ctx.causal, ctx.scale, ctx.group, ctx.per_chunk, ctx.has_kpm = causal, scale, group, per_chunk, kpm is not None
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, kpm_full = ctx.saved_tensors
        group = ctx.group
        mask = _additive_mask(kpm_full if ctx.has_kpm else None, q.dtype)
        dout = dout.to(q.dtype)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for hs in head_chunks(q.shape[1] // dist.get_world_size(group), ctx.per_chunk):
            gathered = _gather_heads([dout, q, k, v, out], hs, group)
            grads = list(_flash_backward(*gathered, lse[:, hs].contiguous(), 0.0, ctx.causal, attn_mask=mask,
                                         scale=ctx.scale))
            del gathered
            _scatter_heads(grads, hs, group, [dq, dk, dv])
        return dq, dk, dv, None, None, None, None, None


def _additive_mask(kpm_full: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """A (B, N) key mask as the flash kernel's additive (B, 1, 1, N) mask (0 or -inf)."""
    if kpm_full is None:
        return None
    return torch.zeros(kpm_full.shape, dtype=dtype).masked_fill_(~kpm_full, float("-inf"))[:, None, None, :]


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    group: dist.ProcessGroup | None = None,
    heads_per_chunk: int | None = None,
) -> torch.Tensor:
    """Softmax attention over a sequence sharded contiguously across the ranks of ``group`` (Ulysses).

    Args:
        q, k, v: this rank's block of the sequence, (B, H, n, D) with n = N / W on every rank; H % W == 0; v of
            q's head dim.
        causal: token i sees tokens <= i of the whole sequence.
        key_padding_mask: this rank's block of the (B, N) mask, (B, n) bool, True = real token.
        scale: logit scale, default D^-1/2.
        dropout_p: must be 0.
        group: process group (default: the world).
        heads_per_chunk: heads of this rank's H/W exchanged and computed at once (default: blocks of about 2 MiB
            of the whole sequence); transient memory scales with it, the result does not.
    Returns:
        This rank's block of the output, (B, H, n, D); equal to single-process attention on the gathered
        sequence. Differentiable.
    """
    scale = check_sequence_parallel_call(q, k, v, key_padding_mask, scale, dropout_p)
    world = dist.get_world_size(group)
    check_heads_divisible(q.shape[1], world)
    if v.shape != q.shape:
        fail("v", f"the shape of q {tuple(q.shape)} (Ulysses exchanges q, k, v together)", tuple(v.shape))
    if heads_per_chunk is None:  # sized on the whole sequence, which the head layout holds
        heads_per_chunk = default_heads_per_chunk(q.new_empty(q.shape[0], q.shape[1] // world, q.shape[2] * world,
                                                              q.shape[3]))
    check_positive_int("heads_per_chunk", heads_per_chunk)
    return _Ulysses.apply(q.contiguous(), k.contiguous(), v.contiguous(), bool(causal), scale, key_padding_mask,
                          group, heads_per_chunk)
