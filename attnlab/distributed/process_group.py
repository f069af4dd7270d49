"""The process group of a run launched by torchrun: detect, initialise with a timeout, tear down.

torchrun (``torchrun --standalone --nproc-per-node 2 -m attnlab train ...``) starts one process per
rank and tells each its place through environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`launched_by_torchrun` reads them;
:func:`init_process_group` joins the group on gloo (nccl when CUDA is present) with a timeout, so a
collective whose peer died or hangs raises after that many seconds instead of blocking forever.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

from attnlab.utils.checks import fail

__all__ = ["TORCHRUN_VARS", "launched_by_torchrun", "default_backend", "init_process_group", "process_group",
           "rank_and_world", "DEFAULT_TIMEOUT"]

#: the variables torchrun sets for every worker
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: seconds a collective may wait for the other ranks before it fails (``attnlab train --dist-timeout``)
DEFAULT_TIMEOUT = 120.0


def launched_by_torchrun(environ: dict | None = None) -> bool:
    """True when this process is a worker started by torchrun (or any launcher that sets its variables)."""
    env = os.environ if environ is None else environ
    return all(v in env for v in TORCHRUN_VARS)


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"`` (the CPU backend)."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group``; ``(0, 1)`` when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def init_process_group(*, timeout: float = DEFAULT_TIMEOUT, backend: str | None = None) -> tuple[int, int]:
    """Join the process group described by torchrun's environment variables; returns ``(rank, world_size)``.

    ``timeout``: seconds any collective may wait for the other ranks (a dead or stuck peer then raises
    instead of hanging). ValueError naming the missing variables when not launched by torchrun.
    """
    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        fail("environment", f"torchrun's variables {list(TORCHRUN_VARS)} (launch with torchrun)",
             f"missing {missing}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        fail("timeout", "a positive number of seconds", repr(timeout))
    dist.init_process_group(backend or default_backend(), timeout=timedelta(seconds=float(timeout)))
    return dist.get_rank(), dist.get_world_size()


@contextlib.contextmanager
def process_group(*, timeout: float = DEFAULT_TIMEOUT, backend: str | None = None) -> Iterator[tuple[int, int]]:
    """:func:`init_process_group` for a block, destroyed when the block ends (also on error)."""
    rank_world = init_process_group(timeout=timeout, backend=backend)
    try:
        yield rank_world
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
