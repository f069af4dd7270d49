"""The run-folder lock: a second writer (another process) is refused with a message naming the holder; a
lock left by a killed process is taken over with a warning; release removes the file."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from attnlab.train import TrainConfig, train
from attnlab.train.run_lock import LOCK_NAME, RunLock, RunLockedError

_HOLDING_RUN = """
import pathlib, sys, time
import torch
torch.set_num_threads(1)
from attnlab.train import TrainConfig, train
{recipe}
out = pathlib.Path(sys.argv[1])

def hold(step, row):  # after step 1: say so, then wait until the test lets go
    if step == 1:
        (out.parent / "ready").write_text("")
        while not (out.parent / "go").exists():
            time.sleep(0.02)

model, task = make_tiny()
r = train(model, task, TrainConfig(steps=3, batch_size=4, eval_every=0), out_dir=out, progress=False, callbacks=[hold])
print("done", r.steps_done)
"""


def _wait_for(path, proc, timeout=60.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.02)


def test_a_second_process_is_refused_naming_the_holder(tmp_path, tiny_recipe, make_tiny):
    out = tmp_path / "run"
    script = tmp_path / "holding_run.py"
    script.write_text(_HOLDING_RUN.format(recipe=tiny_recipe))
    holder = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for(tmp_path / "ready", holder)
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        model, task = make_tiny()
        for kwargs in ({"overwrite": True}, {"resume": True}):  # neither may touch a folder in use
            with pytest.raises(RunLockedError, match=re.escape(f"received {out} locked by pid {holder.pid} on host "
                                                               f"{socket.gethostname()}, started {info['started']}")):
                train(model, task, TrainConfig(steps=3, batch_size=4, eval_every=0), out_dir=out, progress=False,
                      **kwargs)
        assert json.loads((out / LOCK_NAME).read_text()) == info  # still the holder's
    finally:
        (tmp_path / "go").write_text("")
        stdout, stderr = holder.communicate(timeout=120)
    assert holder.returncode == 0 and "done 3" in stdout, stderr
    assert not (out / LOCK_NAME).exists()  # released at the end of the run
    r = train(model, task, TrainConfig(steps=3, batch_size=4, eval_every=0), out_dir=out, resume=True, progress=False)
    assert r.steps_done == 3


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path):
    code = (f"import os, signal; from attnlab.train.run_lock import RunLock; lock = RunLock({str(tmp_path)!r}).acquire(); "
            f"os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()
    dead = json.loads((tmp_path / LOCK_NAME).read_text())
    assert dead["pid"] == proc.pid
    with pytest.warns(UserWarning, match=rf"took over the stale run lock of pid {proc.pid} on host "
                                         rf"{socket.gethostname()}, started .*, which is no longer running"):
        lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid() == lock.holder["pid"]
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists() and not lock.held


def test_release_is_idempotent_and_the_context_manager_locks_the_block(tmp_path):
    with RunLock(tmp_path / "new") as lock:
        assert lock.held and (tmp_path / "new" / LOCK_NAME).exists()
        assert lock.acquire() is lock  # already held by this object: no-op
        with pytest.raises(RunLockedError, match=r"\(this process: finish\(\) or close\(\) the other Trainer"):
            RunLock(tmp_path / "new").acquire()
    assert not (tmp_path / "new" / LOCK_NAME).exists()
    lock.release()
    RunLock(tmp_path / "new").acquire().release()  # free again


def test_an_abandoned_lock_object_lets_go_when_collected(tmp_path):
    RunLock(tmp_path).acquire()  # no reference kept: collected at once, which releases it
    again = RunLock(tmp_path).acquire()
    assert again.held
    again.release()
