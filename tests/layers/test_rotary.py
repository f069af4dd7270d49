"""attnlab.layers.rotary: the cached module equals the op, the cache grows instead of wrapping, max_positions
refuses, make_rope parses the mixers' rope= argument."""
from __future__ import annotations

import pytest
import torch

from attnlab.layers import RotaryEmbedding, make_rope
from attnlab.ops.rope import apply_rope


def test_module_equals_op_with_offsets_and_grows_its_cache():
    rot = RotaryEmbedding(8, base=500.0, layout="interleaved").double()
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(rot(x), apply_rope(x, torch.arange(5), base=500.0, layout="interleaved"))
    assert rot.cached_positions == 8
    # a position far beyond the cache: the cache grows, the rotation is the true one (no wrap-around)
    out = rot(x, offset=1000)
    assert rot.cached_positions == 1024
    torch.testing.assert_close(out, apply_rope(x, torch.arange(1000, 1005), base=500.0, layout="interleaved"))
    assert (out - rot(x, offset=1000 % 8)).abs().max() > 1e-3  # what a wrap-around of the old cache would give


def test_max_positions_refuses_positions_beyond_it():
    rot = RotaryEmbedding(4, max_positions=16)
    rot(torch.randn(1, 1, 16, 4))
    with pytest.raises(ValueError, match=r"positions: expected positions < max_positions=16 .*received a position 16"):
        rot(torch.randn(1, 1, 1, 4), offset=16)
    with pytest.raises(ValueError, match=r"positions: expected integers >= 0"):
        rot(torch.randn(1, 1, 1, 4), torch.tensor([-1]))


def test_make_rope_parses_the_argument():
    assert make_rope(False, 8) is None and make_rope(None, 8) is None
    assert isinstance(make_rope(True, 8), RotaryEmbedding)
    r = make_rope({"base": 100.0, "layout": "interleaved"}, 8)
    assert r.base == 100.0 and r.layout == "interleaved"
    with pytest.raises(TypeError, match=r"rope: expected a dict with keys among"):
        make_rope({"theta": 1.0}, 8)
    with pytest.raises(TypeError, match=r"rope: expected False, True or a dict"):
        make_rope("yes", 8)
    with pytest.raises(ValueError, match=r"head_dim: expected an even int"):
        RotaryEmbedding(7)
