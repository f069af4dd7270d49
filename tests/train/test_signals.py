"""StopSignals: the first SIGINT / SIGTERM is a stop request, the second raises at once; handlers are restored;
off the main thread nothing is installed. In train(): a stop request ends the run at the step boundary with a
checkpoint (the subprocess tests with real signals inside a step and a save are in test_checkpoint.py)."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from attnlab.train import TrainConfig, train
from attnlab.train.signals import StopSignals


@pytest.mark.parametrize("sig, name", [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_first_signal_requests_a_stop_and_the_second_raises(sig, name, capfd):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with StopSignals() as stop:
        assert stop.active and stop.requested is None
        os.kill(os.getpid(), sig)
        assert stop.requested == name  # the handler ran, nothing was raised
        with pytest.raises(KeyboardInterrupt, match=f"{name} received twice"):
            os.kill(os.getpid(), sig)
    assert {s: signal.getsignal(s) for s in before} == before
    err = capfd.readouterr().err
    assert f"{name} received: stopping training after this step and saving a checkpoint" in err
    assert f"{name} received again: quitting at once" in err


def test_disabled_or_off_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(enabled=False) as stop:
        assert not stop.active and signal.getsignal(signal.SIGTERM) is before
    seen = []

    def worker():
        with StopSignals() as s:
            seen.append(s.active)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [False]


def test_a_stop_request_ends_train_at_the_step_boundary_with_a_checkpoint(tmp_path, make_tiny, resume_config,
                                                                          assert_same_run):
    model, task = make_tiny()
    config = TrainConfig(**resume_config)
    before = signal.getsignal(signal.SIGTERM)
    stop_at_7 = lambda step, row: os.kill(os.getpid(), signal.SIGTERM) if step == 7 else None  # noqa: E731
    r = train(model, task, config, out_dir=tmp_path, progress=False, callbacks=[stop_at_7])
    assert r.interrupted == "SIGTERM" and r.steps_done == 7 and r.final_eval is None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000007"]
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the run
    fresh, _ = make_tiny(seed=9)
    assert_same_run(train(fresh, task, config, out_dir=tmp_path, resume=True, progress=False), fresh)


def test_with_handle_signals_false_the_signal_keeps_its_own_behaviour(make_tiny):
    model, task = make_tiny()
    raise_at_2 = lambda step, row: os.kill(os.getpid(), signal.SIGINT) if step == 2 else None  # noqa: E731
    # A shell starts background jobs (`cmd &`, nohup) with SIGINT ignored, and Python keeps that: give the
    # test the disposition a terminal session has, and put the inherited one back afterwards.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # Python's default SIGINT handler
            train(model, task, TrainConfig(steps=5, batch_size=4), progress=False, callbacks=[raise_at_2],
                  handle_signals=False)
    finally:
        signal.signal(signal.SIGINT, inherited)
