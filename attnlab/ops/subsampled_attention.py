"""Stochastically subsampled attention (SSA, P28): key sampling, attention over the sampled keys, reference.

Queries are cut into blocks of ``block`` consecutive tokens; every query block attends
only to its own set of sampled key positions, given as ``index`` (B, num_blocks, M)
with a validity mask ``valid`` (B, num_blocks, M) (slots that hold no key). On top
of that the usual causal and key-padding masks apply.

:func:`sample_keys` draws the key sets (P28's two schemes):

* ``"unstructured"``: keys drawn uniformly without replacement. Bidirectional: each
  block draws ``ceil(N / rate)`` of the N keys (with ``block=N`` every query shares one
  subset, the cheapest layout). Causal: each block always keeps its own block
  (so every query sees itself and its block predecessors) plus ``ceil(P / rate)`` of
  the ``P`` earlier keys, uniformly.
* ``"local"`` (locally biased): each block keeps its own block plus ``ceil(P / rate)``
  of the ``P`` other visible keys, drawn without replacement with weights
  ``exp(-d / locality)``, d = distance in tokens from the key to the block, so that
  near keys are kept more often than far ones (attention in language and vision is
  locally biased, which is what P28's locally biased sampling exploits).

:func:`subsampled_attention` gathers the sampled keys/values per query block and runs
one small attention per block (cost O(N * M * D), M ~ N / rate + block), never an
N x N matrix. :func:`subsampled_attention_reference` builds the dense N x N mask
implied by ``index``/``valid`` and runs masked softmax attention.

Reference: Hussain, Zaki, Subramanian, "The Information Pathways Hypothesis:
Transformers are Dynamic Self-Ensembles", KDD 2023.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_choice, check_key_padding_mask, check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import lower_precision_op
from attnlab.ops.attention import attention, attention_reference, check_self_qkv
from attnlab.ops.recording import is_recording, record
from attnlab.ops.bilevel_routing import gather_rows

__all__ = ["sample_keys", "subsampled_attention", "subsampled_attention_reference", "MODES"]

MODES = ("unstructured", "local")


def _gumbel_topk(logits: torch.Tensor, m: int, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of ``m`` draws without replacement with probabilities softmax(logits) (Gumbel-top-k)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
    return torch.topk(logits.double() + gumbel, k=m, dim=-1).indices


def sample_keys(
    batch: int,
    n: int,
    *,
    rate: float,
    block: int,
    mode: str = "unstructured",
    causal: bool = False,
    locality: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the key sets of SSA for ``batch`` sequences of ``n`` tokens (see module doc).

    Args:
        rate: subsampling factor rho >= 1 (keep about 1/rho of the keys outside the own block).
        block: query block size (1 <= block; clipped to n).
        mode: ``"unstructured"`` or ``"local"``.
        causal: only keys at or before the block may be drawn.
        locality: length scale of ``"local"`` in tokens (default ``2 * block``).
        generator: torch.Generator for reproducible draws (default: the global RNG).
    Returns:
        ``index`` (B, num_blocks, M) long and ``valid`` (B, num_blocks, M) bool.
    """
    check_positive_int("batch", batch)
    check_positive_int("n", n)
    check_positive_int("block", block)
    check_choice("mode", mode, MODES)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 1:
        fail("rate", "a number >= 1", describe(rate))
    if locality is not None and (isinstance(locality, bool) or not isinstance(locality, (int, float)) or locality <= 0):
        fail("locality", "a positive number or None", describe(locality))
    block = min(block, n)
    nb = math.ceil(n / block)
    pos = torch.arange(n, device=device)
    start = torch.arange(nb, device=device) * block  # (nb,)
    end = (start + block).clamp(max=n)
    own_block = mode == "local" or causal
    if own_block:
        inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        eligible = ~inside & ((pos[None, :] < start[:, None]) if causal else True)  # (nb, n)
    else:
        eligible = torch.ones(nb, n, dtype=torch.bool, device=device)
    avail = eligible.sum(-1)  # (nb,)
    want = torch.ceil(avail.double() / rate).long()  # (nb,)
    m = int(want.max())
    if mode == "local":
        loc = 2.0 * block if locality is None else float(locality)
        dist = torch.maximum(start[:, None] - pos[None, :], pos[None, :] - (end[:, None] - 1)).clamp(min=0)
        logits = -dist.double() / loc
    else:
        logits = torch.zeros(nb, n, dtype=torch.float64, device=device)
    logits = logits.masked_fill(~eligible, float("-inf")).expand(batch, nb, n)
    if m > 0:
        drawn = _gumbel_topk(logits, m, generator)  # (B, nb, m), best first
        slot_ok = torch.arange(m, device=device)[None, None, :] < want[None, :, None]
        drawn_ok = slot_ok & eligible[None].expand(batch, -1, -1).gather(2, drawn)
    else:
        drawn = torch.zeros(batch, nb, 0, dtype=torch.long, device=device)
        drawn_ok = torch.zeros(batch, nb, 0, dtype=torch.bool, device=device)
    if own_block:
        own = (start[:, None] + torch.arange(block, device=device)[None, :])  # (nb, block)
        own_ok = own < n
        own = own.clamp(max=n - 1)
        index = torch.cat([own[None].expand(batch, -1, -1), drawn], dim=-1)
        valid = torch.cat([own_ok[None].expand(batch, -1, -1), drawn_ok], dim=-1)
    else:
        index, valid = drawn, drawn_ok
    return index.contiguous(), valid.contiguous()


