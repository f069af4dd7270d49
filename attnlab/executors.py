"""Where independent runs execute: in this process, in a pool of warm worker processes, or on a Ray cluster.

``attnlab compare`` (and anything else with many independent training runs) hands a function and a
list of argument tuples to :func:`run_jobs` and gets one :class:`Outcome` per job back, in job order,
whatever order they finished in:

- ``"inline"``: one after the other in this process (tests, debugging);
- ``"local"`` (default): a pool of ``workers`` processes (``concurrent.futures`` with ``spawn``), started
  once and warmed up (torch and attnlab imported, then the caller's ``warm_up``, e.g. a two-step training
  run, so that no job pays the one-off costs of a fresh process in its time or its peak memory), each
  running jobs one after the other. Before each job
  a worker frees what the previous one left (``gc`` and glibc's ``malloc_trim``), so its peak-memory
  figure is its own. A worker that dies breaks the pool: the jobs that had not finished are tried once more,
  each in a fresh one-worker pool, so only a job that kills its worker again is reported as failed;
- ``"ray"``: every job a Ray task with ``cpus_per_job`` CPUs (``pip install -e ".[ray]" -c
  constraints.txt``); ``address`` joins an existing cluster (checked to be reachable within seconds),
  without it a local Ray instance starts and stops with the call. A task whose worker dies is retried once
  by Ray, then reported as failed.

A job that raises is reported as a failed :class:`Outcome` (``"TypeName: message"``); it never stops the others.
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import multiprocessing
import os
import re
import socket
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from attnlab.utils.checks import describe, fail

__all__ = ["EXECUTORS", "Outcome", "run_jobs", "check_ray_address", "import_ray", "RAY_INSTALL"]

EXECUTORS = ("inline", "local", "ray")
#: how to install the optional Ray extra (with the torch pin)
RAY_INSTALL = 'pip install -e ".[ray]" -c constraints.txt'
#: modules a local worker imports before its first job, so that no job pays for them
WARM_MODULES = ("torch", "attnlab.models", "attnlab.tasks", "attnlab.train", "attnlab.compare")
#: how often a job whose worker process died is tried in all
ATTEMPTS = 2


@dataclass
class Outcome:
    """What one job gave: ``value`` if ``ok``, else ``error`` ("TypeName: message"); ``seconds`` in its worker."""

    ok: bool
    value: Any = None
    error: str = ""
    seconds: float = 0.0


def _release_memory() -> None:
    """Return what earlier jobs freed to the OS (so the next job's peak-RSS rise is its own)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


_WARMED = False


def _warm_up(warm_up: Callable | None = None) -> None:
    """Import what every job needs and run ``warm_up`` once in this worker process."""
    global _WARMED
    if _WARMED:
        return
    for name in WARM_MODULES:
        importlib.import_module(name)
    if warm_up is not None:
        warm_up()
    _WARMED = True


def _call(fn: Callable, args: tuple, warm_up: Callable | None = None) -> Outcome:
    """Run one job in a worker (warmed up on its first job, e.g. in a Ray worker); an exception becomes a
    failed Outcome."""
    _warm_up(warm_up)
    _release_memory()
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except Exception as e:  # noqa: BLE001 - a failing job is reported, the others go on
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return Outcome(False, error=f"{type(e).__name__}: {first}", seconds=time.perf_counter() - t0)
    return Outcome(True, value, seconds=time.perf_counter() - t0)


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fail(name, f"an int >= {low}", describe(value), TypeError if not isinstance(value, int) else ValueError)
    return value


def run_jobs(fn: Callable, jobs: Sequence[tuple], *, executor: str = "local", workers: int = 1,
             address: str | None = None, cpus_per_job: int = 1, warm_up: Callable[[], None] | None = None,
             on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
    """``[fn(*job) for job in jobs]`` as :class:`Outcome` objects, in job order (see the module for executors).

    Args:
        fn: a module-level function (workers import it by name); its results must pickle.
        jobs: argument tuples.
        executor: ``"inline"``, ``"local"`` or ``"ray"``.
        workers: local worker processes (``"local"``), or the CPUs of a local Ray instance (``"ray"`` without
            ``address``; default there: every CPU).
        address: ``"ray"`` only: the head node of an existing cluster (``host:port``, ``ray://host:port`` or
            ``"auto"``).
        cpus_per_job: ``"ray"``: CPUs Ray reserves per task.
        warm_up: a module-level function each worker process runs once before its first job (not ``"inline"``).
        on_done: called as ``on_done(index, outcome)`` as each job finishes.
    """
    if executor not in EXECUTORS:
        fail("executor", f"one of {list(EXECUTORS)}", repr(executor))
    _check_int("workers", workers)
    _check_int("cpus_per_job", cpus_per_job)
    if address is not None and executor != "ray":
        fail("address", "no address unless executor='ray' (a Ray cluster's head)", repr(address))
    jobs = [tuple(j) for j in jobs]
    done = on_done or (lambda i, o: None)
    if executor == "inline":
        outcomes = []
        for i, job in enumerate(jobs):
            outcomes.append(_call(fn, job))  # this process: no warm-up
            done(i, outcomes[-1])
        return outcomes
    if executor == "local":
        return _run_pool(fn, jobs, workers, warm_up, done)
    return _run_ray(fn, jobs, address, cpus_per_job, workers if workers > 1 else None, warm_up, done)


def _run_pool(fn, jobs, workers, warm_up, done) -> list[Outcome]:
    """All jobs in one pool; the jobs a dying worker took down with it once more, each in a pool of its own (so
    that only the job that kills its worker fails)."""
    outcomes: list[Outcome | None] = [None] * len(jobs)
    retry = _pool_round(fn, jobs, list(range(len(jobs))), workers, warm_up, outcomes, done, last=False)
    with ThreadPoolExecutor(workers) as threads:  # up to `workers` one-job pools at a time
        list(threads.map(lambda i: _pool_round(fn, jobs, [i], 1, warm_up, outcomes, done, last=True), retry))
    return outcomes


def _pool_round(fn, jobs, todo, workers, warm_up, outcomes, done, *, last: bool) -> list[int]:
    """Jobs ``todo`` in one pool; fills ``outcomes``; returns the jobs lost to a dead worker (unless ``last``)."""
    lost = []
    with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_warm_up, initargs=(warm_up,)) as pool:
        futures = {pool.submit(_call, fn, jobs[i], warm_up): i for i in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = futures[fut]
                try:
                    outcomes[i] = fut.result()
                except BrokenProcessPool:
                    if not last:
                        lost.append(i)  # its worker, or another one of the pool, died
                        continue
                    outcomes[i] = Outcome(False, error=f"BrokenProcessPool: the worker process running it died "
                                                       f"({ATTEMPTS} attempts)")
                done(i, outcomes[i])
    return sorted(lost)


def import_ray():
    """The ``ray`` module, or ImportError saying how to install the optional extra."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"executor 'ray' needs Ray, an optional extra: {RAY_INSTALL}") from e
    return ray


def check_ray_address(address: str, *, timeout: float = 3.0) -> None:
    """ValueError within ``timeout`` seconds unless ``address`` (``host:port`` or ``ray://host:port``) accepts a TCP
    connection; ``"auto"`` is left to Ray (it fails at once when no local cluster runs)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        fail("address", "a Ray head node as host:port, ray://host:port or 'auto'", repr(address))
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        fail("address", "a reachable Ray cluster (the head node's host:port)",
             f"{address!r}, which did not accept a connection within {timeout:g} s ({type(e).__name__}: {e})")


def _ray_reason(e: Exception) -> str:
    """The informative line of a Ray error: its last non-empty line (Ray puts the cause there), without colours."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _attnlab_dir() -> str:
    return str(Path(__file__).resolve().parent)


def _run_ray(fn, jobs, address, cpus_per_job, local_cpus, warm_up, done) -> list[Outcome]:
    ray = import_ray()
    if address is not None:
        check_ray_address(address)
    started = not ray.is_initialized()
    if started:
        kw = dict(include_dashboard=False, log_to_driver=False)
        if address is None:
            kw["num_cpus"] = local_cpus or os.cpu_count()
        else:  # a remote cluster runs this checkout of attnlab (it needs torch and the dependencies installed)
            kw.update(address=address, runtime_env={"py_modules": [_attnlab_dir()]})
        ray.init(**kw)
    try:
        task = ray.remote(num_cpus=cpus_per_job, max_retries=ATTEMPTS - 1)(_call)
        refs = [task.remote(fn, job, warm_up) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[Outcome | None] = [None] * len(jobs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                outcomes[i] = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a lost worker or node: that job failed, the others go on
                outcomes[i] = Outcome(False, error=f"{type(e).__name__}: {_ray_reason(e)}")
            done(i, outcomes[i])
        return outcomes
    finally:
        if started:
            ray.shutdown()
