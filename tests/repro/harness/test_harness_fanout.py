"""attnlab.repro.harness.fanout: a reproduction's trials (closures) fanned out over a local pool or Ray give the
serial run's comparison, models included; a failing, dying or stalled trial is a clear error; bad placements are
refused. The pool test with a fake trial is fast; the ones training real models, killing workers or starting Ray
are slow. Ray tests skip (with the install command) when Ray is absent."""
from __future__ import annotations

import os
import sys
import time

import pytest
import torch

from attnlab.distributed.local_ranks import free_port
from attnlab.executors import RAY_INSTALL
from attnlab.repro.harness.arms import Arm, mixer_arm
from attnlab.repro.harness.fanout import TrialFailed, current_session, run_trials, trials_on
from attnlab.repro.harness.protocol import Chance, Protocol, Trial, fair_arms, train_fair

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason=f"Ray is not installed: {RAY_INSTALL}")

PROTOCOL = Protocol((1e-3, 1e-2, 1e-1), seeds=(0, 1))


def fake_trial(best: dict, *, fail_at: float | None = None):
    """A closure over ``best`` (each arm's best LR), as a reproduction's trial is: the val loss is lowest at the
    arm's best LR plus seeded noise; test runs keep a small seeded model; ``fail_at``: raise at that LR."""

    def trial(arm, lr, seed, steps, split):
        if lr == fail_at:
            raise ValueError(f"lr {lr} refused")
        torch.manual_seed(seed)
        noise = float(torch.rand(()))
        model = torch.nn.Linear(3, 2) if split == "test" else None
        return Trial(lr=lr, seed=seed, steps=steps, split=split, val_loss=abs(lr - best[arm.name]) + noise,
                     metric=noise * lr, measured={"pid": os.getpid()}, model=model)

    return trial


ARMS = [Arm("a", None), Arm("b", None), Arm("c", None)]
BEST = {"a": 1e-2, "b": 1e-1, "c": 1e-3}


def _compare(trial, **kw):
    return fair_arms(ARMS, trial, PROTOCOL, steps=8, name="toy", metric="m", chance=Chance(0.0, 0.01), seed=3, **kw)


def _same(a, b) -> None:
    """Two comparisons are the same: record, trial by trial, kept models weight for weight."""
    assert a.record() == b.record() and list(a.runs) == list(b.runs) and list(a.sweep) == list(b.sweep)
    for arm in a.runs:
        for x, y in zip(a.sweep.get(arm, []) + a.runs[arm], b.sweep.get(arm, []) + b.runs[arm]):
            assert (x.lr, x.seed, x.steps, x.split, x.val_loss, x.metric, x.curve) == \
                (y.lr, y.seed, y.steps, y.split, y.val_loss, y.metric, y.curve)
            assert (x.model is None) == (y.model is None)
            if x.model is not None:
                assert all(torch.equal(p, q) for p, q in zip(x.model.state_dict().values(),
                                                             y.model.state_dict().values()))


def test_a_pool_of_two_gives_the_serial_comparison_and_a_failing_trial_is_named():
    serial = _compare(fake_trial(BEST))
    assert serial.lr == BEST
    with trials_on("local", 2) as session:
        assert current_session() is session and session.parallel
        pooled = _compare(fake_trial(BEST))
        given = _compare(fake_trial(BEST), chosen={"b": 1e-3})  # b's sweep skipped, its LR given
        with pytest.raises(TrialFailed, match=r"3 of 9 trials failed on executor 'local'; the first, toy: arm 'a' at "
                                              r"lr 0.1, seed 1003, 2 steps, split 'val': ValueError: lr 0.1 refused"):
            _compare(fake_trial(BEST, fail_at=1e-1))  # the same pool serves a second comparison
        hits = []

        def counting(x):  # a closure with state: each worker keeps its one copy for the batch
            hits.append(x)
            return os.getpid(), len(hits)

        got = run_trials(counting, [(i,) for i in range(6)])
        for pid in {p for p, _ in got}:
            mine = sorted(n for p, n in got if p == pid)
            assert mine == list(range(1, len(mine) + 1))
        assert hits == []  # written in the workers, not here
    _same(serial, pooled)
    _same(_compare(fake_trial(BEST), chosen={"b": 1e-3}), given)
    assert given.lr["b"] == 1e-3 and "b" not in given.sweep and list(given.runs) == ["a", "b", "c"]
    pids = {t.measured["pid"] for ts in pooled.runs.values() for t in ts}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert session.trials == 9 + 6 + 6 + 6 + 6 + 6 and session.cpu_seconds >= 0 and not session.parallel
    assert current_session() is None


