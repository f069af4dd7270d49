"""attnlab.executors: jobs in this process, in a pool of warm workers, on Ray; results in job order and the same
everywhere; a raising job or a dying worker fails only its own job; compare --workers gives the serial results.
Ray tests skip (with the install command) when Ray is absent; the one that starts a Ray instance is slow."""
from __future__ import annotations

import operator
import os
import sys
import time
from dataclasses import replace

import pytest

from attnlab.compare import run_compare
from attnlab.executors import RAY_INSTALL, JobRunner, Outcome, check_ray_address, import_ray, run_jobs
from attnlab.distributed.local_ranks import free_port
from attnlab.suites import SUITES

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason=f"Ray is not installed: {RAY_INSTALL}")


def square_or_fail(x):
    if x == 2:
        os._exit(7)  # the worker process dies
    if x == 3:
        raise ValueError("three is refused")
    return x * x, os.getpid()


def test_inline_runs_in_order_and_reports_a_failing_job():
    got = run_jobs(square_or_fail, [(i,) for i in (0, 1, 3, 4)], executor="inline")
    assert [o.value[0] if o.ok else o.error for o in got] == [0, 1, "ValueError: three is refused", 16]
    assert all(o.value[1] == os.getpid() for o in got if o.ok) and all(o.seconds >= 0 for o in got)


@pytest.mark.slow  # a pool of two, broken, then a pool per lost job: 10-30 s
def test_a_pool_of_two_keeps_job_order_and_a_dying_worker_fails_only_its_job():
    seen = []
    got = run_jobs(square_or_fail, [(i,) for i in range(6)], executor="local", workers=2,
                   on_done=lambda i, o: seen.append(i))
    assert [o.value[0] if o.ok else o.error.split(":")[0] for o in got] == [
        0, 1, "BrokenProcessPool", "ValueError", 16, 25]
    assert "died (2 attempts)" in got[2].error and got[3].error == "ValueError: three is refused"
    assert os.getpid() not in {o.value[1] for o in got if o.ok}
    assert sorted(seen) == list(range(6))


@pytest.mark.parametrize("kw, match", [
    (dict(executor="cluster"), "executor: expected one of"),
    (dict(workers=0), "workers: expected an int >= 1"),
    (dict(address="localhost:1"), "address: expected no address unless executor='ray'"),
    (dict(timeout=0), "timeout: expected None or seconds > 0"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        run_jobs(square_or_fail, [(1,)], **kw)


def test_compare_with_two_workers_gives_the_serial_results(tmp_path):
    suite = replace(SUITES["smoke"], mixers=("softmax", "identity", "softmax_qknorm"))  # 3 runs on 2 workers
    serial = run_compare(suite, out_dir=tmp_path / "serial", progress=False, isolate=False)
    pooled = run_compare(suite, out_dir=tmp_path / "pooled", progress=False, workers=2)
    for a, b in zip(serial.records, pooled.records):
        assert (a.mixer, a.task, a.status, a.params) == (b.mixer, b.task, b.status, b.params)
        assert a.quality == b.quality and a.val_loss == b.val_loss and a.curve == b.curve
    assert serial.overall == pooled.overall
    assert (tmp_path / "pooled" / "results.json").exists() and (tmp_path / "pooled" / "report.md").exists()


def test_an_unreachable_ray_address_is_refused_within_seconds():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=rf"address: expected a reachable Ray cluster .* '127.0.0.1:{port}', which "
                                         r"did not accept a connection within 3 s"):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 5
    with pytest.raises(ValueError, match="address: expected a Ray head node as host:port"):
        check_ray_address("no-port-here")


@needs_ray
def test_compare_with_an_unreachable_ray_address_fails_within_seconds(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="address: expected a reachable Ray cluster"):
        run_compare(SUITES["smoke"], out_dir=tmp_path, progress=False, executor="ray",
                    address=f"ray://127.0.0.1:{free_port()}")
    assert time.monotonic() - t0 < 10


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[ray\]\" -c constraints\.txt"):
        import_ray()


@needs_ray
@pytest.mark.slow  # starts and stops a local Ray instance (10-20 s)
def test_ray_gives_the_serial_results_and_reports_failures(tmp_path):
    # Ray workers import jobs by module name and do not see the test folder: a standard-library job
    got = run_jobs(operator.truediv, [(1, 1), (4, 2), (1, 0), (9, 3)], executor="ray", workers=2)
    assert [o.value if o.ok else o.error for o in got] == [1.0, 2.0, "ZeroDivisionError: division by zero", 3.0]
    t0 = time.monotonic()
    died = run_jobs(os._exit, [(7,)], executor="ray")[0]  # the Ray worker process dies (and again on the retry)
    assert not died.ok and died.error.split(":")[0].endswith("Error") and time.monotonic() - t0 < 120, died
    suite = SUITES["smoke"]
    serial = run_compare(suite, out_dir=tmp_path / "serial", progress=False, isolate=False)
    on_ray = run_compare(suite, out_dir=tmp_path / "ray", progress=False, executor="ray", workers=2)
    assert [(r.mixer, r.quality, r.val_loss, r.curve) for r in serial.records] == [
        (r.mixer, r.quality, r.val_loss, r.curve) for r in on_ray.records]
    assert isinstance(got[0], Outcome)


def pid_or_sleep(x):
    if x < 0:
        time.sleep(600)  # a stalled job
    return x, os.getpid()


@pytest.mark.slow  # two batches on one pool of two, then a stalled batch stopped by the timeout: 10-30 s
def test_a_runner_keeps_its_pool_across_batches_and_a_stalled_batch_times_out():
    with JobRunner(executor="local", workers=2, timeout=5) as runner:
        first = runner.run(pid_or_sleep, [(i,) for i in range(4)])
        second = runner.run(pid_or_sleep, [(i,) for i in range(4, 8)])
        assert [o.value[0] for o in first + second] == list(range(8))
        assert {o.value[1] for o in second} <= {o.value[1] for o in first} | {o.value[1] for o in second}
        pool_pids = {o.value[1] for o in first + second}
        assert len(pool_pids) <= 2 and os.getpid() not in pool_pids  # the same warm workers served both batches
        t0 = time.monotonic()
        stalled = runner.run(pid_or_sleep, [(-1,), (9,)])
        assert time.monotonic() - t0 < 30
        assert stalled[1].ok and stalled[1].value[0] == 9
        assert not stalled[0].ok and stalled[0].error.startswith("TimeoutError: no job finished within 5 s")
        after = runner.run(pid_or_sleep, [(10,)])  # a fresh pool after the stopped one
        assert after[0].ok and after[0].value[1] not in pool_pids
