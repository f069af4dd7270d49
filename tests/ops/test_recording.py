"""attnlab.ops.recording: record_attention collects the probabilities (and max |logit|) the ops compute,
labelled by the mixer module that called them; outside the block nothing is recorded."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops import attention
from attnlab.ops.recording import is_recording, record, record_attention, recorded_eval_forward


def test_recording_gives_probabilities_that_reproduce_the_output():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 4, generator=g, dtype=torch.float64) for _ in range(3))
    with record_attention() as rec:
        out = attention(q, k, v, causal=True)
    (probs,) = rec.maps["call0"]
    assert probs.shape == (2, 3, 9, 9)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3, 9, dtype=torch.float64))
    assert torch.all(probs.triu(1) == 0)
    torch.testing.assert_close(probs @ v, out)
    logits = (q @ k.transpose(-1, -2)) / 2.0
    assert rec.max_logits["call0"][0] == pytest.approx(logits.abs().max().item())


def test_recording_labels_maps_by_mixer_module():
    model = torch.nn.Sequential(mixers.create("softmax", 8, num_heads=2),
                                mixers.create("softmax_qknorm", 8, num_heads=2))
    with record_attention(model) as rec:
        model(torch.randn(1, 5, 8))
    assert sorted(rec.maps) == ["0", "1"]
    assert rec.last("1").shape == (1, 2, 5, 5)
    with pytest.raises(KeyError, match="label: expected one of"):
        rec.last("2")


def test_nothing_is_recorded_outside_the_block_and_calls_are_numbered_inside():
    assert not is_recording()
    record(torch.ones(1, 1, 2, 2))  # a no-op outside the block
    with record_attention() as rec:
        assert is_recording()
        record(torch.full((1, 1, 2, 2), 0.5), logits=torch.tensor([[-3.0, float("-inf")], [1.0, 2.0]]))
        record(torch.ones(1, 1, 2, 2))
    assert not is_recording()
    assert sorted(rec.maps) == ["call0", "call1"]
    assert rec.max_logits == {"call0": [3.0]}  # the masked -inf logit does not count


def test_recorded_eval_forward_runs_in_eval_mode_and_restores_the_mode_even_on_error():
    model = torch.nn.Sequential(mixers.create("softmax", 8, num_heads=2), torch.nn.Dropout(0.5))
    model.train()
    x = torch.randn(1, 5, 8)
    rec = recorded_eval_forward(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert sorted(rec.maps) == ["0"]
    # eval mode inside: dropout off, so two recorded passes give the same map
    torch.testing.assert_close(recorded_eval_forward(model, x).last("0"), rec.last("0"), rtol=0, atol=0)
    with pytest.raises(Exception):
        recorded_eval_forward(model, torch.randn(1, 5, 7))  # wrong width
    assert model.training
    model.eval()
    recorded_eval_forward(model, x)
    assert not model.training
