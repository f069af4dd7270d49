"""P05's synthetic sequence classes: the vocabulary layout and P(l | f) by hand, deterministic batches whose
tokens follow P(l | f), bad arguments."""
from __future__ import annotations

import pytest
import torch

from attnlab.tasks import create
from attnlab.tasks.scan_snap import ScanSnapTask


def test_layout_and_probabilities_by_hand():
    t = ScanSnapTask(num_queries=1, next_per_query=2, num_common=2, num_distinct=3, seq_len=6)
    assert t.vocab_size == 2 + 2 * 3 + 1 + 2 == 11
    assert t.common.tolist() == [0, 1] and t.distinct.tolist() == [[2, 3, 4], [5, 6, 7]]
    assert t.query.tolist() == [8, 8] and t.next.tolist() == [9, 10]
    row = torch.tensor([1, 1, 0.1, 0.55, 1.0, 0, 0, 0, 0, 0, 0], dtype=torch.float64) / 3.65
    torch.testing.assert_close(t.probs[0], row)
    assert t.spec.output == "class" and t.spec.num_classes == 11 and t.spec.seq_len == 6
    two = ScanSnapTask(num_queries=2, next_per_query=1, num_common=1, num_distinct=1)
    assert two.query.tolist() == [3, 4] and two.next.tolist() == [5, 6]


def test_batches_are_deterministic_and_follow_the_class_distribution():
    t = create("scan_snap", num_common=3, num_distinct=4, seq_len=65)
    b = t.batch("train", 3, 400)
    assert torch.equal(b.inputs, t.batch("train", 3, 400).inputs) and not torch.equal(b.inputs, t.batch("val", 3, 400).inputs)
    fact = b.extras["fact"]
    assert torch.equal(b.inputs[:, -1], t.query[fact]) and torch.equal(b.targets, t.next[fact])
    for f in range(t.num_facts):
        ctx = b.inputs[fact == f, :-1].reshape(-1)
        freq = torch.bincount(ctx, minlength=t.vocab_size).double() / ctx.numel()
        assert float((freq - t.probs[f]).abs().max()) < 0.02  # ~13k draws per class
        assert freq[t.probs[f] == 0].sum() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="seq_len: expected at least 2"):
        ScanSnapTask(seq_len=1)
    with pytest.raises(ValueError, match="distinct_weights, common_weight: expected 0 < low <= high"):
        ScanSnapTask(distinct_weights=(1.0, 0.1))
    with pytest.raises(ValueError, match="num_common: expected a positive int"):
        ScanSnapTask(num_common=0)
