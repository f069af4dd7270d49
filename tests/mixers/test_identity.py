"""The identity mixer (P08's no-mixing ablation): the output is the input, with no parameters."""
from __future__ import annotations

import torch

import attnlab.mixers as mixers


def test_identity_returns_its_input_and_has_no_parameters():
    m = mixers.create("identity", 8)
    x = torch.randn(2, 5, 8)
    kpm = torch.tensor([[True] * 5, [True, True, True, False, False]])
    for causal in (False, True):
        assert m(x, causal=causal) is x
        # with a mask, real tokens pass unchanged and padded ones are the zero token (the base class's rule)
        y = m(x, causal=causal, key_padding_mask=kpm)
        assert torch.equal(y[kpm], x[kpm]) and torch.equal(y[~kpm], torch.zeros_like(x[~kpm]))
    assert sum(p.numel() for p in m.parameters()) == 0
