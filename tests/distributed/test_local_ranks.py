"""run_ranks: results in rank order (the attention sessions of conftest prove it), a raising rank reported by
rank and message, a deadline that kills ranks instead of hanging."""
from __future__ import annotations

import time

import pytest
import torch.distributed as dist

from attnlab.distributed.local_ranks import RanksFailed, free_port, run_ranks


def rank_or_raise():
    if dist.get_rank() == 1:
        raise ValueError("rank one refuses")
    return dist.get_rank()


def sleep_forever():
    time.sleep(600)


def test_results_come_back_in_rank_order(parallel_attention_all_ranks):
    assert [r["comm"]["rank"] for r in parallel_attention_all_ranks] == [0, 1]


def test_a_raising_rank_is_named_with_its_traceback():
    with pytest.raises(RanksFailed, match=r"rank 1 of 2 raised:(.|\n)*ValueError: rank one refuses"):
        run_ranks(rank_or_raise, world_size=2, timeout=60)


@pytest.mark.slow  # waits for its deadline
def test_the_deadline_kills_the_ranks():
    t0 = time.monotonic()
    with pytest.raises(RanksFailed, match=r"ranks \[0, 1\] of 2 did not finish within 15 s"):
        run_ranks(sleep_forever, world_size=2, timeout=15)
    assert time.monotonic() - t0 < 30


def test_free_port_is_a_port():
    assert 1024 <= free_port() < 65536
