"""One training run in three phases: setup (``Trainer(...)``), ``step()`` ..., ``finish()``.

:func:`attnlab.train.train` is a short loop over these phases; use the :class:`Trainer` directly
to drive a run step by step (custom schedules of evaluation or checkpoints, inspection between
steps). Step ``s`` (1-based) trains on ``task.batch("train", s - 1, batch_size)``, so the data
depend only on the step; with the optimizer and RNG state stored in each checkpoint this makes a
resumed run follow an uninterrupted one exactly.
"""
from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from attnlab.tasks.base import Batch, Task
from attnlab.train.checkpoint import CHECKPOINT_DIR, list_checkpoints, load_latest, save_checkpoint
from attnlab.train.config import RESUME_FREE_FIELDS, TrainConfig
from attnlab.train.evaluate import check_model_and_task, evaluate, metric_floats
from attnlab.train.losses import log_partition, z_loss
from attnlab.train.metrics import MetricsWriter
from attnlab.train.parallel import SingleProcess
from attnlab.train.optim import build_optimizer, set_lr
from attnlab.train.run_lock import RunLock
from attnlab.train.saved_model import model_record
from attnlab.utils.checks import describe, fail
from attnlab.utils.memory import PeakRSS
from attnlab.utils.precision import precision_context

__all__ = ["Trainer", "TrainResult"]


@dataclass
class TrainResult:
    """What :func:`attnlab.train.train` (and :meth:`Trainer.finish`) returns.

    Attributes:
        history: one row per ``log_every`` steps (and the last step): ``step``, ``loss``
            (task loss of that step's batch, before the z-loss), ``lr``, ``grad_norm``
            (global norm before clipping), the task's metrics, ``log_z`` (mean output
            log-partition, "lm"/"class" outputs) and ``z_loss`` (if used). Includes the
            rows of the run before a resume.
        evals: ``{"step", "loss", <metrics>}`` every ``eval_every`` steps.
        final_eval: the evaluation after the last step (``evaluate`` on the val split).
        train_seconds: wall time of the training steps of this call (excluding
            evaluations and checkpoint writes).
        tokens_per_second: ``task.tokens_per_example() * batch_size * steps / train_seconds``
            over the steps of this call.
        examples_per_second: ``batch_size * steps / train_seconds`` (images/s for image tasks).
        peak_mem_mib: rise of the process's peak resident memory during this call
            (VmHWM at the end minus VmRSS at the start, /proc/self/status).
        steps_done: steps completed (including those before a resume).
        diverged: True if a step produced a non-finite loss or gradient norm; training
            stopped there (that step's update was not applied).
        interrupted: the signal (``"SIGINT"`` / ``"SIGTERM"``) that stopped the run at a step
            boundary (after a checkpoint, without a final evaluation), else None.
    """

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    final_eval: dict | None = None
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_mem_mib: float = 0.0
    steps_done: int = 0
    diverged: bool = False
    examples_per_second: float = 0.0
    interrupted: str | None = None


