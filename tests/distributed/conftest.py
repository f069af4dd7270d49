"""Shared by the distributed tests: every parallel attention computed once on real gloo ranks, and its reference.

Spawning ranks costs seconds (each process imports torch), so the attentions of all the test modules run in
one 2-rank session (``parallel_attention``) and one 4-rank session for the genuine Ulysses x ring hybrid
(``hybrid_attention_4``); each test module reads its cases from them. Every rank computes this rank's block,
backpropagates a fixed upstream gradient, gathers outputs and gradients, and rank 0 returns them; the parent
compares them with :func:`attnlab.ops.attention_reference` on the whole sequence (``reference``).

Ranks run through :func:`attnlab.distributed.local_ranks.run_ranks` (free port, collective timeout, a
deadline after which every rank is killed), so a broken collective fails the test instead of hanging.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from attnlab.distributed.local_ranks import run_ranks
from attnlab.ops import attention_reference

SHAPE = dict(b=2, h=4, n=24, d=8)
DTYPES = (torch.float64, torch.float32, torch.bfloat16)
#: (kind, dtype, causal, masked) of every case
CASES = [(kind, dt, c, m) for kind in ("ring", "ulysses", "hybrid_u1", "hybrid_u2", "heads") for dt in DTYPES
         for c in (False, True) for m in (False, True)]


def case_inputs(dtype: torch.dtype, *, b=SHAPE["b"], h=SHAPE["h"], n=SHAPE["n"], d=SHAPE["d"]):
    """q, k, v, upstream gradient and a key-padding mask (leading pads, so some causal rows see no key)."""
    g = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(4))
    kpm = torch.rand(b, n, generator=g) > 0.3
    kpm[0, :7] = False
    return q, k, v, dout, kpm


def _run_case(kind, dtype, causal, masked, groups):
    from attnlab.distributed import (gather_sequence, head_sharded_attention, hybrid_attention, ring_attention,
                                     shard_sequence, ulysses_attention)

    q, k, v, dout, kpm = case_inputs(dtype)
    mask = kpm if masked else None
    if kind == "heads":  # replicated inputs; each rank's gradients cover its heads, summed over ranks
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = head_sharded_attention(*leaves, block_size=5, causal=causal, key_padding_mask=mask)
        out.backward(dout)
        grads = [t.grad.clone() for t in leaves]
        for gr in grads:
            dist.all_reduce(gr)
        return [out.detach()] + grads
    leaves = [shard_sequence(t).requires_grad_(True) for t in (q, k, v)]
    local_mask = shard_sequence(kpm, 1) if masked else None
    kw = dict(causal=causal, key_padding_mask=local_mask)
    if kind == "ring":
        out = ring_attention(*leaves, **kw)
    elif kind == "ulysses":
        out = ulysses_attention(*leaves, **kw)
    else:
        out = hybrid_attention(*leaves, groups=groups[kind], **kw)
    out.backward(shard_sequence(dout))
    return [gather_sequence(t) for t in (out.detach(), *(x.grad for x in leaves))]


def _errors_of(fn) -> str | None:
    try:
        fn()
    except (ValueError, TypeError) as e:
        return str(e)
    return None


def attention_session(cases, hybrid_sizes) -> dict:
    """On every rank: all ``cases``, plus the refusals; rank 0 returns ``{case: [out, dq, dk, dv]}``."""
    from attnlab.distributed import make_hybrid_groups, ulysses_attention

    groups = {f"hybrid_u{u}": make_hybrid_groups(u) for u in hybrid_sizes}
    results = {case: _run_case(*case, groups) for case in cases}
    q = torch.randn(1, 3, 4, 2)  # 3 heads cannot be split over 2 ranks
    results["refusals"] = {
        "ulysses_uneven_heads": _errors_of(lambda: ulysses_attention(q, q, q)),
        "dropout": _errors_of(lambda: ulysses_attention(q[:, :2], q[:, :2], q[:, :2], dropout_p=0.1)),
    }
    return results if dist.get_rank() == 0 else {}


@pytest.fixture(scope="session")
def parallel_attention():
    """``{case: [out, dq, dk, dv]}`` of every case in :data:`CASES` on 2 gloo ranks (one session), and refusals."""
    return run_ranks(attention_session, CASES, (1, 2), world_size=2, timeout=240)[0]


@pytest.fixture(scope="session")
def hybrid_attention_4():
    """The genuine hybrid (Ulysses groups of 2 x ring of 2) on 4 ranks: ``{case: [out, dq, dk, dv]}``."""
    cases = [("hybrid_u2", dt, c, m) for dt in (torch.float64,) for c in (False, True) for m in (False, True)]
    return run_ranks(attention_session, cases, (2,), world_size=4, timeout=240)[0]


@pytest.fixture
def reference():
    """``reference(dtype, causal, masked)`` -> [out, dq, dk, dv] of dense attention on the whole sequence, in the
    case's dtype (bf16 cases: in fp32, the precision their fp32 accumulation aims at)."""

    def ref(dtype, causal, masked):
        q, k, v, dout, kpm = case_inputs(dtype)
        cd = torch.float32 if dtype == torch.bfloat16 else dtype
        leaves = [t.to(cd).requires_grad_(True) for t in (q, k, v)]
        out = attention_reference(*leaves, causal=causal, key_padding_mask=kpm if masked else None)
        out.backward(dout.to(cd))
        return [out.detach()] + [t.grad for t in leaves]

    return ref


#: tolerances (atol = rtol) of outputs and gradients against the reference, per dtype
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 6e-2}


@pytest.fixture
def check_case(parallel_attention, reference):
    """``check_case(kind, dtype, causal, masked, results=None)``: the case's outputs and gradients equal dense
    attention's to :data:`TOL`."""

    def check(kind, dtype, causal, masked, results=None):
        got = (results or parallel_attention)[(kind, dtype, causal, masked)]
        for name, a, e in zip(("output", "dq", "dk", "dv"), got, reference(dtype, causal, masked)):
            assert a.dtype == dtype, f"{kind} {name}: dtype {a.dtype}"
            torch.testing.assert_close(a.to(e.dtype), e, atol=TOL[dtype], rtol=TOL[dtype],
                                       msg=lambda m, n=name: f"{kind} {n}: {m}")

    return check
