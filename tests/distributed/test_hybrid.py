"""The Ulysses x ring hybrid equals single-process attention: on 4 gloo ranks (Ulysses groups of 2, a ring of 2:
both exchanges at work) and in its two degenerate layouts on 2 ranks (U = 1: ring, U = 2: Ulysses).
"""
from __future__ import annotations

import pytest
import torch

from attnlab.distributed.hybrid import default_ulysses_size

DTYPES = (torch.float64, torch.float32, torch.bfloat16)


@pytest.mark.slow  # 4 processes on 2 cores: 10-30 s of start-up
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_four_ranks_two_by_two_match_single_process_attention(check_case, hybrid_attention_4, causal, masked):
    check_case("hybrid_u2", torch.float64, causal, masked, results=hybrid_attention_4)


@pytest.mark.parametrize("kind", ["hybrid_u1", "hybrid_u2"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_two_ranks_either_layout_match_single_process_attention(check_case, kind, dtype, causal, masked):
    check_case(kind, dtype, causal, masked)


@pytest.mark.parametrize("world, heads, u", [(2, 4, 2), (2, 3, 1), (4, 6, 2), (8, 4, 4), (1, 5, 1), (6, 9, 3)])
def test_default_ulysses_size_is_the_largest_common_divisor(world, heads, u):
    assert default_ulysses_size(world, heads) == u
