"""classifier_step_seconds: every model takes the same training steps (forward, cross-entropy, backward)."""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.train.throughput import classifier_step_seconds


class _Recorder(nn.Module):
    """A linear classifier that records the images it is given."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * 8 * 8, 5)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        return self.fc(x.flatten(1))


def test_every_model_gets_the_same_images_and_a_backward():
    models = {"a": _Recorder(), "b": _Recorder().eval()}
    out = classifier_step_seconds(models, img=8, batch=3, repeats=2, warmup=1, in_chans=2, num_classes=5)
    assert list(out) == ["a", "b"] and all(math.isfinite(s) and s > 0 for s in out.values())
    a, b = models["a"].seen, models["b"].seen
    assert len(a) == len(b) == 3 and a[0].shape == (3, 2, 8, 8)
    assert all(torch.equal(x, a[0]) for x in a + b)  # fixed by seed 0, shared by all
    assert models["b"].training  # put in training mode
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in models.values() for p in m.parameters())
