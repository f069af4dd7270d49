"""Ring attention: exact softmax attention over a sequence sharded across processes.

Each of W ranks holds a contiguous block of the sequence (queries, keys and values of its tokens).
Key/value blocks travel around the ring (send to rank+1, receive from rank-1) while each rank folds
them into its output with log-sum-exp weights, so no rank ever holds the full sequence or an N x N
matrix. Each (query block, key block) pair runs through torch's CPU flash-attention kernel
(``aten::_scaled_dot_product_flash_attention_for_cpu``, which returns the block's log-normaliser),
so memory per rank is O((N/W) * D). The backward pass sends (k, v, dk, dv) around the ring once more
and calls the kernel's backward with the global output and log-normaliser, so each key block's
gradient returns to its owner. Communication per rank and step: W - 1 passes of (k, v) forward, W - 1
of (k, v, dk, dv) and one of (dk, dv) backward, each tensor B * H * N/W * D elements. Causal masking
skips blocks from later ranks entirely; a key-padding mask is gathered once (B x N booleans) and
applied per block; rows with no visible key give zeros.

The result equals :func:`attnlab.ops.attention_reference` on the gathered sequence (tested with 2
gloo processes, fp64 / fp32 / bf16, causal and not, with padding). Layout (B, H, N/W, D) per rank.
Motivation: P06 (distributed multi-head attention towards million-scale dependencies); algorithm
after Liu et al. 2023 (Ring Attention).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from attnlab.distributed.comm import all_gather_cat, default_heads_per_chunk, head_chunks, ring_pass
from attnlab.ops.attention import check_attention_options, check_qkv
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["ring_attention", "shard_sequence", "gather_sequence", "check_sequence_parallel_call"]

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def check_sequence_parallel_call(q, k, v, key_padding_mask, scale, dropout_p) -> float:
    """Checks shared by the sequence-parallel attentions: an initialised process group, q/k/v of one shape
    (self-attention on a sharded sequence), a (B, N/W) mask, no dropout. Returns the logit scale."""
    if not dist.is_available() or not dist.is_initialized():
        fail("group", "an initialised torch.distributed process group (call init_process_group first)", "none")
    check_qkv(q, k, v)
    if k.shape[2] != q.shape[2]:
        fail("k", f"as many tokens per rank as q ({q.shape[2]}): a sharded self-attention", tuple(k.shape))
    if dropout_p:
        fail("dropout_p", "0 (sequence-parallel attention has no attention dropout)", dropout_p)
    return check_attention_options(q, k.shape[2], key_padding_mask, scale)


def _block_mask(kpm_block: torch.Tensor | None, dtype) -> torch.Tensor | None:
    """A (B, n_k) key mask as the kernel's additive (B, 1, 1, n_k) float mask (0 or -inf)."""
    if kpm_block is None:
        return None
    return torch.zeros(kpm_block.shape, dtype=dtype).masked_fill_(~kpm_block, float("-inf"))[:, None, None, :]


def _has_visible_key(kpm_block: torch.Tensor | None, diagonal: bool, n: int) -> torch.Tensor | None:
    """(B, 1, n) bool: whether each query row sees at least one key of the block (None: every row does)."""
    if kpm_block is None:
        return None
    seen = kpm_block.cumsum(-1) > 0 if diagonal else kpm_block.any(-1, keepdim=True).expand(-1, n)
    return seen[:, None, :]


