"""Joining torchrun's process group: detection, a one-rank gloo group in this process, the refusals."""
from __future__ import annotations

import pytest
import torch.distributed as dist

from attnlab.distributed.local_ranks import free_port
from attnlab.distributed.process_group import (TORCHRUN_VARS, default_backend, init_process_group,
                                               launched_by_torchrun, process_group, rank_and_world)


@pytest.fixture
def torchrun_env(monkeypatch):
    """The variables torchrun sets, for a world of one on a free port."""
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(k, v)


def test_detection_needs_every_variable():
    env = {v: "0" for v in TORCHRUN_VARS}
    assert launched_by_torchrun(env)
    del env["MASTER_PORT"]
    assert not launched_by_torchrun(env)


def test_outside_a_group_this_is_rank_zero_of_one():
    assert rank_and_world() == (0, 1) and default_backend() == "gloo"


def test_process_group_joins_and_leaves(torchrun_env):
    with process_group(timeout=10) as (rank, world):
        assert (rank, world) == (0, 1) and dist.is_initialized() and dist.get_backend() == "gloo"
    assert not dist.is_initialized()


def test_refuses_without_torchrun_variables(monkeypatch):
    for v in TORCHRUN_VARS:
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(ValueError, match=r"environment: expected torchrun's variables .* missing \['RANK'"):
        init_process_group()


@pytest.mark.parametrize("timeout", [0, -1, True, "10"])
def test_refuses_a_bad_timeout(torchrun_env, timeout):
    with pytest.raises(ValueError, match="timeout: expected a positive number of seconds"):
        init_process_group(timeout=timeout)
