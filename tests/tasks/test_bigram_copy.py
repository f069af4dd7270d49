"""The bigram_copy task: the sequence is a chain, a separator and the chain repeated; scoring and metrics; the
bigram entropy is what the chain's empirical statistics give; bad configurations named."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab import tasks
from attnlab.tasks.bigram_copy import SEP
from attnlab.tasks.scoring import IGNORE


def test_structure_chain_separator_copy():
    t = tasks.create("bigram_copy", vocab_size=16, seq_len=40, seed=1)
    b = t.batch("train", 0, 32)
    full = torch.cat([b.inputs, b.targets[:, -1:]], 1)
    lengths = set()
    for row, tgt, copy in zip(b.inputs, b.targets, b.extras["copy"]):
        a = int((row == SEP).nonzero()[0])
        lengths.add(a)
        assert t.min_prefix <= a <= t.max_prefix and (row[:a] != SEP).all()
        assert all(row[i] == row[i - a - 1] for i in range(a + 1, 40))  # the copy
        assert tgt[a - 1] == IGNORE and (tgt[:a - 1] != IGNORE).all() and (tgt[a:] != IGNORE).all()
        assert not copy[: a].any() and copy[a:].all()
    assert len(lengths) > 3  # the copy offset changes from sequence to sequence
    assert full.max() < 16


def test_copy_is_learnable_exactly_and_the_chain_only_to_its_entropy():
    t = tasks.create("bigram_copy", vocab_size=12, seq_len=64)
    b = t.batch("val", 0, 64)
    # an oracle: the true bigram distribution on the chain, the exact copy on the copy
    logits = torch.full((*b.targets.shape, 12), -30.0)
    probs = torch.from_numpy(t.transitions).float()
    chain = ~b.extras["copy"]
    prev = b.inputs[chain]
    logits[chain] = -30.0
    logits[chain, 1:] = torch.log(probs[prev.clamp_min(1) - 1].clamp_min(1e-30))
    copy = b.extras["copy"]
    logits[copy] = torch.nn.functional.one_hot(b.targets[copy], 12).float() * 60 - 30
    _, m = t.loss(logits, b)
    assert m["copy_accuracy"] == 1.0 and m["copy_loss"] < 1e-6
    assert abs(m["bigram_loss"] - t.bigram_entropy) < 0.25  # a 64-sequence sample of the chain
    assert 0 < t.bigram_entropy < math.log(11)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match=r"min_prefix, max_prefix: expected 2 <= min_prefix <= max_prefix"):
        tasks.create("bigram_copy", seq_len=16, min_prefix=10, max_prefix=5)
    with pytest.raises(ValueError, match=r"vocab_size: expected at least 3"):
        tasks.create("bigram_copy", vocab_size=2)
    with pytest.raises(ValueError, match=r"concentration: expected a positive float"):
        tasks.create("bigram_copy", concentration=0.0)
