"""Benchmark cases for routed / reduced / subsampled attention (P10 BiFormer, P09 S2AFormer, P28 SSA).

* ``bilevel_routing``: the BRA op (B=4, H=2, D=32: a BiFormer stage-1 layer) on a square
  grid of N tokens with 7x7 regions and top-4 routing, against dense softmax attention
  over all N tokens (SDPA) and the dense-masked reference. N must be a square.
* ``routed_mixers``: whole mixers at dim=64 on a square grid (B=4): ``bilevel_routing``
  (n_win=7, topk=4, 2 heads, LCE 5x5), ``strip_attention`` (r=4, d'=8, 1 head), ``ssa``
  in training mode (rate 4, unstructured) against ``softmax`` (2 heads, SDPA).
* ``ssa``: the subsampled-attention op, causal LM layout (B=1, H=4, D=64, rate 4,
  query blocks of 64, unstructured and locally biased), against dense causal SDPA.

Every case declares ``threads`` (default 1), which the worker applies: on this shared
2-core machine one thread gives stable numbers (with two, the many small ops of the
routed paths wait on the busy second core); ``--threads 2`` uses both cores.
"""
from __future__ import annotations

from attnlab.bench.inputs import grid_side, mixer_impls, random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.attention import attention, attention_reference
from attnlab.ops.bilevel_routing import bilevel_routing_attention, bilevel_routing_attention_reference
from attnlab.ops.subsampled_attention import sample_keys, subsampled_attention


@register_case(
    "bilevel_routing",
    description="bi-level routing attention op (B=4, H=2, D=32, 7x7 regions, top-4) vs dense SDPA over all N "
    "and the dense-masked reference; N = side^2",
    sizes=(784, 3136),
    reference="dense_sdpa",
    ops=("attnlab.ops.bilevel_routing.bilevel_routing_attention",),
    tests=("tests/ops/test_bilevel_routing.py",),
    tiny=(196, {"batch": 2, "heads": 2, "head_dim": 8, "n_win": 7, "topk": 2}),
    oracle="reference",
    agree=("bra",),
    size_rule="square",
    params={"batch": 4, "heads": 2, "head_dim": 32, "n_win": 7, "topk": 4, "max_reference": 4096, "threads": 1},
)
def setup_bilevel_routing(n, dtype, mode, *, batch, heads, head_dim, n_win, topk, max_reference) -> Impls:
    """Impls ``bra`` (gather fast path), ``dense_sdpa`` (full attention), ``reference`` (N x N mask)."""
    grid = (grid_side(n),) * 2
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("bra", lambda: bilevel_routing_attention(q, k, v, grid, n_win=n_win, topk=topk), qkv)
    impls.add("dense_sdpa", lambda: attention(q, k, v), qkv)
    impls.add_up_to("reference", n, max_reference, "the N x N mask and probabilities",
                    lambda: bilevel_routing_attention_reference(q, k, v, grid, n_win=n_win, topk=topk), qkv)
    return impls


@register_case(
    "routed_mixers",
    description="mixers at dim=64 on a square grid (B=4): bilevel_routing (7x7, top-4), strip_attention (r=4, "
    "d'=8), ssa (train mode, rate 4) vs softmax (SDPA); N = side^2",
    sizes=(784, 3136),
    reference="softmax",
    ops=("attnlab.mixers.bilevel_routing.BiLevelRoutingAttention", "attnlab.mixers.strip_attention.StripAttention",
         "attnlab.mixers.ssa.SubsampledAttention", "attnlab.mixers.softmax.MultiHeadAttention"),
    tests=("tests/mixers/test_bilevel_routing.py", "tests/mixers/test_strip_attention.py", "tests/mixers/test_ssa.py", "tests/mixers/test_softmax.py", "tests/mixers/test_contract.py"),
    tiny=(196, {"batch": 2, "dim": 16}),
    size_rule="square",
    params={"batch": 4, "dim": 64, "threads": 1},
)
def setup_routed_mixers(n, dtype, mode, *, batch, dim) -> Impls:
    """Impls ``softmax``, ``bilevel_routing``, ``strip_attention``, ``ssa`` (each its own weights; ssa subsamples
    in training mode)."""
    specs = {
        "softmax": ("softmax", {"num_heads": 2}),
        "bilevel_routing": ("bilevel_routing", {"num_heads": 2, "n_win": 7, "topk": 4}),
        "strip_attention": ("strip_attention", {"num_heads": 1, "sr_ratio": 4, "qk_dim": 8}),
        "ssa": ("ssa", {"num_heads": 2, "rate": 4.0}),
    }
    side = grid_side(n)
    return mixer_impls(specs, n, dtype, mode, batch=batch, dim=dim, grid=(side, side))


@register_case(
    "ssa",
    description="subsampled attention op, causal (B=1, H=4, D=64, rate 4, blocks of 64): unstructured and local "
    "vs dense causal SDPA and the dense reference",
    sizes=(1024, 4096),
    reference="dense_sdpa",
    ops=("attnlab.ops.subsampled_attention.subsampled_attention", "attnlab.ops.subsampled_attention.sample_keys"),
    tests=("tests/ops/test_subsampled_attention.py",),
    tiny=(70, {"heads": 2, "head_dim": 8, "block": 16}),
    oracle="reference",
    agree=("dense_sdpa",),
    params={"batch": 1, "heads": 4, "head_dim": 64, "rate": 4.0, "block": 64, "max_reference": 4096, "threads": 1},
)
def setup_ssa(n, dtype, mode, *, batch, heads, head_dim, rate, block, max_reference) -> Impls:
    """Impls ``ssa_unstructured``, ``ssa_local`` (sampling included), ``dense_sdpa``, ``reference``.

    The subsampled impls draw new keys every call (as in training), so only ``dense_sdpa`` is checked
    against the reference; the sampled paths are checked in their op's tests.
    """
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)

    def ssa(sampling: str):
        def run():
            idx, val = sample_keys(batch, n, rate=rate, block=block, mode=sampling, causal=True)
            return subsampled_attention(q, k, v, idx, val, block=block, causal=True)
        return run

    impls = Impls(mode)
    impls.add("ssa_unstructured", ssa("unstructured"), qkv)
    impls.add("ssa_local", ssa("local"), qkv)
    impls.add("dense_sdpa", lambda: attention(q, k, v, causal=True), qkv)
    impls.add_up_to("reference", n, max_reference, "the param max_reference",
                    lambda: attention_reference(q, k, v, causal=True), qkv)
    return impls