def _steps(causal: bool, rank: int, world: int):
    """(step, source rank, diagonal?, skip?) of each ring step: at step s a rank holds rank-s's keys."""
    for step in range(world):
        src = (rank - step) % world
        yield step, src, src == rank, causal and src > rank


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _forward_heads(q, k, v, out, lse, kpm_full, causal, scale, group) -> None:
    """The W ring steps for one group of heads: fold every key block into ``out`` / ``lse`` (views, in place)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    n = q.shape[2]
    kb, vb = k, v
    for step, src, diagonal, skip in _steps(causal, rank, world):
        if not skip:
            kpm_b = kpm_full[:, src * n:(src + 1) * n] if kpm_full is not None else None
            o_b, lse_b = _flash(q, kb, vb, 0.0, causal and diagonal, attn_mask=_block_mask(kpm_b, q.dtype),
                                scale=scale)
            visible = _has_visible_key(kpm_b, causal and diagonal, n)
            lse_b = lse_b.to(lse.dtype)
            if visible is not None:  # a row that sees nothing in this block adds no weight (the kernel says lse 0)
                lse_b = lse_b.masked_fill(~visible, float("-inf"))
                o_b = o_b.masked_fill(~visible[..., None], 0.0)
            new = torch.logaddexp(lse, lse_b)
            safe = new.masked_fill(torch.isneginf(new), 0.0)
            out.mul_(torch.exp(lse - safe)[..., None]).add_(o_b.to(out.dtype).mul_(torch.exp(lse_b - safe)[..., None]))
            lse.copy_(new)
            del o_b
        if step < world - 1:
            kb, vb = ring_pass([kb, vb], group)


def _backward_heads(dout, q, k, v, out, lse, kpm_full, causal, scale, group, dq, dk, dv) -> None:
    """The backward ring for one group of heads: accumulate into ``dq`` and leave each key block's gradient in
    ``dk`` / ``dv`` (views) at its owner."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    n = q.shape[2]
    kb, vb = k, v
    dkb, dvb = torch.zeros(k.shape, dtype=dk.dtype), torch.zeros(v.shape, dtype=dv.dtype)
    for step, src, diagonal, skip in _steps(causal, rank, world):
        if not skip:
            kpm_b = kpm_full[:, src * n:(src + 1) * n] if kpm_full is not None else None
            g_q, g_k, g_v = _flash_backward(dout, q, kb, vb, out, lse, 0.0, causal and diagonal,
                                            attn_mask=_block_mask(kpm_b, q.dtype), scale=scale)
            dq += g_q
            dkb += g_k
            dvb += g_v
            del g_q, g_k, g_v
        # W rotations of (dk, dv) in total, so each block's gradient ends at its owner; k, v need only W - 1
        if step < world - 1:
            kb, vb, dkb, dvb = ring_pass([kb, vb, dkb, dvb], group)
        else:
            dkb, dvb = ring_pass([dkb, dvb], group)
    dk.copy_(dkb)
    dv.copy_(dvb)


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, kpm, group, per_chunk):
        kpm_full = all_gather_cat(kpm, 1, group) if kpm is not None else None
        acc = _accumulator(q.dtype)
        lse = torch.full(q.shape[:3], float("-inf"), dtype=acc)
        out = torch.zeros(q.shape[:3] + (v.shape[-1],), dtype=acc)
        for hs in head_chunks(q.shape[1], per_chunk):
            _forward_heads(q[:, hs].contiguous(), k[:, hs].contiguous(), v[:, hs].contiguous(), out[:, hs],
                           lse[:, hs], kpm_full, causal, scale, group)
        out = out.to(q.dtype)
        # rows that saw no key: +inf turns every exp(s - lse) of the backward into 0
        lse.masked_fill_(torch.isneginf(lse), float("inf"))
        ctx.save_for_backward(q, k, v, out, lse, kpm_full if kpm_full is not None else torch.empty(0))
        ctx.causal, ctx.scale, ctx.group, ctx.has_kpm, ctx.per_chunk = causal, scale, group, kpm is not None, per_chunk
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, kpm_full = ctx.saved_tensors
        kpm_full = kpm_full if ctx.has_kpm else None
        dout = dout.to(q.dtype)
        acc = _accumulator(q.dtype)
        dq, dk, dv = torch.zeros(q.shape, dtype=acc), torch.empty(k.shape, dtype=acc), torch.empty(v.shape, dtype=acc)
        for hs in head_chunks(q.shape[1], ctx.per_chunk):
            _backward_heads(dout[:, hs].contiguous(), q[:, hs].contiguous(), k[:, hs].contiguous(),
                            v[:, hs].contiguous(), out[:, hs].contiguous(), lse[:, hs].contiguous(), kpm_full,
                            ctx.causal, ctx.scale, ctx.group, dq[:, hs], dk[:, hs], dv[:, hs])
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


def ring_attention(
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
    """Softmax attention over a sequence sharded contiguously across the ranks of ``group``.

    Args:
        q, k, v: this rank's block, (B, H, n, D) with n = N / world_size, the same n on every rank
            (rank r holds tokens [r*n, (r+1)*n)).
        causal: token i sees tokens <= i of the whole sequence.
        key_padding_mask: this rank's block of the (B, N) mask, (B, n) bool, True = real token.
        scale: logit scale, default D^-1/2.
        dropout_p: must be 0 (accepted so that the function can stand in for ``ops.attention``).
        group: process group (default: the world).
        heads_per_chunk: heads whose ring runs at once (default :func:`heads_per_chunk`: blocks of about
            2 MiB); the rotating blocks and the kernel's buffers scale with it, the result does not.
    Returns:
        This rank's block of the output, (B, H, n, Dv). Differentiable. bf16 inputs run through the kernel
        in bf16 and are combined in fp32.
    """
    scale = check_sequence_parallel_call(q, k, v, key_padding_mask, scale, dropout_p)
    per_chunk = heads_per_chunk if heads_per_chunk is not None else default_heads_per_chunk(q)
    check_positive_int("heads_per_chunk", per_chunk)
    return _RingAttention.apply(q, k, v, bool(causal), scale, key_padding_mask, group, per_chunk)


def shard_sequence(x: torch.Tensor, dim: int = 2, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This rank's contiguous block of ``x`` along ``dim`` (N must divide by the world size)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if x.shape[dim] % world:
        fail("x", f"a length along dim {dim} divisible by the world size {world}", tuple(x.shape))
    return x.chunk(world, dim=dim)[rank].contiguous()


def gather_sequence(x: torch.Tensor, dim: int = 2, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate every rank's block along ``dim`` (not differentiable; for checks and outputs)."""
    return all_gather_cat(x, dim, group)
