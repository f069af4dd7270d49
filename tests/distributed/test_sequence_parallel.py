"""Sequence-parallel training on 2 gloo ranks (Ulysses, ring, hybrid) against one process; the refusals.

The tiny run (conftest.TRAIN) of a SequenceModel built with ``sequence_parallel=<kind>`` trains with every
sequence of 32 tokens split into two blocks of 16; its per-step losses, gradient norms and evaluations must
agree with the one-process run to 1e-5 relative and its final weights to 2e-5 absolute (the attention of each
block is computed from other pieces: the measured differences are ~1e-7).
"""
from __future__ import annotations

import pytest
import torch

from attnlab.distributed.sequence_parallel import SequenceParallel, attention_layers, plan_layout
from attnlab.models import SequenceModel

LOSS_TOL, WEIGHT_TOL = 1e-5, 2e-5


@pytest.mark.parametrize("kind", ["ulysses", "ring", "hybrid"])
def test_two_ranks_follow_the_single_process_run(parallel_training, kind):
    got, want = parallel_training["ranks"][f"sp_{kind}"], parallel_training["single"]
    for key in ("loss", "grad_norm", "evals"):
        torch.testing.assert_close(torch.tensor(got[key]), torch.tensor(want[key]), rtol=LOSS_TOL, atol=0.0)
    for name, w in got["weights"].items():
        torch.testing.assert_close(w, want["weights"][name], rtol=0.0, atol=WEIGHT_TOL)


def _model(heads=4, **kw):
    return SequenceModel(vocab_size=16, dim=24, depth=2, num_heads=heads, max_len=64, **kw)


@pytest.mark.parametrize("kind, world, heads, ulysses_size, layout", [
    ("ulysses", 2, 4, None, (2, 1)), ("ring", 4, 3, None, (1, 4)), ("hybrid", 4, 4, None, (4, 1)),
    ("hybrid", 4, 4, 2, (2, 2)), ("hybrid", 4, 6, None, (2, 2)), ("hybrid", 2, 3, None, (1, 2)),
])
def test_layout_plans(kind, world, heads, ulysses_size, layout):
    assert plan_layout(_model(heads, sequence_parallel=kind), kind, world, ulysses_size) == layout


@pytest.mark.parametrize("kind, world, heads, ulysses_size, match", [
    ("ulysses", 2, 3, None, "num_heads: expected a head count divisible by the 2 ranks"),
    ("hybrid", 4, 6, 4, "num_heads: expected a head count divisible by the 4 ranks"),
    ("hybrid", 4, 4, 3, "ulysses_size: expected a divisor of the world size 4, received 3"),
])
def test_layouts_that_do_not_divide_are_refused(kind, world, heads, ulysses_size, match):
    with pytest.raises(ValueError, match=match):
        plan_layout(_model(heads, sequence_parallel=kind), kind, world, ulysses_size)


def test_sequence_not_divisible_by_the_world_is_refused_before_any_compute(monkeypatch):
    monkeypatch.setattr("attnlab.distributed.ddp.rank_and_world", lambda group=None: (0, 2))
    with pytest.raises(ValueError, match="seq_len: expected a multiple of the world size 2"):
        SequenceParallel(seq_len=33)


def test_a_model_without_sequence_parallel_is_refused():
    with pytest.raises(ValueError, match="model: expected a SequenceModel built with sequence_parallel"):
        SequenceParallel(seq_len=32).check_model(_model())


def test_one_process_runs_the_whole_sequence_at_offset_zero():
    model = _model(sequence_parallel="ring")
    sp = SequenceParallel(seq_len=32)
    assert sp.wrap(model) is model and len(attention_layers(model)) == 2
    from attnlab.tasks.base import Batch

    x = torch.randint(0, 16, (2, 32))
    model.position_offset = 5
    torch.testing.assert_close(sp.forward(model, Batch(x, x)), (setattr(model, "position_offset", 0), model(x))[1])