def test_outside_a_placement_trials_run_here_in_order():
    seen = []
    assert run_trials(lambda x, y: (x * y, os.getpid()), [(1, 2), (3, 4)], on_done=seen.append) == \
        [(2, os.getpid()), (12, os.getpid())] == seen
    with trials_on("local", 1) as session:  # one local worker: the serial run, no pool
        assert not session.parallel and _compare(fake_trial(BEST)).lr == BEST


@pytest.mark.parametrize("kw, error, match", [
    (dict(workers=0), ValueError, "workers: expected an int >= 1, received int 0"),
    (dict(workers=2.0), TypeError, "workers: expected an int >= 1"),
    (dict(threads=0), ValueError, "threads: expected an int >= 1"),
    (dict(executor="cluster"), ValueError, r"executor: expected one of \['local', 'ray'\]"),
    (dict(address="localhost:6379"), ValueError, "address: expected no address unless executor='ray'"),
])
def test_bad_placements_are_named(kw, error, match):
    with pytest.raises(error, match=match):
        with trials_on(**kw):
            pass


def test_without_ray_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e \"\.\[ray\]\" -c constraints\.txt"):
        with trials_on("ray"):
            pass


@needs_ray
def test_an_unreachable_ray_address_is_refused_within_seconds():
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="address: expected a reachable Ray cluster"):
        with trials_on("ray", address=f"127.0.0.1:{free_port()}"):
            pass
    assert time.monotonic() - t0 < 10


def dying_trial(arm, lr, seed, steps, split):
    """Kills its worker process at LR 0.1, sleeps at LR 0.01 (a stalled trial), else a plain result."""
    if lr == 1e-1:
        os._exit(9)
    if lr == 1e-2:
        time.sleep(600)
    return Trial(lr=lr, seed=seed, steps=steps, split=split, val_loss=lr, metric=lr)


@pytest.mark.slow  # a pool broken by a dying worker, then retries in fresh pools, then a timeout: 15-40 s
def test_a_dying_worker_or_a_stalled_trial_is_an_error_not_a_hang():
    one = Protocol((1e-1,), seeds=(0,))
    with trials_on("local", 2) as _:
        with pytest.raises(TrialFailed, match=r"arm 'a' at lr 0.1, seed 0, 8 steps, split 'test': BrokenProcessPool: "
                                              r"the worker process running it died \(2 attempts\)"):
            fair_arms([Arm("a", None)], dying_trial, one, steps=8, name="toy", metric="m", chance=None)
    t0 = time.monotonic()
    with trials_on("local", 2, timeout=5) as _:
        with pytest.raises(TrialFailed, match=r"lr 0.01, .*TimeoutError: no job finished within 5 s"):
            fair_arms([Arm("a", None)], dying_trial, Protocol((1e-2,), seeds=(0,)), steps=8, name="toy",
                      metric="m", chance=None)
    assert time.monotonic() - t0 < 60


def _tiny_real(**placement):
    """A tiny real comparison (two mixers, a two-LR sweep, two seeds, models kept), under ``placement``."""
    from attnlab.tasks import create
    from attnlab.train import TrainConfig

    make = lambda seed: create("associative_recall", vocab_size=16, seq_len=12, num_pairs=2, seed=seed)  # noqa
    template = TrainConfig(steps=6, batch_size=4, warmup_steps=1, eval_every=3, eval_batches=1, log_every=1)
    arms = [mixer_arm("softmax", "softmax", dim=16, depth=1, num_heads=2),
            mixer_arm("linear", "linear_attention", dim=16, depth=1, num_heads=2)]
    run = lambda: train_fair(arms, make, template, Protocol((1e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5),  # noqa
                             name="recall", chance=Chance(0.5, 0.05), keep_models=True)
    if not placement:
        return run()
    with trials_on(**placement):
        return run()


@pytest.mark.slow  # trains 16 tiny models three times, starts a pool and a local Ray instance: 30-90 s
def test_a_real_comparison_is_the_same_serial_on_a_pool_and_on_ray():
    serial = _tiny_real()
    _same(serial, _tiny_real(executor="local", workers=2))
    if HAVE_RAY:
        _same(serial, _tiny_real(executor="ray", workers=2))
