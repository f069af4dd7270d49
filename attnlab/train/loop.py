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
from attnlab.train.signals import StopSignals
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
    overwrite: bool = False,
    progress: bool = True,
    callbacks: Iterable[Callback] = (),
    handle_signals: bool = True,
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
            the run, on SIGINT / SIGTERM, and at the end) are written there. The folder is
            locked while the run writes (a second run into it gets an error naming this one).
        resume: continue from the newest verified checkpoint in ``out_dir`` (model,
            optimizer, RNG, history); the remaining steps reproduce an uninterrupted
            run exactly. Without a checkpoint it starts fresh (with a warning).
        overwrite: a fresh run into an ``out_dir`` that holds an earlier run (checkpoints or
            metrics) deletes that run; without it (and without ``resume``) that is a ValueError.
        progress: show a tqdm bar with loss / lr / task metric.
        callbacks: :data:`Callback` functions called after every step.
        handle_signals: while training (main thread only), the first SIGINT / SIGTERM stops the
            run at the next step boundary with a checkpoint and ``result.interrupted`` set to the
            signal's name; a second one raises KeyboardInterrupt at once (see
            :mod:`attnlab.train.signals`).
        parallel: how the run spreads over processes (:mod:`attnlab.train.parallel`; default one process;
            :mod:`attnlab.distributed` has data and sequence parallelism under torchrun). Under a
            distributed strategy the ranks agree after every step whether any of them was signalled
            (``parallel.any_rank``), so all of them stop at the same step boundary.

    Returns:
        A :class:`TrainResult`.
    """
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            fail("callbacks", "callables cb(step, row)", describe(cb), TypeError)
    with StopSignals(handle_signals) as signals:
        trainer = Trainer(model, task, config, out_dir=out_dir, resume=resume, overwrite=overwrite,
                          parallel=parallel)
        agree = trainer.parallel.any_rank
        try:
            stopping = agree(signals.requested is not None)
            with _progress_bar(trainer, progress) as bar:
                while not trainer.done and not stopping:
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
                    # after the save: a signal that came during it stops here (finish() saves if not yet)
                    stopping = agree(signals.requested is not None)
            if stopping and not trainer.done:
                trainer.request_stop(signals.requested or "a signal to another rank")
            return trainer.finish()
        except BaseException:  # an error, or a second signal: leave the folder unlocked and the files closed
            trainer.close()
            raise


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
