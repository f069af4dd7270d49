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

__all__ = ["EXECUTORS", "Outcome", "run_jobs", "JobRunner", "check_ray_address", "import_ray", "RAY_INSTALL"]

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
             on_done: Callable[[int, Outcome], None] | None = None, timeout: float | None = None) -> list[Outcome]:
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
        timeout: see :class:`JobRunner`.

    One call starts and stops its workers (or Ray); :class:`JobRunner` keeps them across several batches.
    """
    with JobRunner(executor=executor, workers=workers, address=address, cpus_per_job=cpus_per_job, warm_up=warm_up,
                   timeout=timeout) as runner:
        return runner.run(fn, jobs, on_done=on_done)


class JobRunner:
    """Where several batches of jobs run, kept open between them: a pool of warm local worker processes, or a
    connection to Ray (a local instance it started, or a cluster it joined), started on ``__enter__`` (Ray) or at
    the first batch (the pool) and stopped on ``__exit__``. Arguments as :func:`run_jobs`, which is one batch on a
    runner of its own.

    ``timeout`` (seconds, None: none): the longest a batch waits for its next job to finish (a local pool's
    workers are started and warmed up before the clock runs); past it, the jobs still running or queued are
    reported failed (``"TimeoutError: ..."``), the pool's worker processes are stopped (the next batch starts a
    fresh pool) or the Ray tasks cancelled, so nothing hangs.
    """

    def __init__(self, *, executor: str = "local", workers: int = 1, address: str | None = None,
                 cpus_per_job: int = 1, warm_up: Callable[[], None] | None = None, timeout: float | None = None):
        if executor not in EXECUTORS:
            fail("executor", f"one of {list(EXECUTORS)}", repr(executor))
        _check_int("workers", workers)
        _check_int("cpus_per_job", cpus_per_job)
        if address is not None and executor != "ray":
            fail("address", "no address unless executor='ray' (a Ray cluster's head)", repr(address))
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            fail("timeout", "None or seconds > 0", describe(timeout))
        self.executor, self.workers, self.address = executor, workers, address
        self.cpus_per_job, self.warm_up, self.timeout = cpus_per_job, warm_up, timeout
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._ray = None
        self._ray_started = False

    def __enter__(self) -> "JobRunner":
        if self.executor == "ray":
            self._ray, self._ray_started = _start_ray(self.address, self.workers if self.workers > 1 else None)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool's workers and the Ray instance this runner started (a joined cluster is left running)."""
        self._drop_pool()
        if self._ray_started:
            self._ray.shutdown()
            self._ray_started = False

    def run(self, fn: Callable, jobs: Sequence[tuple],
            on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        """One batch: ``[fn(*job) for job in jobs]`` as :class:`Outcome` objects, in job order (:func:`run_jobs`)."""
        jobs = [tuple(j) for j in jobs]
        done = on_done or (lambda i, o: None)
        if self.executor == "inline":
            outcomes = []
            for i, job in enumerate(jobs):
                outcomes.append(_call(fn, job))  # this process: no warm-up
                done(i, outcomes[-1])
            return outcomes
        if self.executor == "local":
            return self._run_pool(fn, jobs, done)
        if self._ray is None:
            raise RuntimeError("JobRunner(executor='ray').run: expected an open runner (use it in a with block)")
        return _run_ray(self._ray, fn, jobs, self.cpus_per_job, self.warm_up, done, self.timeout)

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        """A pool of ``workers`` processes, started and warmed up before it is returned (so that ``timeout`` never
        counts a worker's start); RuntimeError if a worker dies while starting."""
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up,
                                   initargs=(self.warm_up,))
        try:
            for fut in [pool.submit(os.getpid) for _ in range(workers)]:
                fut.result()
        except BrokenProcessPool as e:
            pool.shutdown(wait=True, cancel_futures=True)
            raise RuntimeError(f"executor 'local': a worker process died while starting (importing "
                               f"{', '.join(WARM_MODULES)} and warming up): {e}") from e
        return pool

    def _drop_pool(self, *, kill: bool = False) -> None:
        if self._pool is not None:
            _stop_pool(self._pool, kill=kill)
            self._pool = None

    def _run_pool(self, fn, jobs, done) -> list[Outcome]:
        """All jobs in the runner's pool; the jobs a dying worker took down with it once more, each in a pool of its
        own (so that only the job that kills its worker fails)."""
        outcomes: list[Outcome | None] = [None] * len(jobs)
        if not jobs:
            return []
        size = min(self.workers, len(jobs))
        if self._pool is not None and self._pool_size < size:
            self._drop_pool()  # a larger batch than the pool was started for
        if self._pool is None:
            self._pool, self._pool_size = self._new_pool(size), size
        retry, broken = self._pool_round(self._pool, fn, jobs, list(range(len(jobs))), outcomes, done, last=False)
        if broken:
            self._drop_pool(kill=broken == "timeout")  # the next batch gets a fresh pool
        with ThreadPoolExecutor(self.workers) as threads:  # up to `workers` one-job pools at a time
            list(threads.map(lambda i: self._retry_alone(fn, jobs, i, outcomes, done), retry))
        return outcomes

    def _retry_alone(self, fn, jobs, i, outcomes, done) -> None:
        pool, broken = self._new_pool(1), ""
        try:
            _, broken = self._pool_round(pool, fn, jobs, [i], outcomes, done, last=True)
        finally:
            _stop_pool(pool, kill=broken == "timeout")

    def _pool_round(self, pool, fn, jobs, todo, outcomes, done, *, last: bool) -> tuple[list[int], str]:
        """Jobs ``todo`` in ``pool``; fills ``outcomes``; returns the jobs lost to a dead worker (unless ``last``)
        and whether the pool broke (``""``, ``"died"`` or ``"timeout"``)."""
        lost, broken = [], ""
        futures = {pool.submit(_call, fn, jobs[i], self.warm_up): i for i in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=self.timeout, return_when=FIRST_COMPLETED)
            if not finished:  # nothing finished within the timeout: fail what is left, stop the workers
                for fut in pending:
                    fut.cancel()
                    i = futures[fut]
                    outcomes[i] = Outcome(False, error=f"TimeoutError: no job finished within {self.timeout:g} s "
                                                       "(the workers were stopped)")
                    done(i, outcomes[i])
                return [], "timeout"
            for fut in finished:
                i = futures[fut]
                try:
                    outcomes[i] = fut.result()
                except BrokenProcessPool:
                    broken = "died"
                    if not last:
                        lost.append(i)  # its worker, or another one of the pool, died
                        continue
                    outcomes[i] = Outcome(False, error=f"BrokenProcessPool: the worker process running it died "
                                                       f"({ATTEMPTS} attempts)")
                done(i, outcomes[i])
        return sorted(lost), broken


