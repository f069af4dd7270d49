"""``attnlab train`` under torchrun: the session outside and inside a group, collective failures turned into
RankLost (naming the last checkpoint), the strategy per model; end to end with torchrun and with a killed or
stopped rank (slow: real processes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from attnlab.distributed import DataParallel, SequenceParallel
from attnlab.distributed.launch import RankLost, is_collective_failure, make_strategy, torchrun_session
from attnlab.distributed.local_ranks import free_port
from attnlab.models import SequenceModel

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ARGS = ["-m", "attnlab", "train", "--task", "associative_recall", "--task-arg", "seq_len=32", "--task-arg",
              "num_pairs=4", "--task-arg", "vocab_size=32", "--batch-size", "8", "--dim", "16", "--heads", "2",
              "--eval-every", "0", "--no-progress"]


@pytest.fixture
def torchrun_env(monkeypatch):
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(k, v)


def test_outside_torchrun_the_session_is_one_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    with torchrun_session() as s:
        assert (s.rank, s.world_size, s.distributed, s.is_writer) == (0, 1, False, True)
        assert not dist.is_initialized()


def test_a_collective_failure_becomes_rank_lost_naming_the_last_checkpoint(torchrun_env, tmp_path):
    (tmp_path / "checkpoints" / "step_00000040").mkdir(parents=True)
    with pytest.raises(RankLost) as info:
        with torchrun_session(timeout=7, out_dir=tmp_path) as s:
            assert s.distributed and dist.is_initialized()
            raise RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:21920")
    msg = str(info.value)
    assert msg.startswith("rank 0 of 1: a collective failed, so another rank died or did not answer within the 7 s")
    assert "step_00000040 (step 40)" in msg and "--resume" in msg and "Connection closed by peer" in msg
    assert not dist.is_initialized()


def test_other_errors_pass_through(torchrun_env):
    with pytest.raises(ZeroDivisionError):
        with torchrun_session(timeout=5):
            raise ZeroDivisionError
    assert not dist.is_initialized()


@pytest.mark.parametrize("msg, lost", [
    ("Timed out waiting 10000ms for recv operation to complete", True),
    ("Read error [127.0.0.1]:8100: Connection reset by peer", True),
    ("mat1 and mat2 shapes cannot be multiplied", False),
])
def test_is_collective_failure(msg, lost):
    assert is_collective_failure(RuntimeError(msg)) is lost
    assert not is_collective_failure(ValueError(msg))


def test_make_strategy_follows_the_model():
    lm = dict(vocab_size=8, dim=8, depth=1, num_heads=2, max_len=16)
    assert isinstance(make_strategy(SequenceModel(**lm), batch_size=4, seq_len=16), DataParallel)
    sp = make_strategy(SequenceModel(**lm, sequence_parallel="ring"), batch_size=4, seq_len=16)
    assert isinstance(sp, SequenceParallel)


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def _summary(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


@pytest.mark.slow  # torchrun, two ranks and a one-process run: 15-40 s
def test_torchrun_data_parallel_matches_one_process(tmp_path):
    one = subprocess.run([sys.executable, *TRAIN_ARGS, "--steps", "8", "--out", str(tmp_path / "one")], env=_env(),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *TRAIN_ARGS, "--steps", "8", "--out", str(tmp_path / "two")], env=_env(),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr[-2000:] + two.stderr[-2000:]
    a, b = _summary(one.stdout), _summary(two.stdout)
    assert b["world_size"] == 2 and b["steps"] == 8
    assert abs(a["final_eval"]["loss"] - b["final_eval"]["loss"]) < 1e-5 * abs(a["final_eval"]["loss"])
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step_00000008"]


@pytest.mark.slow  # two training processes, one of them killed: 20-60 s
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_lost_rank_stops_the_other_with_a_clear_error(tmp_path, how):
    from attnlab.train import load_latest

    port, out, timeout = free_port(), tmp_path / "run", 8
    cmd = [sys.executable, *TRAIN_ARGS, "--steps", "100000", "--ckpt-every", "20", "--out", str(out),
           "--dist-timeout", str(timeout)]
    procs = [subprocess.Popen(cmd, env=_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                                            MASTER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for r in range(2)]
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoints").is_dir() or not any((out / "checkpoints").glob("step_*")):
            assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].stderr.read()[-2000:]
            time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(procs[1].pid, getattr(signal, how))
        _, err = procs[0].communicate(timeout=timeout + 60)
        waited = time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 1 and waited < timeout + 30, (procs[0].returncode, waited, err[-2000:])
    assert "attnlab train: rank 0 of 2: a collective failed" in err and "Traceback" not in err
    assert "--resume" in err and "Last complete checkpoint: " in err
    ck = load_latest(out / "checkpoints")  # the last complete checkpoint reads back
    assert ck is not None and ck.step % 20 == 0 and f"step_{ck.step:08d}" in err


@pytest.mark.slow  # torchrun and two training ranks: 20-60 s
def test_sigterm_to_torchrun_stops_both_ranks_at_one_step_with_a_checkpoint_and_the_resume_command(tmp_path):
    """What a scheduler does: SIGTERM to the torchrun agent, which forwards it to the ranks; both stop after the
    same step (they agree on it), rank 0 saves there and prints the torchrun command that resumes; the run
    folder's lock is released."""
    from attnlab.train import load_latest
    from attnlab.train.run_lock import RunLock

    out = tmp_path / "run"
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              *TRAIN_ARGS, "--steps", "100000", "--ckpt-every", "50", "--out", str(out)],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoints").is_dir() or not any((out / "checkpoints").glob("step_*")):
            assert time.monotonic() < deadline and agent.poll() is None, agent.stderr.read()[-2000:]
            time.sleep(0.5)
        agent.send_signal(signal.SIGTERM)
        stdout, err = agent.communicate(timeout=120)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    stopped = _summary(stdout)
    assert stopped["interrupted"] == "SIGTERM" and stopped["world_size"] == 2, err[-2000:]
    assert load_latest(out / "checkpoints").step == stopped["steps"]
    assert err.count(f"attnlab train: stopped by SIGTERM after step {stopped['steps']} of 100000") == 1
    assert "  torchrun --nproc-per-node 2 -m attnlab train --task associative_recall" in err
    assert f"--out {out} --resume" in err
    with RunLock(out):  # free again
        pass