def _check(q, k, v, index, valid, block, key_padding_mask):
    check_self_qkv(q, k, v)
    b, _, n, _ = q.shape
    check_positive_int("block", block)
    nb = math.ceil(n / min(block, n))
    check_tensor("index", index, ndim=3)
    if index.dtype != torch.long or tuple(index.shape[:2]) != (b, nb):
        fail("index", f"a long tensor of shape (B, ceil(N / block), M) = ({b}, {nb}, M)", describe(index))
    check_tensor("valid", valid, ndim=3)
    if valid.dtype != torch.bool or valid.shape != index.shape:
        fail("valid", f"a bool tensor of the shape of index {tuple(index.shape)}", describe(valid))
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
        fail("index", f"key positions in [0, {n})", f"values in [{int(index.min())}, {int(index.max())}]")
    slots = torch.arange(index.shape[-1], device=index.device)
    keys = torch.where(valid, index, -1 - slots).sort(dim=-1).values
    if bool(((keys[..., 1:] == keys[..., :-1]) & (keys[..., 1:] >= 0)).any()):
        fail("index", "distinct key positions among the valid slots of each block", "a repeated position")
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, b, n)
    return min(block, n)


@lower_precision_op
def subsampled_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    valid: torch.Tensor,
    *,
    block: int,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Dense-masked SSA: query i sees key j iff j is a valid sampled key of i's block (and causal/padding allow).

    q, k: (B, H, N, D); v: (B, H, N, Dv); index, valid: (B, ceil(N/block), M). Returns (B, H, N, Dv);
    queries with no visible key give zeros.
    """
    block = _check(q, k, v, index, valid, block, key_padding_mask)
    b, _, n, _ = q.shape
    nb = index.shape[1]
    # invalid slots go to a spare column n, dropped afterwards
    sampled = torch.zeros(b, nb, n + 1, dtype=torch.bool, device=q.device)
    sampled.scatter_(2, torch.where(valid, index, n), True)
    allowed = sampled[:, torch.arange(n, device=q.device) // block, :n]  # (B, N, N)
    out, probs = attention_reference(
        q, k, v, causal=causal, key_padding_mask=key_padding_mask, attn_mask=allowed[:, None], scale=scale,
        return_probs=True,
    )
    if is_recording():
        record(probs)
    return out


@lower_precision_op
def subsampled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    valid: torch.Tensor,
    *,
    block: int,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """SSA by gathering each query block's sampled keys/values (never forms N x N).

    Same arguments and result as :func:`subsampled_attention_reference` (tested against
    it). Inside ``record_attention`` it takes the reference path and records the
    (B, H, N, N) probabilities.
    """
    if is_recording():
        return subsampled_attention_reference(
            q, k, v, index, valid, block=block, causal=causal, key_padding_mask=key_padding_mask, scale=scale
        )
    block = _check(q, k, v, index, valid, block, key_padding_mask)
    b, nh, n, d = q.shape
    nb, m = index.shape[1], index.shape[2]
    pad = nb * block - n
    q_blk = F.pad(q, (0, 0, 0, pad)) if pad else q
    q_blk = q_blk.reshape(b, nh, nb, block, d)
    # Causal key sets grow with the block index: attend in a few contiguous groups of blocks, each padded only
    # to its own largest key count (slots past the last valid one are dropped) instead of the global maximum.
    last = (valid * torch.arange(1, m + 1, device=q.device)).amax(dim=(0, 2)) if m else torch.zeros(nb, dtype=torch.long)
    parts = 1 if int(last.min()) == int(last.max()) else min(4, nb)
    bounds = [round(i * nb / parts) for i in range(parts + 1)]
    outs = []
    for s0, s1 in zip(bounds[:-1], bounds[1:]):
        mg = max(int(last[s0:s1].max()), 1) if m else 0
        outs.append(_attend_blocks(q_blk[:, :, s0:s1], k, v, index[:, s0:s1, :mg], valid[:, s0:s1, :mg], s0 * block,
                                   causal, key_padding_mask, scale))
    out = torch.cat(outs, dim=2).reshape(b, nh, nb * block, v.shape[-1])
    return out[:, :, :n] if pad else out


def _attend_blocks(q_blk, k, v, index, valid, first_pos, causal, key_padding_mask, scale):
    """Attention of query blocks q_blk (B, H, g, block, D) over their gathered keys -> (B, H, g, block, Dv)."""
    b, nh, g, block, d = q_blk.shape
    n, dv = k.shape[2], v.shape[-1]
    m = index.shape[2]
    flat = (index + torch.arange(b, device=q_blk.device)[:, None, None] * n).reshape(-1)

    def gather(t: torch.Tensor, dim: int) -> torch.Tensor:
        # (B, H, N, dim) -> (B*g, H, M, dim): the sampled keys of every query block
        sel = gather_rows(t.transpose(1, 2).reshape(b * n, nh * dim), flat)
        return sel.reshape(b * g, m, nh, dim).transpose(1, 2)

    k_sel, v_sel = gather(k, d), gather(v, dv)
    q_g = q_blk.transpose(1, 2).reshape(b * g, nh, block, d)
    ok = valid
    if key_padding_mask is not None:
        ok = ok & key_padding_mask.gather(1, index.reshape(b, -1)).reshape(b, g, m)
    mask = ok[:, :, None, :]  # (B, g, 1, M)
    if causal:
        qpos = first_pos + torch.arange(g * block, device=q_blk.device).reshape(g, block)
        mask = mask & (index[:, :, None, :] <= qpos[None, :, :, None])  # (B, g, block, M)
    if causal or not bool(mask.all()):
        mask = mask.expand(b, g, block, m).reshape(b * g, 1, block, m)
    else:
        mask = None  # every sampled key visible to every query: plain SDPA, no mask
    out = attention(q_g, k_sel, v_sel, attn_mask=mask, scale=scale)
    return out.reshape(b, g, nh, block, dv).transpose(1, 2)
