"""attnlab.models.factory: build_for_task builds the backbone and head each kind of task spec needs."""
from __future__ import annotations

import torch

from attnlab.models import SequenceModel, ViT, build_for_task
from attnlab.tasks import TaskSpec


def test_build_for_task_matches_each_kind_of_spec():
    lm = build_for_task(TaskSpec("tokens", "lm", seq_len=16, vocab_size=30, num_classes=30, causal=True), dim=32)
    assert isinstance(lm, SequenceModel) and lm.causal and lm(torch.randint(0, 30, (2, 16))).shape == (2, 16, 30)
    reg = build_for_task(TaskSpec("vectors", "regression", seq_len=9, in_dim=4, out_dim=1), dim=32)
    assert not reg.causal and reg(torch.randn(2, 9, 4)).shape == (2, 9, 1)
    img = build_for_task(TaskSpec("image", "class", img_size=(16, 16), in_chans=1, num_classes=7), dim=32)
    assert isinstance(img, ViT) and img(torch.randn(2, 1, 16, 16)).shape == (2, 7)
    cls = build_for_task(TaskSpec("tokens", "class", seq_len=8, vocab_size=5, num_classes=2, causal=True), dim=32)
    assert cls.pool == "last"


def test_build_for_task_refuses_a_video_task_by_name():
    import pytest

    spec = TaskSpec("video", "frames", img_size=(16, 16), in_chans=3, num_frames=9)
    with pytest.raises(ValueError, match="spec: expected a token, vector or image task"):
        build_for_task(spec)
