"""query_dependence on hand-made maps: identical rows 0, disjoint rows 1, a two-row case by hand, the sampled
estimate close to the exact mean, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.analysis import query_dependence


def test_identical_rows_give_zero_and_disjoint_rows_one():
    row = torch.softmax(torch.randn(7), 0)
    assert query_dependence(row.expand(2, 3, 9, 7).contiguous()) == pytest.approx(0.0, abs=1e-12)
    assert query_dependence(torch.eye(6)[None]) == pytest.approx(1.0, abs=1e-12)


def test_two_rows_by_hand():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): JS = (ln(4/3) + (ln(2/3) + ln 2) / 2) / 2 nats
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    expected = 0.5 * (math.log(4 / 3) + 0.5 * (math.log(2 / 3) + math.log(2))) / math.log(2)
    assert query_dependence(probs) == pytest.approx(expected, rel=1e-12)


def test_sampled_pairs_estimate_the_mean_over_all_pairs():
    torch.manual_seed(0)
    probs = torch.softmax(2 * torch.randn(2, 40, 30), -1)
    exact = query_dependence(probs, num_pairs=40 * 39)
    assert query_dependence(probs, num_pairs=500) == pytest.approx(exact, rel=0.05)
    assert query_dependence(probs, num_pairs=500, seed=1) != query_dependence(probs, num_pairs=500, seed=2)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="probs: expected an attention map"):
        query_dependence(torch.ones(1, 5))
    with pytest.raises(ValueError, match="num_pairs: expected a positive int"):
        query_dependence(torch.eye(3), num_pairs=0)
