"""Benchmark cases of the language-model attention designs (issue 11): ComplexFormer's CMHA (P18), EchoAtt
students (P14) and ALiBi (Press et al. 2022).

* ``complex_attention``: the CMHA op (causal, B=1, H=8, D=64): the SDPA path (rotated vectors, scale 1)
  against softmax attention with RoPE through SDPA (the paper's baseline, the ratio's reference) and the
  literal formula (the (N, N, D/2) tensor of r r cos(...), up to ``max_literal`` tokens), which is the
  oracle the SDPA path must reproduce.
* ``echoatt_student``: the forward of a causal 6-layer LM (d=256, 4 heads, vocabulary 256) against its EchoAtt
  student sharing one attention map over layers 1-3, computed both ways (same parameters, same outputs):
  ``student_map`` materialises the leader's map (the paper's computation: two followers skip W_Q, W_K,
  Q K^T and the softmax, but the leader runs the explicit softmax path instead of SDPA's fused kernel);
  ``student_qk`` lets the followers recompute the map in SDPA from the leader's queries and keys (they skip
  W_Q and W_K only).
* ``alibi_attention``: ALiBi's op (causal, B=1, H=8, D=64): the SDPA path with the bias as a float mask (chunked
  over queries) against SDPA's causal kernel without a bias (the ratio's reference: what the bias costs) and the
  literal reference (the bias written entry by entry, up to ``max_literal`` tokens), its oracle.

Each case declares ``threads`` (default 1: the machine is shared, one thread gives steadier ratios).
"""
from __future__ import annotations

import torch

from attnlab.bench.inputs import random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.alibi import alibi_attention, alibi_attention_reference, alibi_slopes
from attnlab.ops.attention import attention
from attnlab.ops.complex_attention import complex_attention, complex_attention_reference
from attnlab.ops.rope import apply_rope


@register_case(
    "complex_attention",
    description="CMHA op, causal (B=1, H=8, D=64): SDPA path vs softmax + RoPE (SDPA) vs the literal formula",
    sizes=(1024, 4096),
    reference="softmax_rope",
    ops=("attnlab.ops.complex_attention.complex_attention",),
    tests=("tests/ops/test_complex_attention.py", "tests/mixers/test_complex_attention.py"),
    tiny=(23, {"heads": 2, "head_dim": 8}),
    oracle="literal",
    agree=("cmha",),
    params={"batch": 1, "heads": 8, "head_dim": 64, "max_literal": 1024, "threads": 1},
)
def setup_complex_attention(n, dtype, mode, *, batch, heads, head_dim, max_literal) -> Impls:
    """Impls ``cmha``, ``softmax_rope`` and ``literal`` (N <= max_literal); delta ~ N(0, (D/2)^-1/2), b ~ N(0, 0.1)."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    g = torch.Generator().manual_seed(1)
    delta = (torch.randn(heads, head_dim // 2, generator=g) * (head_dim / 2) ** -0.5).to(dtype)
    bias = (torch.randn(heads, head_dim // 2, generator=g) * 0.1).to(dtype)
    pos = torch.arange(n)
    impls = Impls(mode)
    impls.add("cmha", lambda: complex_attention(q, k, v, delta, bias, causal=True), qkv)
    impls.add("softmax_rope", lambda: attention(apply_rope(q, pos), apply_rope(k, pos), v, causal=True), qkv)
    impls.add_up_to("literal", n, max_literal, "the (N, N, D/2) tensor of the literal formula",
                    lambda: complex_attention_reference(q, k, v, delta, bias, causal=True), qkv)
    return impls


@register_case(
    "echoatt_student",
    description="LM forward, causal (B=4, 6 layers, d=256, 4 heads, V=256): teacher vs its EchoAtt student sharing "
    "layers 1-3's attention map (materialised, or recomputed in SDPA from the leader's q, k)",
    sizes=(128, 256, 512, 1024),
    reference="teacher",
    ops=("attnlab.models.echoatt.echoatt_student",),
    tests=("tests/models/test_echoatt.py",),
    tiny=(16, {"dim": 16, "heads": 2, "vocab": 20}),
    modes=("fwd",),
    oracle="student_map",
    agree=("student_qk",),
    params={"batch": 4, "dim": 256, "depth": 6, "heads": 4, "vocab": 256, "group": (1, 2, 3), "threads": 1},
)
def setup_echoatt_student(n, dtype, mode, *, batch, dim, depth, heads, vocab, group) -> Impls:
    """Impls ``teacher`` (softmax, SDPA), ``student_map`` and ``student_qk`` (the teacher's weights, the group
    sharing its leader's map; the oracle is ``student_map``)."""
    from attnlab.models import SequenceModel, echoatt_student

    torch.manual_seed(0)
    teacher = SequenceModel(vocab_size=vocab, dim=dim, depth=depth, num_heads=heads, mixer="softmax",
                            max_len=n).to(dtype).eval()
    x = torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(2))
    impls = Impls(mode)
    impls.add("teacher", lambda: teacher(x), [])
    for share in ("map", "qk"):
        student = echoatt_student(teacher, [tuple(group)], share=share).eval()
        impls.add(f"student_{share}", lambda s=student: s(x), [])
    return impls


@register_case(
    "alibi_attention",
    description="ALiBi op, causal (B=1, H=8, D=64): SDPA with a float bias vs causal SDPA without one vs the literal",
    sizes=(512, 2048),
    reference="sdpa_causal",
    ops=("attnlab.ops.alibi.alibi_attention",),
    tests=("tests/ops/test_alibi.py",),
    tiny=(23, {"heads": 3, "head_dim": 8}),
    oracle="literal",
    agree=("alibi",),
    params={"batch": 1, "heads": 8, "head_dim": 64, "max_literal": 512, "threads": 1},
)
def setup_alibi_attention(n, dtype, mode, *, batch, heads, head_dim, max_literal) -> Impls:
    """Impls ``alibi``, ``sdpa_causal`` (no bias) and ``literal`` (N <= max_literal); the paper's slopes."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    slopes = alibi_slopes(heads).to(dtype)
    impls = Impls(mode)
    impls.add("alibi", lambda: alibi_attention(q, k, v, slopes, causal=True), qkv)
    impls.add("sdpa_causal", lambda: attention(q, k, v, causal=True), qkv)
    impls.add_up_to("literal", n, max_literal, "the bias written entry by entry in Python",
                    lambda: alibi_attention_reference(q, k, v, slopes, causal=True), qkv)
    return impls
