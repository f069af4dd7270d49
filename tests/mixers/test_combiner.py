"""The combiner_fixed / combiner_axial mixers (P03) beyond the registry contract: reduction to softmax
with one block, the sqrt(N) default block, recorded maps with full support, a few training steps."""
from __future__ import annotations

import pytest
import torch

NAMES = ["combiner_fixed", "combiner_axial"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("causal", [True, False])
def test_combiner_with_one_block_is_the_softmax_mixer(name, causal, softmax_and):
    teacher, student, missing = softmax_and(name, block_size=64)
    assert not missing
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    torch.testing.assert_close(student(x, causal=causal), teacher(x, causal=causal), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_combiner_default_block_is_sqrt_n_and_differs_from_softmax(name, softmax_and):
    teacher, student, _ = softmax_and(name)
    assert student.block_for(256) == 16 and student.block_for(10) == 3
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    assert (student(x, causal=True) - teacher(x, causal=True)).abs().max() > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_recorded_maps_are_row_stochastic_and_causal(name, recorded_causal_maps):
    probs = recorded_causal_maps(name, {"block_size": 4})
    assert ((probs > 0).sum(-1) == torch.arange(1, 19)).all()  # full support


@pytest.mark.parametrize("name", NAMES)
def test_a_small_language_model_trains(name, period2_lm_losses):
    losses = period2_lm_losses(name, {})
    assert losses[-1] < 0.5 * losses[0]
