"""The training loop: ``train(model, task, config)``, a short loop over the phases of a :class:`Trainer`.

Step ``s`` (1-based) trains on ``task.batch("train", s - 1, batch_size)``, so the data depend
only on the step; together with the optimizer and RNG state stored in each checkpoint this makes
a resumed run follow an uninterrupted one exactly.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterable

from torch import nn

from attnlab.tasks.base import Task
from attnlab.train.config import TrainConfig
from attnlab.train.trainer import Trainer, TrainResult
from attnlab.utils.checks import describe, fail

__all__ = ["train", "Callback"]

#: ``callback(step, row) -> bool | None``, called after every step with that step's
#: row (step, loss, lr, grad_norm, task metrics, ...); returning True stops training
#: after this step (a checkpoint is saved if out_dir is set).
Callback = Callable[[int, dict], "bool | None"]


def train(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: Iterable[Callback] = (),
    parallel=None,
) -> TrainResult:
    """Train ``model`` on ``task`` with AdamW + warm-up/cosine (see :class:`TrainConfig`).

    The model is called as ``model(batch.inputs)`` and scored by ``task.loss``; with
    ``config.z_loss > 0`` the z-loss of the output logits is added (P02). A non-finite
    loss or gradient norm stops training with ``diverged=True`` (no exception).

    Args:
        model: the module to train (in place, on CPU).
        task: an :class:`attnlab.tasks.Task`.
        config: hyper-parameters.
        out_dir: if given, ``metrics.jsonl`` / ``metrics.csv`` and checkpoints
            (``checkpoints/step_*``: every ``ckpt_every`` steps, when a callback stops
            the run, and at the end) are written there. A fresh run (``resume=False``)
            deletes checkpoints left in ``out_dir`` by an earlier run.
        resume: continue from the latest complete checkpoint in ``out_dir`` (model,
            optimizer, RNG, history); the remaining steps reproduce an uninterrupted
            run exactly. Without a checkpoint it starts fresh (with a warning).
        progress: show a tqdm bar with loss / lr / task metric.
        callbacks: :data:`Callback` functions called after every step.
        parallel: how the run spreads over processes (:mod:`attnlab.train.parallel`; default one process;
            :mod:`attnlab.distributed` has data and sequence parallelism under torchrun).
    Returns:
        A :class:`TrainResult`.
    """
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            fail("callbacks", "callables cb(step, row)", describe(cb), TypeError)
    trainer = Trainer(model, task, config, out_dir=out_dir, resume=resume, parallel=parallel)
    with _progress_bar(trainer, progress) as bar:
        while not trainer.done:
            row = trainer.step()
            if trainer.diverged:
                break
            if trainer.eval_due():
                trainer.evaluate()
            stop = any(bool(cb(trainer.steps_done, row)) for cb in callbacks)
            if stop or trainer.checkpoint_due():
                trainer.checkpoint()
            if bar is not None:
                _show_progress(bar, row, trainer)
            if stop:
                break
    return trainer.finish()


def _progress_bar(trainer: Trainer, enabled: bool):
    """A tqdm bar over the run's steps (closed when the block exits), or a null context yielding None."""
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=trainer.config.steps, initial=trainer.start_step, desc=f"train {trainer.task.name}",
                dynamic_ncols=True, leave=False)


def _show_progress(bar, row: dict, trainer: Trainer) -> None:
    bar.update(1)
    if row["step"] % trainer.config.log_every == 0:
        post = {"loss": f"{row['loss']:.4f}", "lr": f"{row['lr']:.2e}"}
        if trainer.task.metric in row:
            post[trainer.task.metric] = f"{row[trainer.task.metric]:.4f}"
        bar.set_postfix(post)
