"""SEA (P20: Lee et al., ICLR 2024): sparse attention over a mask estimated by kernel linear attention.

Three steps per head, none of which forms an N x N matrix:

1. **Compressed estimate** (:func:`sea_estimate`). Positive random features (Performer
   FAVOR+) give a linear-cost estimate of the softmax attention row of each query,
   ``A_ij ~ phi(q_i).phi(k_j)``. It is compressed to ``t_m`` columns: column m holds the
   estimated mass of the keys in bin m of the query's visible range ``[0, L_i)``
   (``L_i = E``; causal ``L_i = i + 1``, bins relative to each query's prefix as in the
   paper's causal resize), bin m = keys ``[floor(m L_i / t_m), floor((m+1) L_i / t_m))``.
   E is the end of the real keys (one past the last key the ``key_padding_mask`` keeps; N
   without a mask), so trailing padding changes nothing: a padded sequence gives its real
   tokens exactly the outputs of the unpadded one. Padding before or between real keys
   occupies bin positions, as every position does in the paper's resize.
   Non-causal: one (t_m, F) table of per-bin key-feature sums. Causal: prefix sums of
   the key features read at each query's bin edges. Cost O(N t_m F).
2. **Top-k mask** (:func:`sea_select`). Per query the ``round(top_k * t_m / L_i)``
   (at least 1) bins with the largest estimate are kept and resized back to key
   positions (nearest: a kept bin keeps all its keys), so about ``top_k`` keys per
   query. Returned as per-query key indices (B, H, N, K), K ~ top_k.
3. **Sparse attention** (:func:`sparse_gather_attention`): exact ``softmax(q.k * scale)``
   over the selected keys only, with a hand-written backward that recomputes the
   gathered keys chunk by chunk (memory O(N K), not O(N K D)).

:func:`sea_attention` runs the three; :func:`sea_attention_reference` is the dense
version: the Performer matrix formed explicitly and binned by loops, the mask built
row by row, then masked softmax attention (:func:`attnlab.ops.attention.attention_reference`).
:func:`expand_estimate` spreads the compressed estimate back over the N keys (the
"estimated attention matrix" of the paper, for distillation and analysis; O(N^2)).

Deviations from the paper (see docs/notes/sparse.md): the estimate is the Performer
kernel estimate itself, without the paper's learned MLP/CNN decoder on top of it; top-k
is taken per head (the official code can share one budget across heads); bins are
hard (nearest) in both directions. The random features use a data-independent
stabiliser (max_f |w_f|^2 / 2), so no query or key ever sees a statistic of other
tokens (the official code uses FAVOR+ with per-tensor maxima); bins end at the last real key
(padding invariance, see step 1).

Precision: the estimate (exponentials of random features, prefix sums) is always computed in
fp32 (fp64 for fp64 inputs) and the top-k selection made on it; with bf16 inputs the sparse
attention runs in bf16 and the estimate is returned in bf16. The selection is discontinuous in
q and k, so bf16 rounding of q and k (or of the projections that make them) flips near-tied
bins: per token, SEA in bf16 agrees with fp32 only where the selection does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_key_padding_mask, check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import lower_precision_op, upcast
from attnlab.ops.attention import attention_reference, check_attention_options, check_self_qkv
from attnlab.ops.recording import is_recording, record

__all__ = [
    "key_ends",
    "favor_projection",
    "favor_features",
    "bin_edges",
    "sea_estimate",
    "sea_estimate_reference",
    "sea_select",
    "sea_mask_reference",
    "sparse_gather_attention",
    "sea_attention",
    "sea_attention_reference",
    "expand_estimate",
    "selection_to_mask",
]


# ---------------------------------------------------------------------------- random features


def favor_projection(num_features: int, head_dim: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Performer's orthogonal random projection (F, D): blocks of D orthogonal rows, each row rescaled
    to the norm of a D-dim standard Gaussian vector, so every row is marginally N(0, I_D)."""
    check_positive_int("num_features", num_features)
    check_positive_int("head_dim", head_dim)
    g = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-num_features // head_dim)):
        qmat, rmat = torch.linalg.qr(torch.randn(head_dim, head_dim, generator=g, dtype=torch.float64))
        # sign(diag R) makes Q Haar-distributed; without it LAPACK's sign convention biases each direction
        blocks.append((qmat * torch.sign(torch.diagonal(rmat))).T)
    w = torch.cat(blocks)[:num_features]
    norms = torch.randn(num_features, head_dim, generator=g, dtype=torch.float64).norm(dim=1, keepdim=True)
    return (w * norms).to(dtype)


