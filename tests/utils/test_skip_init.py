"""skip_init: inside the block torch.nn.init leaves tensors untouched (so building is only allocating), the
parameter count is unchanged, and the real functions are back afterwards, also after an error."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attnlab.utils.skip_init import skip_init


def test_init_functions_do_nothing_inside_and_are_restored_after():
    real = nn.init.trunc_normal_
    t = torch.full((4, 4), 7.0)
    with skip_init():
        assert nn.init.trunc_normal_(t, std=0.02) is t and nn.init.kaiming_uniform_(t, a=1.0) is t
        nn.init.zeros_(t)
        assert torch.equal(t, torch.full((4, 4), 7.0))
        inside = nn.Sequential(nn.Linear(5, 3), nn.LayerNorm(3))
    assert nn.init.trunc_normal_ is real
    assert sum(p.numel() for p in inside.parameters()) == sum(p.numel() for p in
                                                               nn.Sequential(nn.Linear(5, 3), nn.LayerNorm(3)).parameters())
    with pytest.raises(RuntimeError, match="boom"), skip_init():
        raise RuntimeError("boom")
    nn.init.zeros_(t)
    assert torch.count_nonzero(t) == 0  # the real zeros_ again
