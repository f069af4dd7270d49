"""The distant_xor task (built for P27): two marked bits in distant groups, the label is their XOR, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab.tasks import create


def test_two_marked_bits_in_distant_groups_and_the_label_is_their_xor():
    t = create("distant_xor", seq_len=256, num_groups=8, min_gap=3, noise_vocab=5, seed=4)
    b = t.batch("train", 0, 200)
    x, y, pos = b.inputs.numpy(), b.targets.numpy(), b.extras["positions"].numpy()
    assert t.spec.vocab_size == 7 and t.spec.seq_len == 256 and t.spec.output == "class"
    for row, label, (p0, p1) in zip(x, y, pos):
        marked = np.flatnonzero(row >= 5)
        assert marked.tolist() == sorted([p0, p1])
        assert abs(p0 // 32 - p1 // 32) >= 3
        assert label == (row[p0] - 5) ^ (row[p1] - 5)  # two symbols: "differ" is the XOR of two bits
    assert 0.4 < y.mean() < 0.6
    gaps = np.abs(pos[:, 0] // 32 - pos[:, 1] // 32)
    assert set(gaps.tolist()) == {3, 4, 5, 6, 7}


@pytest.mark.parametrize("symbols", [2, 5])
def test_no_single_mark_predicts_the_label(symbols):
    """Each marked symbol alone is independent of the label: P(differ | one mark's symbol) = 1/2; the label is
    whether the two symbols differ."""
    t = create("distant_xor", seq_len=128, num_groups=4, min_gap=1, symbols=symbols)
    b = t.batch("val", 0, 6000)
    rows = torch.arange(6000)
    sym = [(b.inputs[rows, b.extras["positions"][:, i]] - t.noise_vocab).numpy() for i in (0, 1)]
    y = b.targets.numpy()
    assert (y == (sym[0] != sym[1])).all() and 0.47 < y.mean() < 0.53
    for i in (0, 1):
        assert set(sym[i].tolist()) == set(range(symbols))
        for s in range(symbols):
            assert abs(y[sym[i] == s].mean() - 0.5) < 0.06


@pytest.mark.parametrize("kw, match", [
    ({"seq_len": 100, "num_groups": 16}, "num_groups: expected an int >= 2 dividing seq_len=100"),
    ({"num_groups": 4, "min_gap": 4}, r"min_gap: expected an int in \[1, num_groups=4\)"),
    ({"noise_vocab": 0}, "noise_vocab: expected a positive int"),
    ({"symbols": 1}, "symbols: expected an int >= 2"),
])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        create("distant_xor", **kw)