def favor_features(x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Positive random features phi(x) = exp(W x - |x|^2 / 2 - c) / sqrt(F), x (..., D) -> (..., F).

    E[phi(x).phi(y)] = exp(x.y - 2c) / F: the softmax kernel up to a constant factor, which
    cancels in every normalised use. c = max_f |w_f|^2 / 2 bounds the exponent
    (W x - |x|^2 / 2 <= |w|^2 / 2) without looking at the data.
    """
    c = 0.5 * proj.pow(2).sum(-1).max()
    return torch.exp(x @ proj.T - 0.5 * x.pow(2).sum(-1, keepdim=True) - c) * proj.shape[0] ** -0.5


# ---------------------------------------------------------------------------- bins


def key_ends(key_padding_mask: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """End of the real keys per sequence, (B,) long: one past the last True of the mask (at least 1);
    None without a mask (the end is N). The binned range stops there (see the module doc)."""
    if key_padding_mask is None:
        return None
    pos = torch.arange(1, n + 1, device=key_padding_mask.device)
    return (key_padding_mask * pos).amax(dim=1).clamp(min=1)


def _lengths(n: int, causal: bool, block: int, device=None, ends: torch.Tensor | None = None) -> torch.Tensor:
    """Length L of the binned range per query, (B|1, N|1): the end E of the real keys, or causal the end of
    the query's block clipped at E."""
    end = torch.full((1, 1), n, device=device) if ends is None else ends[:, None]
    if not causal:
        return end
    return ((torch.arange(n, device=device) // block + 1) * block)[None, :].clamp(max=end)


def _edges(n: int, t_m: int, causal: bool, block: int, device, ends) -> torch.Tensor:
    """Bin edges (B|1, N|1, t_m + 1), long (see :func:`bin_edges`)."""
    length = _lengths(n, causal, block, device, ends)
    edges = torch.div(torch.arange(t_m + 1, device=device) * length[..., None], t_m, rounding_mode="floor")
    if causal:
        edges = edges.clamp(max=(torch.arange(n, device=device) + 1)[:, None])
    return edges


def bin_edges(n: int, t_m: int, causal: bool, block: int = 1, device=None,
              key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bin edges of the compressed axis: (N, t_m + 1) if causal else (1, t_m + 1), long; with a
    ``key_padding_mask`` (B, N) one such table per sequence, (B, N|1, t_m + 1).

    Row i, bin m covers keys [edges[i, m], edges[i, m + 1]) with edges[i, m] =
    floor(m L / t_m), L = E (the end of the real keys, :func:`key_ends`; N without a mask)
    when not causal. Causal: L is the end of the query's block of ``block`` queries
    (``block=1``: L = i + 1, the paper's per-query bins) clipped at E, and the edges are
    clipped at i + 1, so a bin never holds a future key (bins past i are empty).
    """
    edges = _edges(n, t_m, causal, block, device, key_ends(key_padding_mask, n))
    return edges[0] if key_padding_mask is None else edges


def _bins_per_query(n: int, t_m: int, top_k: int, causal: bool, block: int, device=None,
                    ends: torch.Tensor | None = None) -> torch.Tensor:
    """How many bins each query keeps: round(top_k t_m / L) clipped to [1, t_m]; (B|1, 1, N|1, 1)."""
    length = _lengths(n, causal, block, device, ends)
    kb = torch.round(top_k * t_m / length.double()).long().clamp(1, t_m)
    return kb[:, None, :, None]


# ---------------------------------------------------------------------------- checks


def _check_est_args(q, proj, t_m, key_padding_mask, scale):
    check_tensor("proj", proj, ndim=2, floating=True)
    if proj.shape[1] != q.shape[-1]:
        fail("proj", f"shape (F, D={q.shape[-1]})", describe(proj))
    check_positive_int("t_m", t_m)
    return check_attention_options(q, q.shape[2], key_padding_mask, scale)


def _features(q, k, proj, scale, key_padding_mask):
    """Random features of q and k, in fp32 for bf16 inputs (exponentials and their sums need it)."""
    root = math.sqrt(scale)
    q, k = upcast(q), upcast(k)
    proj = proj.to(q.dtype)
    phi_q, phi_k = favor_features(q * root, proj), favor_features(k * root, proj)
    if key_padding_mask is not None:
        phi_k = phi_k * key_padding_mask[:, None, :, None].to(phi_k.dtype)
    return phi_q, phi_k


def _normalise(mass):
    total = mass.sum(-1, keepdim=True)
    return torch.where(total > 0, mass / torch.where(total > 0, total, 1.0), 0.0)


# ---------------------------------------------------------------------------- estimate


@lower_precision_op
def sea_estimate(
    q: torch.Tensor,
    k: torch.Tensor,
    proj: torch.Tensor,
    *,
    t_m: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Compressed kernel estimate of the attention rows: q, k (B, H, N, D) -> (B, H, N, t_m).

    Entry (i, m): estimated share of query i's attention that falls on the keys of bin m
    (see :func:`bin_edges`; ``block`` only matters when causal); rows sum to 1 (0 for a
    query whose keys are all padded). ``proj`` (F, D) from :func:`favor_projection`.
    Time O(N t_m F) as batched matmuls; memory O(N t_m + (N / block) t_m F). Computed in fp32
    for bf16 inputs, returned in the inputs' dtype.
    """
    return _estimate(q, k, proj, t_m=t_m, causal=causal, block=block, key_padding_mask=key_padding_mask,
                     scale=scale).to(q.dtype)


def _estimate(q, k, proj, *, t_m, causal, block, key_padding_mask, scale):
    """:func:`sea_estimate` in fp32 for bf16 inputs (fp64 for fp64)."""
    check_self_qkv(q, k)
    scale = _check_est_args(q, proj, t_m, key_padding_mask, scale)
    check_positive_int("block", block)
    phi_q, phi_k = _features(q, k, proj, scale, key_padding_mask)
    b, h, n, f = phi_k.shape
    dev = q.device
    ends = key_ends(key_padding_mask, n)
    if not causal:
        # every query of a sequence shares the bins: sum the key features per bin once
        edges = _edges(n, t_m, False, block, dev, ends)[:, 0]  # (B|1, t_m + 1)
        keys = torch.arange(n, device=dev).expand(edges.shape[0], n).contiguous()
        # keys past the end are padded (zero features): any bin index will do
        bin_of_key = torch.searchsorted(edges[:, 1:].contiguous(), keys, right=True).clamp(max=t_m - 1)
        index = bin_of_key[:, None, :, None].expand(b, h, n, f)
        table = phi_k.new_zeros(b, h, t_m, f).scatter_add_(2, index, phi_k)
        return _normalise(phi_q @ table.transpose(-1, -2))
    prefix = torch.cat([phi_k.new_zeros(b, h, 1, f), phi_k.cumsum(2)], dim=2)  # prefix[t] = sum_{j<t} phi(k_j)
    nb = -(-n // block)
    block_end = ((torch.arange(nb, device=dev) + 1) * block)[None, :]
    block_end = block_end.clamp(max=n if ends is None else ends[:, None])  # (B|1, nb)
    shared = torch.div(torch.arange(t_m + 1, device=dev) * block_end[..., None], t_m, rounding_mode="floor")
    # the queries of a block share their (unclipped) edges: one table of prefix sums per block
    index = shared.reshape(shared.shape[0], 1, -1, 1).expand(b, h, -1, f)
    tables = prefix.gather(2, index).view(b, h, nb, t_m + 1, f)
    phi_blocks = F.pad(phi_q, (0, 0, 0, nb * block - n)).view(b, h, nb, block, f)
    cum = (phi_blocks @ tables.transpose(-1, -2)).reshape(b, h, nb * block, t_m + 1)[:, :, :n]
    # clipping an edge at i + 1 reads prefix[i + 1]: the query's whole visible mass
    own = (phi_q * prefix[:, :, 1:]).sum(-1, keepdim=True)
    pos = torch.arange(n, device=dev)
    future = shared[:, pos // block] > (pos + 1)[:, None]  # (B|1, N, t_m + 1)
    cum = torch.where(future[:, None], own, cum)
    return _normalise((cum[..., 1:] - cum[..., :-1]).clamp_min(0.0))


@lower_precision_op
def sea_estimate_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    proj: torch.Tensor,
    *,
    t_m: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference for :func:`sea_estimate`: the (B, H, N, N) Performer matrix, binned query by query."""
    check_self_qkv(q, k)
    scale = _check_est_args(q, proj, t_m, key_padding_mask, scale)
    phi_q, phi_k = _features(q, k, proj, scale, key_padding_mask)
    b, n = q.shape[0], q.shape[2]
    kernel = phi_q @ phi_k.transpose(-1, -2)
    member = torch.zeros(b, n, t_m, n, dtype=kernel.dtype, device=q.device)
    for bi, end in enumerate(_reference_ends(key_padding_mask, b, n)):
        for i in range(n):
            for m, (lo, hi) in enumerate(_reference_bins(i, end, t_m, causal, block)):
                member[bi, i, m, lo:hi] = 1.0
    return _normalise(torch.einsum("bhij,bimj->bhim", kernel, member)).to(q.dtype)


def _reference_ends(key_padding_mask, b: int, n: int) -> list[int]:
    """Per sequence, one past its last real key (N without a mask), by a plain loop."""
    if key_padding_mask is None:
        return [n] * b
    return [max([j + 1 for j in range(n) if key_padding_mask[bi, j]] or [1]) for bi in range(b)]


def _reference_bins(i: int, end: int, t_m: int, causal: bool, block: int) -> list[tuple[int, int]]:
    """Query i's bins [lo, hi) straight from the definition (module doc, step 1)."""
    length = min(end, (i // block + 1) * block) if causal else end
    bins = []
    for m in range(t_m):
        lo, hi = (m * length) // t_m, ((m + 1) * length) // t_m
        if causal:
            lo, hi = min(lo, i + 1), min(hi, i + 1)
        bins.append((lo, hi))
    return bins


def expand_estimate(est: torch.Tensor, *, causal: bool = True, block: int = 64,
                    key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The compressed estimate spread over key positions: (B, H, N, t_m) -> (B, H, N, N).

    Each bin's share is divided evenly among its keys (rows still sum to 1); keys outside
    a query's bins get 0. The paper's "estimated attention matrix", for distillation and
    analysis (O(N^2) memory). Pass the ``key_padding_mask`` the estimate was made with (its
    bins end at the last real key).
    """
    check_tensor("est", est, ndim=4, floating=True)
    b, h, n, t_m = est.shape
    edges = _edges(n, t_m, causal, block, est.device, key_ends(key_padding_mask, n))
    edges = edges.expand(edges.shape[0], n, t_m + 1)  # (B|1, N, t_m + 1)
    keys = torch.arange(n, device=est.device)
    bin_of = torch.searchsorted(edges[..., 1:].contiguous(), keys.expand(*edges.shape[:2], n).contiguous(),
                                right=True)  # (B|1, N, N)
    visible = keys < edges[..., -1:]
    width = (edges[..., 1:] - edges[..., :-1]).clamp_min(1)
    bin_c = bin_of.clamp(max=t_m - 1)
    share = est.gather(-1, bin_c[:, None].expand(b, h, n, n)) / width.gather(-1, bin_c)[:, None].to(est.dtype)
    return share * visible[:, None]


# ---------------------------------------------------------------------------- selection


def sea_select(
    est: torch.Tensor,
    *,
    top_k: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top bins per query, resized back to keys: est (B, H, N, t_m) -> (idx, valid), each (B, H, N, K).

    Query i keeps the ``round(top_k t_m / L_i)`` bins (at least one, never an empty one;
    L_i as in :func:`bin_edges`) with the largest estimate, ties to the lower bin; ``idx[..., i, :]`` lists the keys of
    the kept bins in increasing order, ``valid`` marks the real entries (K is the largest
    count over queries, about top_k). Padded keys are dropped.
    """
    check_tensor("est", est, ndim=4, floating=True)
    check_positive_int("top_k", top_k)
    b, h, n, t_m = est.shape
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, b, n)
    dev = est.device
    check_positive_int("block", block)
    ends = key_ends(key_padding_mask, n)
    edges = _edges(n, t_m, causal, block, dev, ends)[:, None]  # (B|1, 1, N|1, t_m + 1)
    width = edges[..., 1:] - edges[..., :-1]
    keep = _top_bins(est, _bins_per_query(n, t_m, top_k, causal, block, dev, ends)) & (width > 0)
    kept_width = width * keep  # (B, H, N, t_m)
    cum = kept_width.cumsum(-1)
    total = cum[..., -1:]
    big_k = max(int(total.max()), 1)
    slot = torch.arange(big_k, device=dev).expand(b, h, n, big_k).contiguous()
    which = torch.searchsorted(cum, slot, right=True).clamp(max=t_m - 1)  # bin holding each slot
    before = (cum - kept_width).gather(-1, which)
    idx = edges[..., :-1].expand(b, h, n, t_m).gather(-1, which) + slot - before
    valid = slot < total
    idx = torch.where(valid, idx, 0)
    if key_padding_mask is not None:
        valid = valid & key_padding_mask[:, None, None, :].expand(b, h, n, n).gather(-1, idx)
    return idx, valid


def _top_bins(est: torch.Tensor, kb: torch.Tensor) -> torch.Tensor:
    """Bool (..., t_m): the kb largest entries of each row, ties to the lower index (a stable sort's
    order), found from the kb-th largest value instead of a full sort (sorting is the slow part on CPU)."""
    values = est.topk(int(kb.max()), dim=-1).values
    thr = values.gather(-1, (kb - 1).expand(*est.shape[:-1], 1))
    above = est > thr
    tied = est == thr
    room = kb - above.sum(-1, keepdim=True)  # how many tied entries still fit, lowest index first
    return above | (tied & (tied.cumsum(-1) <= room))


def selection_to_mask(idx: torch.Tensor, valid: torch.Tensor, n: int) -> torch.Tensor:
    """(idx, valid) from :func:`sea_select` as a dense (B, H, N, n) bool mask (analysis and tests)."""
    hits = torch.zeros(*idx.shape[:3], n, dtype=torch.int32, device=idx.device)
    return hits.scatter_add_(-1, idx, valid.to(torch.int32)) > 0


def sea_mask_reference(
    est: torch.Tensor,
    *,
    top_k: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference for :func:`sea_select` as a dense (B, H, N, N) bool mask, built query by query."""
    b, h, n, t_m = est.shape
    mask = torch.zeros(b, h, n, n, dtype=torch.bool, device=est.device)
    for bi, end in enumerate(_reference_ends(key_padding_mask, b, n)):
        for i in range(n):
            length = min(end, (i // block + 1) * block) if causal else end
            lo, hi = zip(*_reference_bins(i, end, t_m, causal, block))
            kb = min(max(round(top_k * t_m / length), 1), t_m)
            for hi_ in range(h):
                row = est[bi, hi_, i].tolist()
                ranked = sorted((m for m in range(t_m) if hi[m] > lo[m]), key=lambda m: (-row[m], m))
                # rank among all bins (empty ones included) decides, as in sea_select
                all_ranked = sorted(range(t_m), key=lambda m: (-row[m], m))
                for m in ranked:
                    if all_ranked.index(m) < kb:
                        mask[bi, hi_, i, lo[m]:hi[m]] = True
    if key_padding_mask is not None:
        mask &= key_padding_mask[:, None, None, :]
    return mask


# ---------------------------------------------------------------------------- sparse attention


def _chunk_rows(b, h, k, d, budget=1 << 22):
    return max(1, budget // max(1, b * h * k * d))


class _GatherAttention(torch.autograd.Function):
    """softmax(q . k_idx * scale) over gathered keys; backward recomputes the gathered rows.

    Keys and values are gathered together (one index op per chunk, one index_add in the
    backward): the gathers are the memory-bound part on CPU.
    """

    @staticmethod
    def forward(ctx, q, k, v, gidx, valid, scale):
        b, h, n, d = q.shape
        kv = torch.cat([k, v], dim=-1).reshape(-1, d + v.shape[-1])
        rows = _chunk_rows(b, h, gidx.shape[-1], kv.shape[-1])
        probs = q.new_empty(gidx.shape)
        out = q.new_empty(b, h, n, v.shape[-1])
        for a in range(0, n, rows):
            z = slice(a, a + rows)
            ok = valid[:, :, z]
            kg, vg = kv[gidx[:, :, z]].split([d, v.shape[-1]], dim=-1)
            logits = torch.einsum("bhcd,bhckd->bhck", q[:, :, z], kg) * scale
            has = ok.any(-1, keepdim=True)
            p = torch.softmax(logits.masked_fill(~ok, float("-inf")).masked_fill(~has, 0.0), dim=-1) * has
            probs[:, :, z] = p
            out[:, :, z] = torch.einsum("bhck,bhcke->bhce", p, vg)
        ctx.save_for_backward(q, kv, gidx, probs)
        ctx.scale, ctx.rows, ctx.shapes = scale, rows, (k.shape, v.shape)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, kv, gidx, probs = ctx.saved_tensors
        scale, rows = ctx.scale, ctx.rows
        k_shape, v_shape = ctx.shapes
        d = q.shape[-1]
        dq = torch.zeros_like(q)
        dkv = torch.zeros_like(kv)
        for a in range(0, q.shape[2], rows):
            z = slice(a, a + rows)
            g, p, do = gidx[:, :, z], probs[:, :, z], dout[:, :, z]
            kg, vg = kv[g].split([d, v_shape[-1]], dim=-1)
            dp = torch.einsum("bhce,bhcke->bhck", do, vg)
            ds = p * (dp - (p * dp).sum(-1, keepdim=True)) * scale
            dq[:, :, z] = torch.einsum("bhck,bhckd->bhcd", ds, kg)
            contrib = torch.cat([ds[..., None] * q[:, :, z, None, :], p[..., None] * do[:, :, :, None, :]], dim=-1)
            dkv.index_add_(0, g.reshape(-1), contrib.reshape(-1, kv.shape[-1]))
        dk, dv = dkv.split([d, v_shape[-1]], dim=-1)
        return dq, dk.reshape(k_shape), dv.reshape(v_shape), None, None, None


@lower_precision_op
def sparse_gather_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    valid: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention of each query over its own key list: q, k (B, H, N, D), v (B, H, N, Dv),
    idx / valid (B, H, N, K) -> (B, H, N, Dv). Queries with no valid key give zeros.

    Memory O(N K) besides the inputs: the backward recomputes the gathered keys and values.
    """
    check_self_qkv(q, k, v)
    check_tensor("idx", idx, ndim=4)
    if idx.dtype != torch.long or valid.dtype != torch.bool or valid.shape != idx.shape or idx.shape[:3] != q.shape[:3]:
        fail("idx, valid", f"long / bool tensors of one shape {tuple(q.shape[:3])} + (K,)",
             f"{describe(idx)}, {describe(valid)}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    b, h, n, _ = q.shape
    base = (torch.arange(b * h, device=q.device) * n).view(b, h, 1, 1)
    return _GatherAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), idx + base, valid, scale)


# ---------------------------------------------------------------------------- SEA


@lower_precision_op
def sea_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    proj: torch.Tensor,
    *,
    t_m: int,
    top_k: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    estimate_grad: bool = False,
    return_estimate: bool = False,
):
    """SEA attention: q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv) [, estimate (B, H, N, t_m)].

    Estimate (:func:`sea_estimate`), top-k bins (:func:`sea_select`), exact softmax over the
    selected keys (:func:`sparse_gather_attention`). The top-k choice is not differentiable,
    so the estimate is computed without autograd unless ``estimate_grad`` (needed to distil
    it from a teacher). Inside ``attnlab.record_attention`` the dense sparse attention
    matrix (B, H, N, N) is recorded.
    """
    check_self_qkv(q, k, v)
    scale = _check_est_args(q, proj, t_m, key_padding_mask, scale)
    opts = dict(causal=causal, block=block, key_padding_mask=key_padding_mask)
    with torch.set_grad_enabled(estimate_grad and torch.is_grad_enabled()):
        est = _estimate(q, k, proj, t_m=t_m, scale=scale, **opts)  # fp32 for bf16 inputs: the selection reads it
    idx, valid = sea_select(est.detach(), top_k=top_k, **opts)
    est = est.to(q.dtype)
    if is_recording():
        mask = selection_to_mask(idx, valid, q.shape[2])
        out, probs = attention_reference(q, k, v, attn_mask=mask, scale=scale, return_probs=True)
        record(probs)
    else:
        out = sparse_gather_attention(q, k, v, idx, valid, scale=scale)
    return (out, est) if return_estimate else out


@lower_precision_op
def sea_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    proj: torch.Tensor,
    *,
    t_m: int,
    top_k: int,
    causal: bool = True,
    block: int = 64,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_estimate: bool = False,
    return_probs: bool = False,
):
    """Dense reference for :func:`sea_attention`: explicit estimate, row-by-row mask, masked softmax."""
    check_self_qkv(q, k, v)
    scale = _check_est_args(q, proj, t_m, key_padding_mask, scale)
    opts = dict(causal=causal, block=block, key_padding_mask=key_padding_mask)
    est = sea_estimate_reference(q, k, proj, t_m=t_m, scale=scale, **opts)
    mask = sea_mask_reference(est.detach(), top_k=top_k, **opts)
    out, probs = attention_reference(q, k, v, attn_mask=mask, scale=scale, return_probs=True)
    extras = ([est] if return_estimate else []) + ([probs] if return_probs else [])
    return (out, *extras) if extras else out
