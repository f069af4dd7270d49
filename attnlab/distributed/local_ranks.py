"""Run a function on W gloo ranks on this machine (loopback) and collect what each returns, with a deadline.

For tests, benchmarks and reproductions that need a real process group without torchrun: W processes
(multiprocessing ``spawn``), a free TCP port on 127.0.0.1, ``init_process_group("gloo")`` with a
collective timeout, torch pinned to ``threads`` threads, ``fn(*args)`` called on every rank. The
results come back in rank order; if any rank raises, or the whole does not finish within ``timeout``
seconds, every rank still running is killed and :class:`RanksFailed` says which rank failed and how.
A failure can never hang the caller.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import time
import traceback
from datetime import timedelta
from typing import Any, Callable

__all__ = ["run_ranks", "free_port", "RanksFailed"]


class RanksFailed(RuntimeError):
    """A rank raised, died or did not finish in time; the message names the rank and the reason."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(fn, args, rank, world, port, threads, collective_timeout, init_group, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(threads)
        if not init_group:  # fn joins the group itself, from the torchrun-style environment set above
            out = fn(*args)
        else:
            dist.init_process_group("gloo", rank=rank, world_size=world,
                                    timeout=timedelta(seconds=collective_timeout))
            try:
                out = fn(*args)
            finally:
                dist.destroy_process_group()
        results.put((rank, True, pickle.dumps(out)))
    except BaseException:  # noqa: BLE001 - every failure is reported to the parent, which decides
        results.put((rank, False, traceback.format_exc()))


def run_ranks(fn: Callable[..., Any], *args, world_size: int = 2, timeout: float = 120.0, threads: int = 1,
              collective_timeout: float | None = None, init_group: bool = True) -> list[Any]:
    """``[fn(*args) on rank 0, ..., on rank W-1]``, each rank a fresh process in one gloo group on loopback.

    ``fn`` must be importable (a module-level function); its result must pickle (tensors do, by value).
    ``timeout``: seconds for the whole run (start-up included); ``collective_timeout``: seconds a collective
    waits for a peer (default: ``timeout``). ``init_group=False``: ``fn`` joins the group itself (every rank's
    environment holds torchrun's variables, e.g. for :func:`attnlab.distributed.launch.torchrun_session`). Raises :class:`RanksFailed` on any rank's exception, death or
    the deadline, after killing the ranks still running.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_rank_main, daemon=True,
                         args=(fn, args, r, world_size, port, threads, collective_timeout or timeout, init_group,
                               results))
             for r in range(world_size)]
    for p in procs:
        p.start()
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(got) < world_size:
            try:
                rank, ok, payload = results.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in got]
                if dead:
                    raise RanksFailed(f"rank {dead[0]} of {world_size} died (exit code {procs[dead[0]].exitcode}) "
                                      "without reporting a result") from None
                if time.monotonic() > deadline:
                    raise RanksFailed(f"ranks {sorted(set(range(world_size)) - set(got))} of {world_size} did not "
                                      f"finish within {timeout:.0f} s") from None
                continue
            if not ok:
                raise RanksFailed(f"rank {rank} of {world_size} raised:\n{payload}")
            got[rank] = pickle.loads(payload)
    finally:
        for p in procs:
            p.join(timeout=5 if len(got) == world_size else 0.1)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    return [got[r] for r in range(world_size)]