class Trainer:
    """A training run of ``model`` on ``task`` with AdamW + warm-up/cosine (see :class:`TrainConfig`).

    Construction is the setup: it checks the arguments, builds the optimizer, takes the run
    folder's lock (:class:`~attnlab.train.run_lock.RunLock`: a second writer gets an error naming
    this run), then either restores the newest verified checkpoint in ``out_dir`` (``resume=True``:
    model, optimizer, RNG, history) or starts fresh (seeds torch with ``config.seed``; a folder
    that holds an earlier run is refused unless ``overwrite=True``, which deletes its checkpoints
    and metrics), and opens the metrics files. Then::

        while not trainer.done:                  # steps_done == config.steps, or diverged
            row = trainer.step()                 # one optimizer update; logs the row when due
            if trainer.eval_due(): trainer.evaluate()
            if trainer.checkpoint_due(): trainer.checkpoint()
        result = trainer.finish()                # final evaluation and checkpoint, TrainResult
                                                 # (releases the lock; close() does so without them)

    The model is called as ``model(batch.inputs)`` and scored by ``task.loss``; with
    ``config.z_loss > 0`` the z-loss of the output logits is added (P02). A non-finite loss or
    gradient norm sets ``diverged`` (that update is not applied; no exception).

    ``parallel``: how the run spreads over processes (:mod:`attnlab.train.parallel`; default one
    process). Under a distributed strategy every rank builds a Trainer; rank 0 alone writes files.

    Attributes:
        model, task, config, optimizer: as given / built.
        out_dir: the run folder (None: nothing is written).
        history, evals: the rows so far (those of the run before a resume included).
        start_step: steps done before this call (the resumed checkpoint's step, else 0).
        steps_done: steps completed so far.
        diverged: a step produced a non-finite loss or gradient norm.
        train_seconds: wall time of the steps of this call (batch, forward, backward, update).
    """

    def __init__(
        self, model: nn.Module, task: Task, config: TrainConfig, *, out_dir: str | Path | None = None,
        resume: bool = False, overwrite: bool = False, parallel=None,
    ) -> None:
        check_model_and_task(model, task)
        if resume and overwrite:
            fail("overwrite", "False when resume=True (continue the run, or replace it, not both)", overwrite)
        if not isinstance(config, TrainConfig):
            fail("config", "an attnlab.train.TrainConfig", describe(config), TypeError)
        if (resume or config.ckpt_every) and out_dir is None:
            fail("out_dir", "a folder when resume=True or config.ckpt_every > 0", "None")
        self._logits_out = task.spec.output in ("lm", "class")
        if config.z_loss > 0 and not self._logits_out:
            fail("config.z_loss", f"0 for a task with {task.spec.output!r} output (z-loss needs logits)",
                 config.z_loss)
        self.model, self.task, self.config = model, task, config
        self.parallel = parallel if parallel is not None else SingleProcess()
        self.optimizer = build_optimizer(model, config)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._ckpt_dir = self.out_dir / CHECKPOINT_DIR if self.out_dir is not None else None
        self.history: list[dict] = []
        self.evals: list[dict] = []
        self.stop_reason: str | None = None
        self._writer = None
        writes = self.out_dir is not None and self.parallel.is_writer
        # the writing rank alone holds the lock (another rank would find rank 0's and refuse)
        self._lock = RunLock(self.out_dir).acquire() if writes else None
        try:
            self.start_step = self._restore() if resume else 0
            if self.start_step == 0:
                self._clear_earlier_run(overwrite or resume)
                torch.manual_seed(config.seed)
            self._writer = MetricsWriter(self.out_dir, self.history, self.evals) if writes else None
            self._net = self.parallel.wrap(model)  # after the restore: a distributed wrapper syncs the loaded weights
        except BaseException:
            self.close()
            raise
        self.steps_done = self.start_step
        self._last_saved = self.start_step or None
        self.diverged = False
        self.train_seconds = 0.0
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        self._peak_rss = PeakRSS().start()
        model.train()

    def _clear_earlier_run(self, allowed: bool) -> None:
        """Delete what an earlier run left in ``out_dir`` (checkpoints, metrics) if ``allowed``, else refuse."""
        if self.out_dir is None or (allowed and not self.parallel.is_writer):
            return  # every rank refuses alike; only the writing rank deletes
        ckpts = list_checkpoints(self._ckpt_dir)
        metrics = [p for p in (self.out_dir / "metrics.jsonl", self.out_dir / "metrics.csv") if p.exists()]
        if not allowed and (ckpts or any(p.stat().st_size for p in metrics)):
            what = [f"checkpoints up to step {ckpts[0][0]}"] if ckpts else []
            what += [p.name for p in metrics]
            fail("out_dir", "a folder without an earlier run (resume=True / --resume continues that run, "
                 "overwrite=True / --overwrite deletes it and starts again)",
                 f"{self.out_dir}, which holds a run ({', '.join(what)})")
        if not self.parallel.is_writer:
            return
        if self._ckpt_dir.exists():
            shutil.rmtree(self._ckpt_dir)
        for p in metrics:
            p.unlink()

    def _restore(self) -> int:
        """Load the newest complete checkpoint (model, optimizer, RNG, history); its step, or 0 if none."""
        ck = load_latest(self._ckpt_dir)
        if ck is None:
            warnings.warn(f"resume: no checkpoint in {self._ckpt_dir}; starting from step 0", stacklevel=4)
            return 0
        _check_resume_config(ck.state["config"], self.config, ck.path)
        ck.restore(self.model, self.optimizer)
        self.history, self.evals = ck.state["history"], ck.state["evals"]
        return ck.step

    # ---- steps -------------------------------------------------------------

    @property
    def done(self) -> bool:
        """No step is left: ``config.steps`` are done, or a step diverged."""
        return self.diverged or self.steps_done >= self.config.steps

    def train_batch(self, step: int) -> Batch:
        """The training batch of step ``step`` (1-based): ``task.batch("train", step - 1, batch_size)`` (the whole
        batch; a distributed strategy runs its share of it)."""
        return self.task.batch("train", step - 1, self.config.batch_size)

    def step(self) -> dict:
        """Train step ``steps_done + 1``; returns its row (step, loss, lr, [z_loss,] log_z, grad_norm, metrics).

        The row joins ``history`` (and metrics.jsonl) every ``log_every`` steps, at the last step,
        and when the step diverges; a diverged step sets ``diverged`` and does not count.
        RuntimeError once the run is :attr:`done`.
        """
        if self.done:
            why = f"diverged after step {self.steps_done}" if self.diverged else f"{self.steps_done} steps done"
            raise RuntimeError(f"step: the run is done ({why} of {self.config.steps}); call finish()")
        step = self.steps_done + 1
        t0 = time.perf_counter()
        lr = self.config.lr_at(step)
        set_lr(self.optimizer, lr)
        total, row, metrics = self._forward(self.train_batch(step), step, lr)
        applied = self._update(total, row)
        row.update(metric_floats(metrics))
        self.train_seconds += time.perf_counter() - t0
        if applied:
            self.steps_done = step
        else:
            self.diverged = True
        if not applied or step % self.config.log_every == 0 or step == self.config.steps:
            self._log("train", row, self.history)
        return row

    def _forward(self, batch: Batch, step: int, lr: float) -> tuple[torch.Tensor, dict, dict]:
        """The loss to minimise (task loss + z-loss), the step's row so far, and the task's metrics.

        Forward and losses run at ``config.precision`` (autocast for bf16); the backward runs outside it.
        """
        with precision_context(self.config.precision):
            outputs = self.parallel.forward(self._net, batch, step)
            loss, metrics = self.task.loss(outputs, batch)
            row = {"step": step, "loss": float(loss.detach()), "lr": lr}
            total = loss
            if self.config.z_loss > 0:
                zl, lz = z_loss(outputs, self.config.z_loss)
                total = loss + zl
                row["z_loss"], row["log_z"] = float(zl.detach()), float(lz)
            elif self._logits_out:
                row["log_z"] = float(log_partition(outputs.detach()).mean())
        return total, row, metrics

    def _update(self, total: torch.Tensor, row: dict) -> bool:
        """Backward, clip, AdamW update; False (update not applied) if the loss or gradient norm is non-finite."""
        if not math.isfinite(float(total.detach())):
            row["grad_norm"] = math.nan
            return False
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self._params, self._max_norm))
        row["grad_norm"] = grad_norm
        if not math.isfinite(grad_norm):
            return False
        self.optimizer.step()
        return True

    def _log(self, split: str, row: dict, rows: list[dict]) -> None:
        rows.append(row)
        if self._writer is not None:
            self._writer.add(split, row)

    # ---- evaluation and checkpoints -----------------------------------------

    def eval_due(self) -> bool:
        """Whether the step just done is an evaluation step (a multiple of ``eval_every`` > 0)."""
        return bool(self.config.eval_every) and self.steps_done % self.config.eval_every == 0

    def evaluate(self) -> dict:
        """Evaluate on ``eval_batches`` val batches now; the row ``{"step", "loss", <metrics>}`` joins ``evals``."""
        ev = {"step": self.steps_done, **evaluate(self.model, self.task, batches=self.config.eval_batches,
                                                  batch_size=self.config.batch_size, precision=self.config.precision,
                                                  parallel=self.parallel)}
        self._log("val", ev, self.evals)
        return ev

    def checkpoint_due(self) -> bool:
        """Whether the step just done is a checkpoint step (a multiple of ``ckpt_every`` > 0; needs ``out_dir``)."""
        return bool(self.config.ckpt_every) and self.steps_done % self.config.ckpt_every == 0

    def checkpoint(self) -> Path | None:
        """Save checkpoint ``steps_done`` under ``out_dir/checkpoints``, rewrite metrics.csv; its path (None
        without ``out_dir``)."""
        if self._ckpt_dir is None or not self.parallel.is_writer:
            return None
        state = {"config": self.config.to_dict(), "history": self.history, "evals": self.evals}
        state["model"] = model_record(self.model, self.task)  # what load_model needs to rebuild it
        path = save_checkpoint(self._ckpt_dir, self.steps_done, self.model, self.optimizer, state)
        self._writer.write_csv()
        self._last_saved = self.steps_done
        return path

    # ---- finish ------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Mark the run as stopped early by ``reason`` (a signal name): :meth:`finish` then saves a checkpoint
        at this step boundary but skips the final evaluation, and the result's ``interrupted`` says why."""
        self.stop_reason = reason

    def finish(self) -> TrainResult:
        """Final evaluation (reused if the last step was evaluated; skipped after :meth:`request_stop`), a final
        checkpoint unless the run diverged or one was just saved, every process waited for, metrics files
        closed and the run folder's lock released; the run's :class:`TrainResult`."""
        try:
            peak = self._peak_rss.rise_mib()
            if self.evals and self.evals[-1]["step"] == self.steps_done:
                final_eval = {k: v for k, v in self.evals[-1].items() if k != "step"}
            elif self.stop_reason is not None:
                final_eval = None
            else:
                final_eval = evaluate(self.model, self.task, batches=self.config.eval_batches,
                                      batch_size=self.config.batch_size, precision=self.config.precision,
                                      parallel=self.parallel)
            if not self.diverged and self._last_saved != self.steps_done and self.steps_done > 0:
                self.checkpoint()
            self.parallel.barrier()  # rank 0's files are complete on every rank when train() returns
        finally:
            self.close()
        ran = self.steps_done - self.start_step
        per_second = self.config.batch_size * ran / self.train_seconds if self.train_seconds > 0 else 0.0
        return TrainResult(
            history=self.history, evals=self.evals, final_eval=final_eval, train_seconds=self.train_seconds,
            tokens_per_second=per_second * self.task.tokens_per_example(), peak_mem_mib=peak,
            steps_done=self.steps_done, diverged=self.diverged, examples_per_second=per_second,
            interrupted=self.stop_reason,
        )

    def close(self) -> None:
        """Close the metrics files and release the run folder's lock, without evaluating or saving (what
        :meth:`finish` ends with; call it when abandoning a run). Idempotent."""
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            if self._lock is not None:
                self._lock.release()


def _check_resume_config(saved: dict, config: TrainConfig, path) -> None:
    cur = config.to_dict()
    # a field the checkpoint predates (e.g. precision) had its default value then
    saved = {**TrainConfig().to_dict(), **saved}
    diff = {k: (saved.get(k), v) for k, v in cur.items() if k not in RESUME_FREE_FIELDS and saved.get(k) != v}
    steps_diff = diff.pop("steps", None)
    if diff:
        fail(
            "config",
            f"the settings of checkpoint {path} for a resumed run",
            "different settings " + ", ".join(f"{k}={v[1]!r} (checkpoint: {v[0]!r})" for k, v in diff.items()),
        )
    if steps_diff is not None:
        warnings.warn(
            f"resuming with steps={config.steps} (checkpoint: {steps_diff[0]}): the cosine schedule changes, "
            "so the run no longer matches an uninterrupted one",
            stacklevel=5,
        )
