"""P08's context-QK mixers: queries and keys from the declared context, values from x; one map for the whole batch
from a stream of batch 1; the frozen random table; bad context named."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers


def _formula(m, x, src, causal):
    """Per-head softmax(q k^T / sqrt(d)) v with q, k = src W_qk and v = x W_v (fp64)."""
    b, n, c = x.shape
    h, d = m.num_heads, c // m.num_heads
    qk = src @ m.qk.weight.T
    q, k = qk[..., :c].expand(b, -1, -1), qk[..., c:].expand(b, -1, -1)
    v = x @ m.v.weight.T
    out = []
    for i in range(h):
        sl = slice(i * d, (i + 1) * d)
        logits = q[..., sl] @ k[..., sl].transpose(-1, -2) / d ** 0.5
        if causal:
            logits = logits.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
        out.append(logits.softmax(-1) @ v[..., sl])
    return torch.cat(out, -1) @ m.proj.weight.T + m.proj.bias


@pytest.mark.parametrize("name, kind", [("static_emb_qk", "embeddings"), ("rnd_emb_qk", "random_stream"),
                                        ("fixed_seq_qk", "text_stream")])
@pytest.mark.parametrize("causal", [False, True])
def test_queries_and_keys_come_from_the_context(name, kind, causal):
    torch.manual_seed(0)
    m = mixers.create(name, 12, num_heads=3).double().eval()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    src = torch.randn(1 if kind.endswith("stream") else 2, 7, 12, dtype=torch.float64)
    out = m(x, causal=causal, context={kind: src})
    torch.testing.assert_close(out, _formula(m, x, src, causal), atol=1e-12, rtol=1e-10)
    # x reaches the output only through the values: the attention map is the context's
    src2 = src + torch.randn_like(src)
    assert (m(x, causal=causal, context={kind: src2}) - out).abs().max() > 1e-4


def test_stream_of_batch_one_is_one_map_for_every_sequence():
    torch.manual_seed(0)
    m = mixers.create("rnd_emb_qk", 8, num_heads=2).double().eval()
    x = torch.randn(1, 5, 8, dtype=torch.float64).expand(3, -1, -1)
    out = m(x, causal=True, context={"random_stream": torch.randn(1, 5, 8, dtype=torch.float64)})
    torch.testing.assert_close(out[0], out[2], atol=0, rtol=0)


def test_random_table_is_frozen_and_looked_up_by_token_id():
    torch.manual_seed(0)
    m = mixers.create("rnd_table_qk", 8, num_heads=2, vocab_size=10).double().eval()
    assert "table" in dict(m.named_buffers()) and "table" not in dict(m.named_parameters())
    ids = torch.randint(0, 10, (2, 6))
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x, causal=True, context={"token_ids": ids}),
                               _formula(m, x, m.table[ids], True), atol=1e-12, rtol=1e-10)
    with pytest.raises(ValueError, match=r"context\['token_ids'\]: expected ids in \[0, 10\)"):
        m(x, context={"token_ids": torch.full((2, 6), 10)})
    with pytest.raises(ValueError, match=r"vocab_size: expected the number of token ids"):
        mixers.create("rnd_table_qk", 8, num_heads=2)


def test_bad_context_is_named():
    m = mixers.create("static_emb_qk", 8, num_heads=2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"context\['embeddings'\]: expected a float tensor of shape \(2, N=5, C'\)"):
        m(x, context={"embeddings": torch.randn(2, 4, 8)})
    with pytest.raises(ValueError, match=r"context\['embeddings'\]: expected width 8 \(source_dim\)"):
        m(x, context={"embeddings": torch.randn(2, 5, 6)})
    m2 = mixers.create("static_emb_qk", 8, num_heads=2, source_dim=6)
    assert m2(x, context={"embeddings": torch.randn(2, 5, 6)}).shape == x.shape
