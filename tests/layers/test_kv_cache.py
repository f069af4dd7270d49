"""attnlab.layers.kv_cache: a step attends to the cache plus itself (hand-computed), windows, and bad state named."""
from __future__ import annotations

import pytest
import torch

from attnlab.layers import attend_with_cache, cache_length, check_token, empty_kv_cache


def test_step_attends_to_every_cached_token_and_itself():
    state = empty_kv_cache(1, 1, 1, dtype=torch.float64)
    q = torch.ones(1, 1, 1, dtype=torch.float64)
    outs = []
    for key, val in [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]:
        o, state = attend_with_cache(q, torch.tensor([[[key]]], dtype=torch.float64),
                                     torch.tensor([[[val]]], dtype=torch.float64), state, scale=1.0)
        outs.append(o.item())
    assert cache_length(state) == 3 and state["k"].shape == (1, 1, 3, 1)
    e = torch.exp(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert abs(outs[2] - (e * torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)).sum() / e.sum()) < 1e-12
    assert abs(outs[0] - 1.0) < 1e-12


def test_alibi_step_biases_by_real_positions_also_in_a_window():
    # one head, slope 1/2, scale 1, keys 0: logits are the bias -(T - j) / 2 alone; values 1, 3, 5, 7
    slopes = torch.tensor([0.5], dtype=torch.float64)
    for window, seen in ((None, [0, 1, 2, 3]), (2, [2, 3])):
        state = empty_kv_cache(1, 1, 1, dtype=torch.float64)
        for val in (1.0, 3.0, 5.0, 7.0):
            one, zero = torch.ones(1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64)
            o, state = attend_with_cache(one, zero, torch.tensor([[[val]]], dtype=torch.float64), state, scale=1.0,
                                         window=window, alibi_slopes=slopes)
        w = torch.exp(torch.tensor([-(3 - j) / 2 for j in seen], dtype=torch.float64))
        vals = torch.tensor([1.0 + 2 * j for j in seen], dtype=torch.float64)
        assert abs(o.item() - ((w * vals).sum() / w.sum()).item()) < 1e-12


def test_window_keeps_the_last_tokens_and_counts_positions():
    state = empty_kv_cache(2, 1, 2)
    for _ in range(5):
        _, state = attend_with_cache(torch.randn(2, 1, 2), torch.randn(2, 1, 2), torch.randn(2, 1, 2), state, window=3)
    assert state["k"].shape[2] == 3 and cache_length(state) == 5


def test_bad_state_and_token_are_named():
    with pytest.raises(TypeError, match=r"state: expected a key-value cache dict"):
        cache_length({"S": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"x_t: expected one token per sequence, shape \(B, 4\)"):
        check_token(torch.randn(2, 5), 4)
    with pytest.raises(ValueError, match=r"x_t: expected a tensor of rank 2"):
        check_token(torch.randn(2, 1, 4), 4)
