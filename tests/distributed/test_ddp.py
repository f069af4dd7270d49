"""Data-parallel training on 2 gloo ranks (attnlab.distributed.DataParallel) against one process.

The tiny run (conftest.TRAIN: 6 steps of 8 examples, associative recall, a 2-layer causal LM) is trained
once in this process and, in one 2-rank session, with the batch split in halves. Tolerances, stated: the
per-step losses, gradient norms and evaluations agree to 1e-5 relative and the final weights to 2e-5
absolute (the split matmuls sum in another order; measured differences ~1e-7). A run resumed at the same world
size is bit-identical to the uninterrupted one, also with dropout (reseeded per step and rank); runs resumed
across world sizes (2 -> 1 and 1 -> 2) match the uninterrupted runs to the tolerances above.
"""
from __future__ import annotations

import json

import pytest
import torch

from attnlab.distributed.ddp import DataParallel, step_seed

LOSS_TOL, WEIGHT_TOL = 1e-5, 2e-5


def assert_same_run(a: dict, b: dict, *, exact: bool = False):
    rtol = 0.0 if exact else LOSS_TOL
    for key in ("loss", "grad_norm", "evals"):
        assert len(a[key]) == len(b[key]) and a[key], key
        torch.testing.assert_close(torch.tensor(a[key]), torch.tensor(b[key]), rtol=rtol, atol=0.0,
                                   msg=lambda m, k=key: f"{k}: {m}")
    assert a["weights"].keys() == b["weights"].keys()
    for name, w in a["weights"].items():
        torch.testing.assert_close(w, b["weights"][name], rtol=0.0, atol=0.0 if exact else WEIGHT_TOL,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_two_ranks_follow_the_single_process_run(parallel_training):
    assert_same_run(parallel_training["ranks"]["dp"], parallel_training["single"])


def test_resume_at_the_same_world_size_is_exact_with_dropout(parallel_training):
    ranks = parallel_training["ranks"]
    assert_same_run(ranks["dp_dropout_resumed"], ranks["dp_dropout"], exact=True)


def test_dropout_changes_the_run(parallel_training):
    # control for the test above: the dropout runs are not the dropout-free run
    ranks = parallel_training["ranks"]
    assert max(abs(a - b) for a, b in zip(ranks["dp_dropout"]["loss"], ranks["dp"]["loss"])) > 1e-3


def test_resume_two_ranks_to_one_process(parallel_training, train_one):
    resumed = train_one(parallel_training["root"] / "two_stopped", resume=True)
    assert_same_run(resumed, parallel_training["ranks"]["dp"])
    assert_same_run(resumed, parallel_training["single"])


def test_resume_one_process_to_two_ranks(parallel_training):
    assert_same_run(parallel_training["ranks"]["dp_from_one_process"], parallel_training["single"])


def test_rank_zero_alone_writes_the_run_folder(parallel_training):
    # the files of one run folder (rank 1 writing too would have left a second metrics/checkpoint set or a clash)
    assert parallel_training["ranks"]["dp_files"] == ["checkpoints", "metrics.csv", "metrics.jsonl"]
    lines = (parallel_training["root"] / "two" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if json.loads(line)["split"] == "train"] == [1, 2, 3]


def test_batch_not_divisible_by_the_world_is_refused_before_any_compute(monkeypatch):
    monkeypatch.setattr("attnlab.distributed.ddp.rank_and_world", lambda group=None: (0, 3))
    with pytest.raises(ValueError, match="batch_size: expected a multiple of the world size 3"):
        DataParallel(batch_size=8)


def test_one_process_strategy_is_the_model_itself():
    dp = DataParallel(batch_size=8)
    model = torch.nn.Linear(2, 2)
    assert dp.wrap(model) is model and dp.is_writer and dp.world_size == 1


def test_step_seeds_differ_by_step_and_rank():
    seeds = {step_seed(0, s, r) for s in range(1, 50) for r in range(4)}
    assert len(seeds) == 49 * 4 and all(0 <= x < 2**63 for x in seeds)


def test_rank_zero_alone_holds_the_run_lock(parallel_training):
    zero, one = parallel_training["ranks"]["signalled"], parallel_training["rank_one"]["signalled"]
    assert zero["lock_pid"] == zero["pid"] and one["lock_pid"] == zero["pid"] != one["pid"]


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_with_a_checkpoint(parallel_training):
    from tests.distributed.conftest import SIGNAL_AT, TRAIN

    zero, one = parallel_training["ranks"]["signalled"], parallel_training["rank_one"]["signalled"]
    assert zero["steps"] == one["steps"] == SIGNAL_AT < TRAIN["steps"]
    assert one["interrupted"] == "SIGTERM" and zero["interrupted"] == "a signal to another rank"
    assert zero["checkpoints"] == [f"step_{SIGNAL_AT:08d}"]
