"""Where a reproduction's trials run: one after the other in this process (the default), in a pool of local worker
processes, or as Ray tasks (issue 15).

``attnlab repro <slug> --workers N`` (or ``--executor ray [--address ...]``) runs the reproduction inside
:func:`trials_on`, which opens an :class:`attnlab.executors.JobRunner` (the engine behind ``attnlab compare
--workers`` / ``--executor ray``) for the whole run. Inside it, :func:`~attnlab.repro.harness.protocol.fair_arms`
hands its independent trials to :func:`run_trials` in two batches: every arm's LR-sweep runs, then, once each
arm's LR is chosen, every arm's seed runs. Everything else a reproduction does (its own loops, timing, plots)
stays in this process, in order; outside :func:`trials_on` :func:`run_trials` is a plain loop.

A trial is a closure made inside a reproduction (over its task maker, arms, budget, a teacher model...), which
the standard pickle cannot ship: each job carries the trial and its arguments pickled with cloudpickle, and its
result comes back the same way, so a kept model (:attr:`~attnlab.repro.harness.protocol.Trial.model`) returns
whole. Each worker unpickles a batch's trial once and keeps its copy for the batch's trials it runs, so a cache
the closure holds (``fod``'s extractor per seed) serves them. So a trial must be a function of its arguments:
it seeds the RNG itself, returns in its :class:`~attnlab.repro.harness.protocol.Trial` everything the
reproduction reads afterwards (a dict it writes aside stays in the worker), and caches only what its arguments
determine, as :func:`~attnlab.repro.harness.protocol.training_trial` does; then the figures are those of the
serial run, bit for bit. Each worker runs torch on ``threads`` threads (default 1, the serial
run's default; a Ray task reserves that many CPUs). The CPU time of the trials run in workers is summed in
:attr:`TrialSession.cpu_seconds` (the runner adds it to the run's).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from attnlab.executors import JobRunner, Outcome
from attnlab.utils.checks import describe, fail
from attnlab.utils.threads import torch_threads

__all__ = ["TrialSession", "TrialFailed", "trials_on", "run_trials", "current_session", "run_pickled",
           "TRIAL_EXECUTORS"]

#: The engines a reproduction's trials can run on (``"local"`` with one worker is the serial run).
TRIAL_EXECUTORS = ("local", "ray")


class TrialFailed(RuntimeError):
    """A trial run in a worker raised, its worker process died, or it passed the timeout."""


@dataclass
class TrialSession:
    """An open placement for trials: ``executor`` (``"local"`` or ``"ray"``), ``workers``, ``address``, torch
    ``threads`` per trial, the ``runner`` (None: the serial run) and what ran in workers (``trials``, their
    ``cpu_seconds``)."""

    executor: str = "local"
    workers: int = 1
    address: str | None = None
    threads: int = 1
    timeout: float | None = None
    runner: JobRunner | None = field(default=None, repr=False)
    trials: int = 0
    cpu_seconds: float = 0.0

    @property
    def parallel(self) -> bool:
        """Whether trials are shipped to workers (False: they run here, one after the other)."""
        return self.runner is not None

    def describe(self) -> dict:
        """The placement as JSON for ``result.json``."""
        return {"executor": self.executor, "workers": self.workers, "address": self.address,
                "threads_per_trial": self.threads, "trials_in_workers": self.trials,
                "worker_cpu_seconds": round(self.cpu_seconds, 2)}


_SESSION: ContextVar[TrialSession | None] = ContextVar("attnlab_trial_session", default=None)


def current_session() -> TrialSession | None:
    """The placement opened by the innermost :func:`trials_on`, or None (trials run here)."""
    return _SESSION.get()


@contextmanager
def trials_on(executor: str = "local", workers: int = 1, address: str | None = None, *, threads: int = 1,
              timeout: float | None = None) -> Iterator[TrialSession]:
    """Run the trials of the :func:`~attnlab.repro.harness.protocol.fair_arms` calls inside the block on
    ``executor``: ``"local"`` with ``workers`` processes (1: in this process, one after the other) or ``"ray"``
    (each trial a Ray task with ``threads`` CPUs; ``address`` joins a cluster, checked within seconds; without
    it a local Ray instance with ``workers`` CPUs, or every CPU when ``workers`` is 1, starts and stops with the
    block). ``timeout``: the longest a batch waits for its next trial (None: no limit). Yields the
    :class:`TrialSession`. Blocks do not nest (the inner one would start a second pool): RuntimeError.
    """
    if executor not in TRIAL_EXECUTORS:
        fail("executor", f"one of {list(TRIAL_EXECUTORS)}", repr(executor))
    for name, value in (("workers", workers), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(name, "an int >= 1", describe(value), TypeError if not isinstance(value, int) else ValueError)
    if address is not None and executor != "ray":
        fail("address", "no address unless executor='ray' (a Ray cluster's head)", repr(address))
    if _SESSION.get() is not None and _SESSION.get().parallel:
        raise RuntimeError("trials_on: expected no enclosing parallel placement (trials are already fanned out)")
    session = TrialSession(executor, workers, address, threads, timeout)
    if executor == "local" and workers == 1:
        token = _SESSION.set(session)
        try:
            yield session
        finally:
            _SESSION.reset(token)
        return
    with JobRunner(executor=executor, workers=workers, address=address, cpus_per_job=threads,
                   timeout=timeout) as runner:
        session.runner = runner
        token = _SESSION.set(session)
        try:
            yield session
        finally:
            _SESSION.reset(token)
            session.runner = None


#: Trials unpickled in this worker process, by the SHA-1 of their pickle (the last few batches' trials).
_TRIALS: dict[str, Callable] = {}
_KEEP_TRIALS = 4


def run_pickled(trial_blob: bytes, args_blob: bytes, threads: int) -> bytes:
    """A job in a worker: ``trial(*args)`` from ``cloudpickle.dumps(trial)`` and ``cloudpickle.dumps(args)``, on
    ``threads`` torch threads; returns ``cloudpickle.dumps((result, cpu_seconds))``. A worker unpickles a batch's
    trial once and keeps it for the batch's next jobs it runs (so a cache the closure holds serves them)."""
    import hashlib

    import cloudpickle

    key = hashlib.sha1(trial_blob).hexdigest()
    trial = _TRIALS.get(key)
    if trial is None:
        while len(_TRIALS) >= _KEEP_TRIALS:
            _TRIALS.pop(next(iter(_TRIALS)))
        trial = _TRIALS[key] = cloudpickle.loads(trial_blob)
    args = cloudpickle.loads(args_blob)
    c0 = time.process_time()
    with torch_threads(threads):
        value = trial(*args)
    return cloudpickle.dumps((value, time.process_time() - c0))


