"""attnlab.layers.drop_path: DropPath drops whole samples and rescales the kept ones; the per-block rates."""
from __future__ import annotations

import pytest
import torch

from attnlab.layers.drop_path import DropPath, drop_path_rates


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    dp = DropPath(0.25)
    x = torch.ones(4000, 3, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    kept = per_sample[:, 0] != 0
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()  # all or nothing, rescaled
    assert abs(kept.float().mean().item() - 0.75) < 0.03  # 4000 draws: 4 standard deviations is 0.027
    dp.eval()
    assert dp(x) is x
    assert DropPath(0.0)(x) is x


def test_drop_path_rates_are_linear_from_zero():
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(0.5, 1) == [0.0]


def test_bad_rate_is_named():
    with pytest.raises(ValueError, match=r"drop_prob: expected a number in \[0, 1\)"):
        DropPath(1.0)
