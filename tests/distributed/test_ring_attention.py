"""Ring attention on 2 gloo processes equals single-process attention, forward and backward.

Cases (from the shared 2-rank session in conftest.py): fp64 / fp32 / bf16 (bf16 against the fp32 reference),
causal and not, with and without a key-padding mask whose leading pads leave some causal rows with no key.
Tolerances in conftest.TOL: fp64 1e-12, fp32 2e-5, bf16 6e-2.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.distributed import ring_attention

DTYPES = (torch.float64, torch.float32, torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_two_ranks_match_single_process_attention(check_case, dtype, causal, masked):
    check_case("ring", dtype, causal, masked)


def test_refuses_without_a_process_group():
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="group: expected an initialised torch.distributed process group"):
        ring_attention(q, q, q)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_one_head_per_chunk_gives_the_same_result(check_case, causal, masked):
    check_case("ring_chunked", torch.float64, causal, masked)
