"""attnlab.models.hierarchy through its three designs: stages at 1/4, 1/8, 1/16 of the image, any image size."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import create


def _grids_seen(model, x):
    """The grid every block of a hierarchical model is called with, in order."""
    seen = []
    hooks = [blk.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[1])))
             for stage in model.stages for blk in stage]
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["biformer_tiny", "s2aformer_tiny", "dinat_tiny"])
def test_hierarchy_runs_its_stages_at_4x_8x_16x_and_takes_any_size(name):
    torch.manual_seed(0)
    model = create(name, img_size=32, in_chans=1, num_classes=7).eval()
    assert _grids_seen(model, torch.randn(2, 1, 32, 32)) == [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    # Odd sizes: every stride-2 conv rounds up (28 -> 7 -> 4 -> 2).
    assert _grids_seen(model, torch.randn(2, 1, 28, 28)) == [(7, 7)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    assert model(torch.randn(3, 1, 40, 24)).shape == (3, 7)
