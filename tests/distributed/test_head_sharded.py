"""P06's head-sharded, query-blocked attention on 2 gloo processes equals dense attention; head ranges.

Forward: every rank holds all heads after the all-gather. Backward: each rank's gradients cover its heads;
their sum over the ranks (taken on the ranks) must equal the dense gradient.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.distributed.head_sharded import head_range, head_sharded_attention

DTYPES = (torch.float64, torch.float32, torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_two_ranks_match_dense_attention(check_case, dtype, causal, masked):
    check_case("heads", dtype, causal, masked)


def test_head_ranges_cover_every_head_once():
    assert [head_range(8, r, 4) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match="received 6 heads"):
        head_range(6, 0, 4)


def test_refuses_without_a_process_group():
    q = torch.randn(1, 2, 4, 2)
    with pytest.raises(ValueError, match="group: expected an initialised torch.distributed process group"):
        head_sharded_attention(q, q, q)
