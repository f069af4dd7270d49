"""P05's probes: the attention statistic c, its masses and entropy, the order of the logits, the freeze step, by
hand; training scans towards the distinct tokens; the probe of a SequenceModel's first layer by hand."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.analysis.scan_snap import (
    attention_stats, distinct_order, expected_attention, freeze_step, sequence_model_probe, train_scan_snap,
)
from attnlab.models import SequenceModel
from attnlab.tasks.scan_snap import ScanSnapTask


@pytest.fixture
def task():
    return ScanSnapTask(num_queries=1, next_per_query=2, num_common=2, num_distinct=3, seq_len=33)


def test_expected_attention_by_hand(task):
    Z = torch.zeros(task.vocab_size, task.vocab_size)
    torch.testing.assert_close(expected_attention(Z, task), task.probs)  # uniform logits: c = P(l | f)
    Z[8, 4] = math.log(3.0)  # the query (8) weighs token 4 (distinct to class 0, P = 1/3.65) three times
    c = expected_attention(Z, task)
    assert float(c[0, 4]) == pytest.approx(3.0 / (3.65 + 2.0)) and float(c[0, 0]) == pytest.approx(1 / 5.65)
    stats = attention_stats(c, task)
    # class 0: distinct (0.1 + 0.55 + 3) / 5.65, common 2 / 5.65; class 1 unchanged: distinct 1.65 / 3.65
    assert stats["distinct_mass"] == pytest.approx((3.65 / 5.65 + 1.65 / 3.65) / 2)
    assert stats["common_mass"] == pytest.approx((2 / 5.65 + 2 / 3.65) / 2)
    w = torch.tensor([1, 1, 0.1, 0.55, 3.0]) / 5.65
    assert stats["entropy"] == pytest.approx((float(-(w * w.log()).sum()) + float(-(task.probs[1][task.probs[1] > 0]
                                              * task.probs[1][task.probs[1] > 0].log()).sum())) / 2)
    with pytest.raises(ValueError, match=r"Z: expected a \(11, 11\) matrix"):
        expected_attention(torch.zeros(3, 3), task)


def test_distinct_order_and_freeze_step_by_hand(task):
    weights = torch.zeros(2, task.vocab_size)
    weights[0, [2, 3, 4]] = torch.tensor([1.0, 2.0, 3.0])   # same order as P: +1
    weights[1, [5, 6, 7]] = torch.tensor([3.0, 1.0, 2.0])   # ranks (3, 1, 2) vs (1, 2, 3): rho = -0.5
    assert distinct_order(weights, task) == pytest.approx((1.0 - 0.5) / 2)
    # total change 2.0; within 5 % (0.1) of the end from step 3 on
    assert freeze_step([0, 1, 2, 3, 4, 5], [3.0, 2.0, 1.5, 1.05, 1.0, 1.0]) == 3
    assert freeze_step([0, 10], [1.0, 1.0]) == 0
    with pytest.raises(ValueError, match="steps, values: expected two lists of equal, non-zero length"):
        freeze_step([0, 1], [1.0])


def test_training_scans_towards_the_distinct_tokens():
    task = ScanSnapTask()
    run = train_scan_snap(task, steps=60, ratio=1.0, seed=0, record_every=20)
    assert [row["step"] for row in run.history] == [0, 20, 40, 60]
    first, last = run.history[0], run.history[-1]
    assert first["distinct_mass"] == pytest.approx(5.5 / 15.5) and math.isnan(first["order"])  # c = P at Z = 0
    assert last["distinct_mass"] > 0.9 and last["entropy"] < first["entropy"] - 0.5 and last["order"] > 0.8
    assert last["loss"] < 0.01


def test_sequence_model_probe_by_hand(task):
    """Zero query/key weights: uniform attention, so c is each class's empirical token frequency in the context."""
    model = SequenceModel(vocab_size=task.vocab_size, dim=8, depth=2, num_heads=2, head="class",
                          num_classes=task.vocab_size, pos="none", pool="last", ffn="none")
    with torch.no_grad():
        model.blocks[0].mixer.qkv.weight[:16].zero_()
    out = sequence_model_probe(model, task, batches=2, batch_size=32)
    counts = torch.zeros(2, task.vocab_size, dtype=torch.float64)
    for i in range(2):
        b = task.batch("val", i, 32)
        for f in range(2):
            counts[f] += torch.bincount(b.inputs[b.extras["fact"] == f, :-1].reshape(-1),
                                        minlength=task.vocab_size).double()
    c = counts / counts.sum(-1, keepdim=True)
    assert out["distinct_mass"] == pytest.approx(float((c[0, 2:5].sum() + c[1, 5:8].sum()) / 2), abs=1e-9)
    assert out["common_mass"] == pytest.approx(float(c[:, :2].sum(-1).mean()), abs=1e-9)
    assert math.isnan(out["order"])  # every occurrence gets the same attention: no order to rank
