"""Combiner (P03: Ren et al., NeurIPS 2021): full attention at sparse cost, fast paths and references.

Combiner treats attention as a conditional expectation ``out_i = E_{p(j|i)}[v_j]`` and
factorises the distribution. The keys a query may see are split into a *direct* part
Omega_i^0 and regions Omega_i^r; each region is reached through one abstraction
(key ``k_r``, value ``v_r = E_{q(j|Omega_r)}[v_j]``), and **one** softmax runs over the
direct logits and the abstraction logits together:

    p(j | i) = exp(q_i.k_j) / Z_i                          for j in Omega_i^0
    p(j | i) = exp(q_i.k_r) / Z_i * q(j | Omega_r)         for j in Omega_i^r
    Z_i      = sum_{j in Omega_i^0} exp(q_i.k_j) + sum_r exp(q_i.k_r)

(logits scaled by ``scale``, default D^-1/2). Every key is covered by the direct part
or by a region, so every (i, j) allowed by causality gets non-zero probability: full
attention support.

Two factorisations (the paper's section 4), segment / row length ``s`` (about sqrt(N)):

* **Fixed** (:func:`combiner_fixed`): segments of ``s`` tokens. Direct part: the
  query's own segment (keys j <= i when causal). Regions: the other segments
  (only the earlier ones when causal). Abstraction of segment r: key = elementwise
  max of its keys, value = softmax(q_r K_r^T * scale) V_r with q_r the elementwise
  max of its queries (the official code's max pooling).
* **Axial** (:func:`combiner_axial`): rows of ``s`` tokens. Direct part: the query's
  own row (keys j <= i when causal). Regions: the other rows (only earlier rows when
  causal), reached through the *column* of the query: the abstraction of row r seen
  from column c is the row attention of token (r, c), q(j | row r) =
  softmax_j(q_(r,c).k_j * scale) over row r, with value E_q[v_j] and key E_q[k_j]
  (the official ``row_summary='wsum'`` option, parameter-free). Axial attention's
  row + column pattern, with each column entry replaced by an expectation over its row.

Per query the fast paths compute s direct and N/s abstraction logits: O(N sqrt N) time,
O(N sqrt N) memory, never N x N. N need not be a multiple of ``s`` (padded inside).
The references build the full (B, H, N, N) factorised matrix P from the formulas
above, explicitly, and return ``P V``.

Key padding: padded keys are left out of every direct part, every pooling and every
abstraction. An abstraction whose query position is a padded (or absent) token uses
the zero query (uniform over its row's real keys), so padded content never leaks.

Bugs of the official code not reproduced here: two separate softmaxes (direct and
summary), the current segment's own summary among the regions, and a double 1/sqrt(d)
on the pooled query.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_positive_int
from attnlab.utils.precision import lower_precision_op
from attnlab.ops.attention import check_attention_options, check_self_qkv
from attnlab.ops.recording import is_recording, record

__all__ = [
    "combiner_fixed",
    "combiner_fixed_reference",
    "combiner_axial",
    "combiner_axial_reference",
    "combiner_budget",
]

_NEG = float("-inf")


def combiner_budget(n: int, block_size: int) -> int:
    """Logits per query of Combiner-Fixed/Axial: ``block_size`` direct + ``ceil(n / block_size)`` abstractions."""
    return block_size + math.ceil(n / block_size)


def _check(q, k, v, block_size, key_padding_mask, scale):
    check_self_qkv(q, k, v)
    check_positive_int("block_size", block_size)
    return check_attention_options(q, q.shape[2], key_padding_mask, scale)


def _to_blocks(q, k, v, s, key_padding_mask):
    """Pad N up to a multiple of s and split: valid (B, G, s) bool (real, unpadded tokens), q/k/v (B, H, G, s, D)."""
    b, h, n, _ = q.shape
    g = -(-n // s)
    valid = torch.ones(b, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask
    valid = F.pad(valid, (0, g * s - n), value=False).view(b, g, s)
    blocks = (F.pad(t, (0, 0, 0, g * s - n)).view(b, h, g, s, t.shape[-1]) for t in (q, k, v))
    return (valid, *blocks)


def _from_blocks(out, n):
    """(B, H, G, s, Dv) -> (B, H, n, Dv), dropping the padding."""
    b, h = out.shape[:2]
    return out.reshape(b, h, -1, out.shape[-1])[:, :, :n]


def _joint_softmax(logits_direct, logits_region):
    """One softmax over [direct | region] logits (-inf = not visible); all-masked rows give zeros."""
    joint = torch.cat([logits_direct, logits_region], dim=-1)
    has = torch.isfinite(joint).any(dim=-1, keepdim=True)
    probs = torch.softmax(joint.masked_fill(~has, 0.0), dim=-1) * has
    return probs.split([logits_direct.shape[-1], logits_region.shape[-1]], dim=-1)


def _masked_softmax(logits, mask):
    """Softmax over the last dim restricted to ``mask``; rows with no True give zeros."""
    has = mask.any(dim=-1, keepdim=True)
    logits = logits.masked_fill(~mask, _NEG).masked_fill(~has, 0.0)
    return torch.softmax(logits, dim=-1) * has


def _local_mask(s, causal, valid_blocks, device):
    """(B, 1, G, s, s) direct mask inside a block: real keys, and t' <= t when causal."""
    mask = valid_blocks[:, None, :, None, :]
    if causal:
        mask = mask & torch.ones(s, s, dtype=torch.bool, device=device).tril()
    return mask


