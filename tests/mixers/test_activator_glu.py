"""The activator_glu mixer (P07) beyond the registry contract: the GLU formula with one shared LayerNorm,
and no mixing across tokens."""
from __future__ import annotations

import torch

from attnlab import mixers


def test_activator_glu_matches_formula_and_is_per_token():
    m = mixers.create("activator_glu", 8, hidden_ratio=1.5).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    ln = lambda t: torch.nn.functional.layer_norm(t, (m.hidden,), m.norm.weight, m.norm.bias)  # noqa: E731
    ref = m.proj(ln(torch.nn.functional.gelu(m.gate_proj(x))) * ln(m.value_proj(x)))
    assert (m(x) - ref).abs().max().item() < 1e-12
    perm = torch.randperm(7)
    # No token mixing: permuting tokens permutes outputs exactly (the note's surprise about the official model).
    assert (m(x[:, perm]) - m(x)[:, perm]).abs().max().item() < 1e-12
