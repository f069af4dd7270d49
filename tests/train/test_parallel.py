"""The parallel-strategy hooks of the Trainer: the one-process default, and a recording strategy that shows what
the Trainer calls (wrap once after restore, forward on whole batches with the step, files only when it writes,
a barrier at the end, the ranks asked after every step whether any was signalled)."""
from __future__ import annotations

import pytest
import torch

from attnlab.train import TrainConfig, evaluate, train
from attnlab.train.parallel import SingleProcess


class Recording(SingleProcess):
    """SingleProcess that records every hook call; ``writer`` decides is_writer."""

    def __init__(self, writer=True, signalled_at=None):
        self.is_writer, self.calls, self.signalled_at = writer, [], signalled_at

    def wrap(self, model):
        self.calls.append(("wrap", sum(float(p.detach().sum()) for p in model.parameters())))
        return model

    def forward(self, net, batch, step=None):
        self.calls.append(("forward", step, batch.inputs.shape[0]))
        return super().forward(net, batch, step)

    def barrier(self):
        self.calls.append(("barrier",))

    def any_rank(self, flag):
        self.calls.append(("any_rank", flag))
        # another rank was signalled when this rank asks for the signalled_at-th time (0: before the first step)
        return bool(flag) or sum(c[0] == "any_rank" for c in self.calls) - 1 == self.signalled_at


def test_single_process_is_the_model_and_its_call():
    sp, model = SingleProcess(), torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    from attnlab.tasks.base import Batch

    assert sp.wrap(model) is model and sp.is_writer and sp.world_size == 1
    torch.testing.assert_close(sp.forward(model, Batch(x, x)), model(x), rtol=0, atol=0)


def test_the_trainer_calls_the_hooks(make_tiny, tmp_path):
    model, task = make_tiny(dropout=0.0)
    config = TrainConfig(steps=3, batch_size=4, eval_every=2, eval_batches=1, warmup_steps=1)
    rec = Recording()
    plain = train(*make_tiny(dropout=0.0), config, progress=False)
    result = train(model, task, config, out_dir=tmp_path, progress=False, parallel=rec)
    assert [r["loss"] for r in result.history] == [r["loss"] for r in plain.history]  # the default changes nothing
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "wrap" and kinds.count("wrap") == 1 and kinds[-1] == "barrier"
    assert [c[1] for c in rec.calls if c[0] == "forward" and c[1] is not None] == [1, 2, 3]
    assert sum(1 for c in rec.calls if c == ("forward", None, 4)) == 2  # the evaluations at steps 2 and 3


def test_wrap_comes_after_the_restore(make_tiny, tmp_path):
    config = TrainConfig(steps=4, batch_size=4, eval_every=0, warmup_steps=1)
    model, task = make_tiny(dropout=0.0)
    train(model, task, config, out_dir=tmp_path, progress=False, callbacks=[lambda s, r: s >= 2])
    trained = sum(float(p.detach().sum()) for p in model.parameters())
    fresh, _ = make_tiny(dropout=0.0)
    rec = Recording()
    train(fresh, task, config, out_dir=tmp_path, resume=True, progress=False, parallel=rec)
    assert rec.calls[0] == ("wrap", trained)  # the wrapper sees the restored weights


def test_a_process_that_does_not_write_leaves_no_files(make_tiny, tmp_path):
    model, task = make_tiny(dropout=0.0)
    config = TrainConfig(steps=3, batch_size=4, eval_every=0, warmup_steps=1, ckpt_every=1)
    train(model, task, config, out_dir=tmp_path / "run", progress=False, parallel=Recording(writer=False))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*"))


def test_evaluate_goes_through_the_strategy(make_tiny):
    model, task = make_tiny(dropout=0.0)
    rec = Recording()
    assert evaluate(model, task, batches=2, batch_size=4, parallel=rec) == evaluate(model, task, batches=2,
                                                                                   batch_size=4)
    assert rec.calls == [("forward", None, 4), ("forward", None, 4)]


def test_a_signal_on_another_rank_stops_this_one_after_that_step_with_a_checkpoint(make_tiny, tmp_path):
    from attnlab.train import load_latest

    model, task = make_tiny(dropout=0.0)
    config = TrainConfig(steps=6, batch_size=4, eval_every=0, warmup_steps=1)
    rec = Recording(signalled_at=2)
    result = train(model, task, config, out_dir=tmp_path, progress=False, parallel=rec)
    assert result.steps_done == 2 and result.interrupted == "a signal to another rank" and result.final_eval is None
    assert load_latest(tmp_path / "checkpoints").step == 2
    assert [c for c in rec.calls if c[0] == "any_rank"] == [("any_rank", False)] * 3  # before step 1, after 1, 2


def test_only_the_writing_rank_deletes_an_earlier_run(make_tiny, tmp_path):
    config = TrainConfig(steps=2, batch_size=4, eval_every=0, warmup_steps=1)
    train(*make_tiny(dropout=0.0), config, out_dir=tmp_path, progress=False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="which holds a run"):  # every rank refuses alike
        train(*make_tiny(dropout=0.0), config, out_dir=tmp_path, progress=False, parallel=Recording(writer=False))
    train(*make_tiny(dropout=0.0), config, out_dir=tmp_path, overwrite=True, progress=False,
          parallel=Recording(writer=False))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # rank 0's files untouched