def _region_mask(g, causal, block_has_key, device):
    """(B, 1, G, 1, G) which block abstractions a query in block g' may use: other blocks, earlier if causal."""
    idx = torch.arange(g, device=device)
    allowed = idx[None, :] < idx[:, None] if causal else idx[None, :] != idx[:, None]
    return (allowed[None] & block_has_key[:, None, :])[:, None, :, None, :]


def _record_reference(fn, q, k, v, block_size, causal, key_padding_mask, scale):
    """Inside ``record_attention``: run the reference, record its (B, H, N, N) matrix, return its output."""
    out, probs = fn(q, k, v, block_size=block_size, causal=causal, key_padding_mask=key_padding_mask, scale=scale,
                    return_probs=True)
    record(probs)
    return out


# ---------------------------------------------------------------------------- Fixed


@lower_precision_op
def combiner_fixed(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Combiner-Fixed attention, blocked: q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv).

    Segments of ``block_size`` tokens; see the module docstring for the factorisation.
    Time and memory O(N (s + N/s)). ``key_padding_mask`` (B, N) bool, True = real token.
    Inside ``attnlab.record_attention`` it runs :func:`combiner_fixed_reference` and
    records the explicit (B, H, N, N) matrix.
    """
    scale = _check(q, k, v, block_size, key_padding_mask, scale)
    if is_recording():
        return _record_reference(combiner_fixed_reference, q, k, v, block_size, causal, key_padding_mask, scale)
    s = block_size
    valid, qb, kb, vb = _to_blocks(q, k, v, s, key_padding_mask)
    g = valid.shape[1]
    vmask = valid[:, None, :, :, None]
    has_key = valid.any(dim=-1)  # (B, G)
    # Abstractions: max-pooled query and key of each segment over its real tokens.
    q_hat = torch.where(vmask, qb, _NEG).amax(dim=3)
    k_hat = torch.where(vmask, kb, _NEG).amax(dim=3)
    seg_ok = has_key[:, None, :, None]
    q_hat = torch.where(seg_ok, q_hat, 0.0)
    k_hat = torch.where(seg_ok, k_hat, 0.0)
    summary_logits = torch.einsum("bhgd,bhgtd->bhgt", q_hat, kb) * scale
    summary = _masked_softmax(summary_logits, valid[:, None])
    v_hat = torch.einsum("bhgt,bhgtd->bhgd", summary, vb)  # (B, H, G, Dv)

    local = torch.einsum("bhgtd,bhgud->bhgtu", qb, kb) * scale
    local = local.masked_fill(~_local_mask(s, causal, valid, q.device), _NEG)
    region = torch.einsum("bhgtd,bhrd->bhgtr", qb, k_hat) * scale
    region = region.masked_fill(~_region_mask(g, causal, has_key, q.device), _NEG)
    p_local, p_region = _joint_softmax(local, region)
    out = torch.einsum("bhgtu,bhgud->bhgtd", p_local, vb) + torch.einsum("bhgtr,bhrd->bhgtd", p_region, v_hat)
    return _from_blocks(out, q.shape[2])


def _factorised_reference(q, k, v, direct_mask, abs_keys, abs_dist, region_mask, scale, return_probs):
    """P = P_direct + P_region @ abs_dist from one joint softmax; returns P V (and P).

    direct_mask (B|1, 1, N, N), abs_keys (B, H, A, D), abs_dist (B, H, A, N) rows = q(j | region),
    region_mask (B|1, 1, N, A).
    """
    logits_d = (q @ k.transpose(-1, -2) * scale).masked_fill(~direct_mask, _NEG)
    logits_r = (q @ abs_keys.transpose(-1, -2) * scale).masked_fill(~region_mask, _NEG)
    p_d, p_r = _joint_softmax(logits_d, logits_r)
    probs = p_d + p_r @ abs_dist
    out = probs @ v
    return (out, probs) if return_probs else out


@lower_precision_op
def combiner_fixed_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
):
    """Reference for :func:`combiner_fixed`: builds the (B, H, N, N) factorised matrix P explicitly.

    Segment of position n: n // block_size (the last one may be short). Returns P V, and P
    when ``return_probs`` (rows sum to 1, or 0 for a query that sees no real key).
    """
    scale = _check(q, k, v, block_size, key_padding_mask, scale)
    b, h, n, _ = q.shape
    dev = q.device
    seg = torch.arange(n, device=dev) // block_size
    g = int(seg[-1]) + 1
    valid = torch.ones(b, n, dtype=torch.bool, device=dev) if key_padding_mask is None else key_padding_mask
    member = (seg[None, :] == torch.arange(g, device=dev)[:, None])[None] & valid[:, None, :]  # (B, G, N)
    has_key = member.any(dim=-1)  # (B, G)
    sel = member[:, None, :, :, None]
    q_hat = torch.where(sel, q[:, :, None], _NEG).amax(dim=3)
    k_hat = torch.where(sel, k[:, :, None], _NEG).amax(dim=3)
    q_hat = torch.where(has_key[:, None, :, None], q_hat, 0.0)
    k_hat = torch.where(has_key[:, None, :, None], k_hat, 0.0)
    abs_dist = _masked_softmax(q_hat @ k.transpose(-1, -2) * scale, member[:, None])  # (B, H, G, N)
    i = torch.arange(n, device=dev)
    direct = (seg[:, None] == seg[None, :]) & ((i[None, :] <= i[:, None]) if causal else True)
    direct_mask = (direct[None] & valid[:, None, :])[:, None]
    gi = torch.arange(g, device=dev)
    reg = gi[None, :] < seg[:, None] if causal else gi[None, :] != seg[:, None]
    region_mask = (reg[None] & has_key[:, None, :])[:, None]
    return _factorised_reference(q, k, v, direct_mask, k_hat, abs_dist, region_mask, scale, return_probs)


# ---------------------------------------------------------------------------- Axial


@lower_precision_op
def combiner_axial(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Combiner-Axial attention, blocked: q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv).

    Rows of ``block_size`` tokens; see the module docstring for the factorisation.
    Time and memory O(N (s + N/s)). ``key_padding_mask`` (B, N) bool, True = real token.
    Inside ``attnlab.record_attention`` it runs :func:`combiner_axial_reference` and
    records the explicit (B, H, N, N) matrix.
    """
    scale = _check(q, k, v, block_size, key_padding_mask, scale)
    if is_recording():
        return _record_reference(combiner_axial_reference, q, k, v, block_size, causal, key_padding_mask, scale)
    s = block_size
    valid, qb, kb, vb = _to_blocks(q, k, v, s, key_padding_mask)
    r = valid.shape[1]
    has_key = valid.any(dim=-1)  # (B, R)
    logits = torch.einsum("bhrtd,bhrud->bhrtu", qb, kb) * scale
    # Row abstractions: the full row attention of every token; padded tokens ask with the zero query.
    q_abs = torch.where(valid[:, None, :, :, None], qb, 0.0)
    row_logits = logits if bool(valid.all()) else torch.einsum("bhrtd,bhrud->bhrtu", q_abs, kb) * scale
    row_att = _masked_softmax(row_logits, valid[:, None, :, None, :])
    k_abs = row_att @ kb  # (B, H, R, s, D): abstraction (row, column)
    v_abs = row_att @ vb
    local = logits.masked_fill(~_local_mask(s, causal, valid, q.device), _NEG)
    # Query (row r, column c) reaches row r' through abstraction (r', c).
    region = torch.einsum("bhrcd,bhpcd->bhrcp", qb, k_abs) * scale
    region = region.masked_fill(~_region_mask(r, causal, has_key, q.device), _NEG)
    p_local, p_region = _joint_softmax(local, region)
    out = p_local @ vb + torch.einsum("bhrcp,bhpcd->bhrcd", p_region, v_abs)
    return _from_blocks(out, q.shape[2])


