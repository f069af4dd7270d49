"""Benchmark cases for routed / reduced / subsampled attention (P10 BiFormer, P09 S2AFormer, P28 SSA).

* ``bilevel_routing``: the BRA op (B=4, H=2, D=32: a BiFormer stage-1 layer) on a square
  grid of N tokens with 7x7 regions and top-4 routing, against dense softmax attention
  over all N tokens (SDPA) and the dense-masked reference. N must be a square.
* ``routed_mixers``: whole mixers at dim=64 on a square grid (B=4): ``bilevel_routing``
  (n_win=7, topk=4, 2 heads, LCE 5x5), ``strip_attention`` (r=4, d'=8, 1 head), ``ssa``
  in training mode (rate 4, unstructured) against ``softmax`` (2 heads, SDPA).
* ``ssa``: the subsampled-attention op, causal LM layout (B=1, H=4, D=64, rate 4,
  query blocks of 64, unstructured and locally biased), against dense causal SDPA.

Every case takes ``threads`` (default 1): the worker sets ``torch.set_num_threads``. On this
shared 2-core machine one thread gives stable numbers (with two, the many small ops of the
routed paths wait on the busy second core); ``--param threads=2`` uses both cores.
"""
from __future__ import annotations

import math

import torch

from attnlab.bench.registry import make_thunk, register_case
from attnlab.ops.attention import attention, attention_reference
from attnlab.ops.routing import bilevel_routing_attention, bilevel_routing_attention_reference
from attnlab.ops.subsample import sample_keys, subsampled_attention


def _side(n: int) -> int:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"n: expected a square number of tokens (grid side x side), received {n}")
    return side


@register_case(
    "bilevel_routing",
    description="bi-level routing attention op (B=4, H=2, D=32, 7x7 regions, top-4) vs dense SDPA over all N "
    "and the dense-masked reference; N = side^2",
    sizes=(784, 3136),
    reference="dense_sdpa",
    params={"batch": 4, "heads": 2, "head_dim": 32, "n_win": 7, "topk": 4, "max_reference": 4096, "threads": 1},
)
def setup_bilevel_routing(n, dtype, mode, *, batch, heads, head_dim, n_win, topk, max_reference, threads):
    """Impls ``bra`` (gather fast path), ``dense_sdpa`` (full attention), ``reference`` (N x N mask)."""
    torch.set_num_threads(threads)
    side = _side(n)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
               for _ in range(3))
    kw = dict(n_win=n_win, topk=topk)
    impls = {
        "bra": make_thunk(lambda: bilevel_routing_attention(q, k, v, (side, side), **kw), [q, k, v], mode),
        "dense_sdpa": make_thunk(lambda: attention(q, k, v), [q, k, v], mode),
    }
    skipped = {}
    if n <= max_reference:
        impls["reference"] = make_thunk(
            lambda: bilevel_routing_attention_reference(q, k, v, (side, side), **kw), [q, k, v], mode)
    else:
        skipped["reference"] = f"N > max_reference={max_reference} (N x N mask and probabilities)"
    return impls, skipped


@register_case(
    "routed_mixers",
    description="mixers at dim=64 on a square grid (B=4): bilevel_routing (7x7, top-4), strip_attention (r=4, "
    "d'=8), ssa (train mode, rate 4) vs softmax (SDPA); N = side^2",
    sizes=(784, 3136),
    reference="softmax",
    params={"batch": 4, "dim": 64, "threads": 1},
)
def setup_routed_mixers(n, dtype, mode, *, batch, dim, threads):
    """Impls ``softmax``, ``bilevel_routing``, ``strip_attention``, ``ssa`` (each its own weights)."""
    torch.set_num_threads(threads)
    from attnlab.mixers import create

    side = _side(n)
    torch.manual_seed(0)
    specs = {
        "softmax": ("softmax", {"num_heads": 2}),
        "bilevel_routing": ("bilevel_routing", {"num_heads": 2, "n_win": 7, "topk": 4}),
        "strip_attention": ("strip_attention", {"num_heads": 1, "sr_ratio": 4, "qk_dim": 8}),
        "ssa": ("ssa", {"num_heads": 2, "rate": 4.0}),
    }
    x = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = {}
    for impl, (name, kw) in specs.items():
        m = create(name, dim, **kw).to(dtype).train()  # ssa subsamples in training mode
        impls[impl] = make_thunk(lambda m=m: m(x, grid=(side, side)), [x], mode)
    return impls, {}


@register_case(
    "ssa",
    description="subsampled attention op, causal (B=1, H=4, D=64, rate 4, blocks of 64): unstructured and local "
    "vs dense causal SDPA and the dense reference",
    sizes=(1024, 4096),
    reference="dense_sdpa",
    params={"batch": 1, "heads": 4, "head_dim": 64, "rate": 4.0, "block": 64, "max_reference": 4096, "threads": 1},
)
def setup_ssa(n, dtype, mode, *, batch, heads, head_dim, rate, block, max_reference, threads):
    """Impls ``ssa_unstructured``, ``ssa_local`` (sampling included), ``dense_sdpa``, ``reference``."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
               for _ in range(3))

    def ssa(sampling: str):
        def run():
            idx, val = sample_keys(batch, n, rate=rate, block=block, mode=sampling, causal=True)
            return subsampled_attention(q, k, v, idx, val, block=block, causal=True)
        return run

    impls = {
        "ssa_unstructured": make_thunk(ssa("unstructured"), [q, k, v], mode),
        "ssa_local": make_thunk(ssa("local"), [q, k, v], mode),
        "dense_sdpa": make_thunk(lambda: attention(q, k, v, causal=True), [q, k, v], mode),
    }
    skipped = {}
    if n <= max_reference:
        impls["reference"] = make_thunk(lambda: attention_reference(q, k, v, causal=True), [q, k, v], mode)
    else:
        skipped["reference"] = f"N > max_reference={max_reference}"
    return impls, skipped