def _stop_pool(pool: ProcessPoolExecutor, *, kill: bool) -> None:
    """Shut ``pool`` down; with ``kill``, first stop its worker processes (jobs stuck past a timeout)."""
    if kill:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before Python 3.14
            proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)


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


def _start_ray(address: str | None, local_cpus: int | None):
    """``(ray, started)``: Ray connected to ``address`` (checked first), or a local instance with ``local_cpus`` CPUs
    (default every CPU); ``started`` is whether this call started it (and so must shut it down)."""
    ray = import_ray()
    if address is not None:
        check_ray_address(address)
    if ray.is_initialized():
        return ray, False
    kw = dict(include_dashboard=False, log_to_driver=False)
    if address is None:
        kw["num_cpus"] = local_cpus or os.cpu_count()
    else:  # a remote cluster runs this checkout of attnlab (it needs torch and the dependencies installed)
        kw.update(address=address, runtime_env={"py_modules": [_attnlab_dir()]})
    ray.init(**kw)
    return ray, True


def _run_ray(ray, fn, jobs, cpus_per_job, warm_up, done, timeout) -> list[Outcome]:
    task = ray.remote(num_cpus=cpus_per_job, max_retries=ATTEMPTS - 1)(_call)
    refs = [task.remote(fn, job, warm_up) for job in jobs]
    index = {ref: i for i, ref in enumerate(refs)}
    outcomes: list[Outcome | None] = [None] * len(jobs)
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=timeout)
        if not ready:  # nothing finished within the timeout: cancel and fail what is left
            for ref in pending:
                ray.cancel(ref, force=True)
                i = index[ref]
                outcomes[i] = Outcome(False, error=f"TimeoutError: no job finished within {timeout:g} s "
                                                   "(the Ray tasks were cancelled)")
                done(i, outcomes[i])
            return outcomes
        i = index[ready[0]]
        try:
            outcomes[i] = ray.get(ready[0])
        except Exception as e:  # noqa: BLE001 - a lost worker or node: that job failed, the others go on
            outcomes[i] = Outcome(False, error=f"{type(e).__name__}: {_ray_reason(e)}")
        done(i, outcomes[i])
    return outcomes
