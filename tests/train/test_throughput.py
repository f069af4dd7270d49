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


def test_a_model_can_be_timed_at_both_precisions():
    """precision per name: the bf16 step runs its forward under autocast (the logits are bf16), the fp32 one not."""
    m = _Recorder()
    dtypes = []
    m.fc.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    out = classifier_step_seconds({"fp32": m, "bf16": m}, img=8, batch=3, repeats=1, warmup=0, in_chans=2,
                                  num_classes=5, precision={"bf16": "bf16"})
    assert list(out) == ["fp32", "bf16"] and dtypes == [torch.float32, torch.bfloat16]
    assert m.fc.weight.grad.dtype == torch.float32
