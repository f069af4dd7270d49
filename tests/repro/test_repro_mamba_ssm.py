"""Repro mamba_ssm (P23): the rule on hand-written figures (each outcome, every edge); the task's construction."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import mamba_ssm as ms
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.tasks import create


@pytest.mark.parametrize("sel, s4d, hyena, verdict", [
    (1.0, 0.3, 0.2, HOLDS),
    (0.9, 0.5, 0.7, HOLDS),                                    # at both edges (the best other is Hyena)
    (ms.SOLVED - 1e-9, 0.1, 0.1, INCONCLUSIVE),                # not solved, but well ahead
    (1.0, 0.85, 0.1, INCONCLUSIVE),                            # solved, ahead by less than the margin
    (0.95, 0.1, 0.90, DOES_NOT_HOLD), (0.5, 0.5, 0.1, DOES_NOT_HOLD), (0.2, 0.9, 0.1, DOES_NOT_HOLD),
    (0.96, 0.1, 0.90, INCONCLUSIVE),                           # just past the no-gap edge
])
def test_rule(sel, s4d, hyena, verdict):
    assert ms.judge({ms.MAMBA: sel, ms.S4D: s4d, ms.HYENA: hyena}) == verdict


def test_selective_copying_batches():
    task = create("selective_copying", vocab_size=10, seq_len=24, num_tokens=5, seed=3)
    b = task.batch("train", 0, 16)
    x, y = b.inputs, b.targets
    assert x.shape == y.shape == (16, 24)
    assert (x[:, 19:] == 9).all() and ((x[:, :19] == 0).sum(1) == 14).all()  # markers; noise elsewhere
    for i in range(16):
        data = x[i, :19][x[i, :19] != 0]
        assert data.tolist() == y[i, 19:].tolist()  # the data tokens, in order, at the markers
        assert ((data >= 1) & (data <= 8)).all()
    assert (y[:, :19] == -100).all()
    torch.testing.assert_close(task.batch("train", 0, 16).inputs, x)  # deterministic
    assert not torch.equal(task.batch("train", 1, 16).inputs, x)
    assert not torch.equal(b.extras["positions"][0], b.extras["positions"][1])  # positions vary per example


def test_quick_run_records_every_arm(quick_run):
    m = quick_run("mamba_ssm").measured
    assert set(m["final"]) == set(ms.MODELS) and all(0.0 <= m[k] <= 1.0 for k in ms.FIGURES)
