"""The sliding_window mixer (P12's hybrids) beyond the registry contract: projections around the op's
dense reference (fp64, 1e-10), and a causal hybrid language model with it."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.sliding_window import sliding_window_attention_reference


@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_mixer_is_projections_around_the_op(causal, heads_io):
    qkv, out = heads_io
    m = mixers.create("sliding_window", 12, num_heads=3, window=5).double().eval()
    x = torch.randn(2, 23, 12, dtype=torch.float64)
    kpm = torch.ones(2, 23, dtype=torch.bool)
    kpm[1, 15:] = False
    with torch.no_grad():
        q, k, v = qkv(m, x)
        o = sliding_window_attention_reference(q, k, v, 5, causal=causal, key_padding_mask=kpm)
        # padded positions carry no meaning (the base class zeroes them before mixing): real tokens only
        torch.testing.assert_close(m(x, causal=causal, key_padding_mask=kpm)[kpm], out(m, o)[kpm], atol=1e-10, rtol=1e-10)


def test_sliding_window_hybrid_in_a_sequence_model_is_causal():
    from attnlab.models import SequenceModel

    lm = SequenceModel(vocab_size=20, dim=32, depth=2, num_heads=2, mixer="linear_attention,sliding_window",
                       mixer_kwargs={"sliding_window": {"window": 4}})
    tokens = torch.randint(0, 20, (2, 17))
    logits = lm(tokens)
    tokens2 = tokens.clone()
    tokens2[:, 9:] = (tokens2[:, 9:] + 1) % 20
    torch.testing.assert_close(lm(tokens2)[:, :9], logits[:, :9])
