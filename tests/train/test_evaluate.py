"""evaluate(): the mean of per-batch losses and metrics over fixed val batches, mode restored, bad input named."""
from __future__ import annotations

import pytest
import torch

from attnlab.train import evaluate
from attnlab.train.evaluate import check_model_and_task, metric_floats


def test_evaluate_is_the_mean_over_batches_in_eval_mode(make_tiny):
    model, task = make_tiny(dropout=0.5)
    model.train()
    got = evaluate(model, task, batches=3, batch_size=5, split="test")
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        per_batch = [task.loss(model(b.inputs), b) for b in (task.batch("test", i, 5) for i in range(3))]
    assert got["loss"] == pytest.approx(sum(float(loss) for loss, _ in per_batch) / 3, rel=1e-6)
    assert got["accuracy"] == pytest.approx(sum(m["accuracy"] for _, m in per_batch) / 3, rel=1e-6)
    # eval mode: dropout off, so a second call gives the same numbers
    assert evaluate(model, task, batches=3, batch_size=5, split="test") == got


def test_evaluate_checks_its_arguments(make_tiny):
    model, task = make_tiny()
    model.eval()
    evaluate(model, task, batches=1, batch_size=4)
    assert not model.training  # restored to eval too
    with pytest.raises(ValueError, match="split: expected one of"):
        evaluate(model, task, split="dev")
    with pytest.raises(ValueError, match="batches: expected a positive int"):
        evaluate(model, task, batches=0)
    with pytest.raises(TypeError, match="batch_size: expected a positive int, received"):
        evaluate(model, task, batch_size=2.0)
    with pytest.raises(TypeError, match="task: expected an attnlab.tasks.Task"):
        evaluate(model, "shift")
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        check_model_and_task(lambda x: x, task)


def test_metric_floats_accepts_numbers_and_tensors():
    t = torch.tensor(0.25, requires_grad=True) * 2
    assert metric_floats({"a": 1, "b": t, "c": 0.5}) == {"a": 1.0, "b": 0.5, "c": 0.5}
