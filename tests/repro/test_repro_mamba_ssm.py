"""Repro mamba_ssm (P23): the rule on hand-written intervals (each outcome, every edge); the task's construction."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import mamba_ssm as ms
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.tasks import create


@pytest.mark.parametrize("sel, over, at_chance, verdict", [
    ((0.95, 1.0), (0.3, 0.8), [], HOLDS),
    ((0.9001, 1.0), (0.2001, 0.3), [], HOLDS),                   # both intervals just clear their margins
    ((0.9, 1.0), (0.3, 0.8), [], INCONCLUSIVE),                  # solved? the interval touches 0.90
    ((0.95, 1.0), (0.2, 0.3), [], INCONCLUSIVE),                 # ahead? the interval touches 0.20
    ((0.95, 1.0), (-0.1, 0.1999), [], DOES_NOT_HOLD),            # an LTI model is about as good
    ((0.5, 0.8999), (0.3, 0.8), [], DOES_NOT_HOLD),              # not solved
    ((0.8, 1.0), (0.1, 0.5), [], INCONCLUSIVE),
    ((0.1, 0.15), (-0.8, -0.7), [ms.MAMBA_ARM], DOES_NOT_HOLD),  # Mamba learned nothing an LTI model learned
    ((0.1, 0.15), (0.0, 0.01), list(ms.MODELS), INCONCLUSIVE),   # nothing learned anything
    ((0.95, 1.0), (0.3, 0.8), [ms.LTI_ARMS[0]], HOLDS),          # an LTI model at chance: the intervals decide
])
def test_rule(iv, sel, over, at_chance, verdict):
    assert ms.judge({ms.MAMBA: iv(*sel), ms.OVER_LTI: iv(*over), AT_CHANCE: at_chance}) == verdict


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
    r = quick_run("mamba_ssm")
    m = r.measured
    assert all(0.0 <= m[f"copy accuracy: {a}"].mean <= 1.0 for a in ms.MODELS)
    best = m["best LTI"]
    assert m[ms.OVER_LTI].values == pytest.approx([x - y for x, y in zip(r.per_seed[f"copy accuracy: {ms.MAMBA_ARM}"],
                                                                          r.per_seed[f"copy accuracy: {best}"])])
    assert set(r.protocol[0]["chosen"]) == set(ms.MODELS)
