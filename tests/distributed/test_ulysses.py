"""Ulysses attention on 2 gloo processes equals single-process attention, forward and backward; uneven heads
and dropout are refused with the standard message.

Cases from the shared 2-rank session (conftest.py): fp64 / fp32 / bf16, causal and not, padding masks.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.distributed.ulysses import check_heads_divisible

DTYPES = (torch.float64, torch.float32, torch.bfloat16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_two_ranks_match_single_process_attention(check_case, dtype, causal, masked):
    check_case("ulysses", dtype, causal, masked)


def test_uneven_heads_and_dropout_are_refused_on_the_ranks(parallel_attention):
    refusals = parallel_attention["refusals"]
    assert refusals["ulysses_uneven_heads"] == (
        "q: expected a head count divisible by the 2 ranks of the Ulysses group (each rank takes whole heads), "
        "received 3 heads")
    assert refusals["dropout"].startswith("dropout_p: expected 0")


def test_check_heads_divisible():
    check_heads_divisible(8, 4)
    with pytest.raises(ValueError, match="num_heads: expected a head count divisible by the 4 ranks"):
        check_heads_divisible(6, 4, "num_heads")


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_one_head_per_chunk_gives_the_same_result(check_case, causal, masked):
    check_case("ulysses_chunked", torch.float64, causal, masked)