def run_trials(trial: Callable[..., Any], calls: Sequence[tuple], *, on_done: Callable[[Any], None] | None = None,
               label: Callable[[tuple], str] = repr) -> list:
    """``[trial(*c) for c in calls]``, in order: here (no parallel :func:`trials_on` open) or in its workers.

    ``on_done(result)`` is called as each trial finishes (in finishing order). A trial that fails in a worker
    raises :class:`TrialFailed` once the batch is over, naming it (``label(call)``) and its error.
    """
    session = _SESSION.get()
    if session is None or not session.parallel:
        out = []
        for c in calls:
            out.append(trial(*c))
            if on_done is not None:
                on_done(out[-1])
        return out
    import cloudpickle

    blob = cloudpickle.dumps(trial)  # once per batch: the workers key their copy of the trial by it
    jobs = [(blob, cloudpickle.dumps(tuple(c)), session.threads) for c in calls]
    results: list = [None] * len(calls)

    def finished(i: int, o: Outcome) -> None:
        if o.ok:
            results[i], cpu = cloudpickle.loads(o.value)
            session.trials += 1
            session.cpu_seconds += cpu
            if on_done is not None:
                on_done(results[i])

    outcomes = session.runner.run(run_pickled, jobs, on_done=finished)
    failed = [(c, o) for c, o in zip(calls, outcomes) if not o.ok]
    if failed:
        c, o = failed[0]
        raise TrialFailed(f"{len(failed)} of {len(calls)} trials failed on executor {session.executor!r}; the "
                          f"first, {label(c)}: {o.error}")
    return results
