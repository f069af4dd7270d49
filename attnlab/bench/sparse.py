"""Benchmark cases for Combiner (P03) and SEA (P20) against SDPA and their dense references.

* ``combiner``: the op (causal, B=1, H=4, D=64, s = round(sqrt(N))): blocked Fixed and Axial
  fast paths, SDPA causal softmax (the full attention Combiner approximates), and the
  explicit N x N factorised reference (``fixed_reference``, up to ``max_reference`` tokens).
* ``sea``: the op (causal, B=1, H=4, D=64, k=64 keys per query, t_m=64, F=round(D ln D)):
  ``sea`` (estimate + top-k + gathered attention), ``sea_dense_masked`` (the same estimate
  and mask, then masked SDPA over the dense (N, N) mask: how the official code trains),
  and SDPA causal softmax.
* ``sparse_mixers``: whole causal mixers at dim 256, 4 heads: ``combiner_fixed``,
  ``combiner_axial``, ``sea`` against ``softmax`` (SDPA).

Each case pins ``threads`` intra-op threads in its worker process (default 1: the machine
is shared, and one thread gives steadier ratios).
"""
from __future__ import annotations

import math

import torch

from attnlab.bench.registry import make_thunk, register_case
from attnlab.ops.attention import attention
from attnlab.ops.combiner import combiner_axial, combiner_fixed, combiner_fixed_reference
from attnlab.ops.sea import favor_projection, sea_attention, sea_estimate, sea_select, selection_to_mask


def _qkv(n, dtype, mode, batch, heads, head_dim):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
            for _ in range(3)]


@register_case(
    "combiner",
    description="Combiner op, causal (B=1, H=4, D=64, s=round(sqrt N)): fixed / axial blocked vs SDPA causal vs "
    "the explicit N x N factorised reference",
    sizes=(1024, 4096, 16384),
    reference="sdpa",
    params={"batch": 1, "heads": 4, "head_dim": 64, "max_reference": 4096, "threads": 1},
)
def setup_combiner(n, dtype, mode, *, batch, heads, head_dim, max_reference, threads):
    """Impls ``fixed``, ``axial``, ``sdpa`` and ``fixed_reference`` (N <= max_reference)."""
    torch.set_num_threads(threads)
    q, k, v = inputs = _qkv(n, dtype, mode, batch, heads, head_dim)
    s = max(1, round(math.sqrt(n)))
    impls = {
        "fixed": make_thunk(lambda: combiner_fixed(q, k, v, block_size=s), inputs, mode),
        "axial": make_thunk(lambda: combiner_axial(q, k, v, block_size=s), inputs, mode),
        "sdpa": make_thunk(lambda: attention(q, k, v, causal=True), inputs, mode),
    }
    skipped = {}
    if n <= max_reference:
        impls["fixed_reference"] = make_thunk(lambda: combiner_fixed_reference(q, k, v, block_size=s), inputs, mode)
    else:
        skipped["fixed_reference"] = f"N > max_reference={max_reference}: several (N, N) matrices"
    return impls, skipped


def _sea_dense_masked(q, k, v, proj, t_m, top_k, block):
    """SEA's estimate and mask, then SDPA over the dense (N, N) mask (the official training path)."""
    with torch.no_grad():
        est = sea_estimate(q, k, proj, t_m=t_m, causal=True, block=block)
        idx, valid = sea_select(est, top_k=top_k, causal=True, block=block)
        mask = selection_to_mask(idx, valid, q.shape[2])
    return attention(q, k, v, attn_mask=mask)


@register_case(
    "sea",
    description="SEA op, causal (B=1, H=4, D=64, k=64, t_m=64, F=round(D ln D), block 64): gathered sparse "
    "attention vs the same mask through dense masked SDPA vs SDPA causal",
    sizes=(1024, 4096, 16384),
    reference="sdpa",
    params={"batch": 1, "heads": 4, "head_dim": 64, "top_k": 64, "t_m": 64, "block": 64, "max_dense": 8192,
            "threads": 1},
)
def setup_sea(n, dtype, mode, *, batch, heads, head_dim, top_k, t_m, block, max_dense, threads):
    """Impls ``sea``, ``sea_dense_masked`` (N <= max_dense) and ``sdpa``."""
    torch.set_num_threads(threads)
    q, k, v = inputs = _qkv(n, dtype, mode, batch, heads, head_dim)
    proj = favor_projection(round(head_dim * math.log(head_dim)), head_dim, dtype=dtype)
    impls = {
        "sea": make_thunk(lambda: sea_attention(q, k, v, proj, t_m=t_m, top_k=top_k, causal=True, block=block),
                          inputs, mode),
        "sdpa": make_thunk(lambda: attention(q, k, v, causal=True), inputs, mode),
    }
    skipped = {}
    if n <= max_dense:
        impls["sea_dense_masked"] = make_thunk(lambda: _sea_dense_masked(q, k, v, proj, t_m, top_k, block), inputs, mode)
    else:
        skipped["sea_dense_masked"] = f"N > max_dense={max_dense}: the dense (N, N) mask and scores"
    return impls, skipped


@register_case(
    "sparse_mixers",
    description="causal mixers at dim=256, 4 heads, B=1: combiner_fixed, combiner_axial, sea (k=64, t_m=64) vs "
    "softmax (SDPA)",
    sizes=(1024, 4096, 16384),
    reference="softmax",
    params={"batch": 1, "dim": 256, "heads": 4, "mixers": "combiner_fixed,combiner_axial,sea,softmax", "threads": 1},
)
def setup_sparse_mixers(n, dtype, mode, *, batch, dim, heads, mixers, threads):
    """One impl per mixer name (``sea`` with top_k=64, t_m=64), input (B, n, dim)."""
    import attnlab.mixers as registry

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = {}
    for name in mixers.split(","):
        kw = {"top_k": 64, "t_m": 64} if name == "sea" else {}
        m = registry.create(name, dim, num_heads=heads, **kw).to(dtype)
        impls[name] = make_thunk(lambda m=m: m(x, causal=True), [x], mode)
    return impls, {}
