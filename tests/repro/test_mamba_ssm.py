"""Repro mamba_ssm (P23): quick mode end to end on the real task and models; the task's construction."""
from __future__ import annotations

import torch

from attnlab.repro.base import VERDICTS, ReproContext
from attnlab.tasks import create


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


def test_quick_run(tmp_path):
    from attnlab.repro import mamba_ssm

    out = mamba_ssm.run(ReproContext(quick=True, out_dir=tmp_path, progress=False))
    assert out.verdict in VERDICTS
    final = out.measured["final"]
    assert set(final) == set(mamba_ssm.MODELS)
    assert all(0.0 <= v <= 1.0 for v in final.values())
    assert all(len(c) >= 2 for c in out.measured["curves"].values())
    assert out.plots and out.plots[0].endswith(".png")