@lower_precision_op
def combiner_axial_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
):
    """Reference for :func:`combiner_axial`: builds the (B, H, N, N) factorised matrix P explicitly.

    Row of position n: n // block_size, column n % block_size. Abstraction (r, c) exists for
    every row r and column c < block_size; its query is q at r * block_size + c when that is
    a real token, else zero. Returns P V, and P when ``return_probs``.
    """
    scale = _check(q, k, v, block_size, key_padding_mask, scale)
    b, h, n, d = q.shape
    dev = q.device
    s = block_size
    pos = torch.arange(n, device=dev)
    row, col = pos // s, pos % s
    rows = int(row[-1]) + 1
    valid = torch.ones(b, n, dtype=torch.bool, device=dev) if key_padding_mask is None else key_padding_mask
    a_pos = torch.arange(rows * s, device=dev)  # abstraction a = (a // s, a % s)
    a_row, a_col = a_pos // s, a_pos % s
    exists = a_pos < n
    a_src = a_pos.clamp(max=n - 1)
    a_real = exists[None] & valid[:, a_src]  # (B, A)
    q_abs = torch.where(a_real[:, None, :, None], q[:, :, a_src], 0.0)
    member = (a_row[:, None] == row[None, :])[None] & valid[:, None, :]  # (B, A, N)
    abs_dist = _masked_softmax(q_abs @ k.transpose(-1, -2) * scale, member[:, None])  # (B, H, A, N)
    k_abs = abs_dist @ k
    direct = (row[:, None] == row[None, :]) & ((pos[None, :] <= pos[:, None]) if causal else True)
    direct_mask = (direct[None] & valid[:, None, :])[:, None]
    row_has_key = member.any(dim=-1)  # (B, A): abstraction's row holds a real key
    other_row = a_row[None, :] < row[:, None] if causal else a_row[None, :] != row[:, None]
    reg = other_row & (a_col[None, :] == col[:, None])
    region_mask = (reg[None] & row_has_key[:, None, :])[:, None]
    return _factorised_reference(q, k, v, direct_mask, k_abs, abs_dist, region_mask, scale, return_probs)
