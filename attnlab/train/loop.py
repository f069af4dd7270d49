"""The training loop: ``train(model, task, config)`` and ``evaluate(model, task)``.

Step ``s`` (1-based) trains on ``task.batch("train", s - 1, batch_size)``, so the
data depend only on the step; together with the optimizer and RNG state stored in
each checkpoint this makes a resumed run follow an uninterrupted one exactly.
"""
from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.tasks.base import SPLITS, Task
from attnlab.train.checkpoint import CHECKPOINT_DIR, load_latest, save_checkpoint
from attnlab.train.config import RESUME_FREE_FIELDS, TrainConfig
from attnlab.train.losses import log_partition, z_loss
from attnlab.train.metrics import MetricsWriter
from attnlab.train.optim import build_optimizer, set_lr

__all__ = ["train", "evaluate", "TrainResult", "Callback"]

#: ``callback(step, row) -> bool | None``, called after every step with that step's
#: row (step, loss, lr, grad_norm, task metrics, ...); returning True stops training
#: after this step (a checkpoint is saved if out_dir is set).
Callback = Callable[[int, dict], "bool | None"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

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
        peak_mem_mib: rise of the process's peak resident memory during this call
            (VmHWM at the end minus VmRSS at the start, /proc/self/status).
        steps_done: steps completed (including those before a resume).
        diverged: True if a step produced a non-finite loss or gradient norm; training
            stopped there (that step's update was not applied).
    """

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    final_eval: dict | None = None
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_mem_mib: float = 0.0
    steps_done: int = 0
    diverged: bool = False


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0); without it the
    # peak of earlier work in this process would mask this run's.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _scalar(v) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _check_common(model, task):
    if not isinstance(model, nn.Module):
        fail("model", "a torch.nn.Module", describe(model), TypeError)
    if not isinstance(task, Task):
        fail("task", "an attnlab.tasks.Task", describe(task), TypeError)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, *, batches: int = 4, batch_size: int = 32, split: str = "val") -> dict:
    """Mean loss and task metrics over batches ``0 .. batches-1`` of ``split``, in eval mode.

    Returns ``{"loss": float, <task metric>: float, ...}``: per-batch values averaged
    with equal weight. The model's train/eval mode is restored afterwards.
    """
    _check_common(model, task)
    for name, v in (("batches", batches), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            fail(name, "a positive int", describe(v), TypeError if not isinstance(v, int) else ValueError)
    if split not in SPLITS:
        fail("split", f"one of {list(SPLITS)}", repr(split))
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for i in range(batches):
            batch = task.batch(split, i, batch_size)
            loss, metrics = task.loss(model(batch.inputs), batch)
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + _scalar(v)
    finally:
        model.train(was_training)
    return {k: v / batches for k, v in sums.items()}


def _check_resume_config(saved: dict, config: TrainConfig, path) -> None:
    cur = config.to_dict()
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
            stacklevel=3,
        )


def train(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    callbacks: Iterable[Callback] = (),
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
    Returns:
        A :class:`TrainResult`.
    """
    _check_common(model, task)
    if not isinstance(config, TrainConfig):
        fail("config", "an attnlab.train.TrainConfig", describe(config), TypeError)
    if (resume or config.ckpt_every) and out_dir is None:
        fail("out_dir", "a folder when resume=True or config.ckpt_every > 0", "None")
    spec = task.spec
    logits_out = spec.output in ("lm", "class")
    if config.z_loss > 0 and not logits_out:
        fail("config.z_loss", f"0 for a task with {spec.output!r} output (z-loss needs logits)", config.z_loss)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            fail("callbacks", "callables cb(step, row)", describe(cb), TypeError)

    optimizer = build_optimizer(model, config)
    ckpt_dir = Path(out_dir) / CHECKPOINT_DIR if out_dir is not None else None
    history: list[dict] = []
    evals: list[dict] = []
    start = 0
    if resume:
        ck = load_latest(ckpt_dir)
        if ck is None:
            warnings.warn(f"resume: no checkpoint in {ckpt_dir}; starting from step 0", stacklevel=2)
        else:
            _check_resume_config(ck.state["config"], config, ck.path)
            ck.restore(model, optimizer)
            start, history, evals = ck.step, ck.state["history"], ck.state["evals"]
    if start == 0:
        if ckpt_dir is not None and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        torch.manual_seed(config.seed)
    writer = MetricsWriter(out_dir, history, evals) if out_dir is not None else None

    def save(step: int) -> None:
        state = {"config": config.to_dict(), "history": history, "evals": evals}
        save_checkpoint(ckpt_dir, step, model, optimizer, state)
        writer.write_csv()

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=f"train {task.name}", dynamic_ncols=True, leave=False)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    tokens_per_step = task.tokens_per_example() * config.batch_size
    _reset_peak_rss()
    rss0 = _proc_status_kib("VmRSS")
    step_seconds = 0.0
    diverged = False
    last_saved = start if start else None
    step = start
    model.train()
    try:
        for step in range(start + 1, config.steps + 1):
            t0 = time.perf_counter()
            lr = config.lr_at(step)
            set_lr(optimizer, lr)
            batch = task.batch("train", step - 1, config.batch_size)
            outputs = model(batch.inputs)
            loss, metrics = task.loss(outputs, batch)
            row = {"step": step, "loss": float(loss.detach()), "lr": lr}
            total = loss
            if config.z_loss > 0:
                zl, lz = z_loss(outputs, config.z_loss)
                total = loss + zl
                row["z_loss"], row["log_z"] = float(zl.detach()), float(lz)
            elif logits_out:
                row["log_z"] = float(log_partition(outputs.detach()).mean())
            finite = math.isfinite(float(total.detach()))
            if finite:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
                finite = math.isfinite(grad_norm)
                row["grad_norm"] = grad_norm
                if finite:
                    optimizer.step()
            else:
                row["grad_norm"] = math.nan
            row.update({k: _scalar(v) for k, v in metrics.items()})
            step_seconds += time.perf_counter() - t0
            if not finite:
                diverged = True
                step -= 1  # this step's update was not applied
                history.append(row)
                if writer:
                    writer.add("train", row)
                break
            if step % config.log_every == 0 or step == config.steps:
                history.append(row)
                if writer:
                    writer.add("train", row)
            if config.eval_every and step % config.eval_every == 0:
                ev = {"step": step, **evaluate(model, task, batches=config.eval_batches, batch_size=config.batch_size)}
                evals.append(ev)
                if writer:
                    writer.add("val", ev)
            stop = any(bool(cb(step, row)) for cb in callbacks)
            if ckpt_dir is not None and (stop or (config.ckpt_every and step % config.ckpt_every == 0)):
                save(step)
                last_saved = step
            if bar is not None:
                bar.update(1)
                if step % config.log_every == 0:
                    post = {"loss": f"{row['loss']:.4f}", "lr": f"{lr:.2e}"}
                    if task.metric in row:
                        post[task.metric] = f"{row[task.metric]:.4f}"
                    bar.set_postfix(post)
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    hwm = _proc_status_kib("VmHWM")
    peak = max(hwm - rss0, 0) / 1024 if hwm is not None and rss0 is not None else float("nan")

    if evals and evals[-1]["step"] == step:
        final_eval = {k: v for k, v in evals[-1].items() if k != "step"}
    else:
        final_eval = evaluate(model, task, batches=config.eval_batches, batch_size=config.batch_size)
    if ckpt_dir is not None and not diverged and last_saved != step and step > 0:
        save(step)
    if writer:
        writer.close()
    ran = step - start
    return TrainResult(
        history=history,
        evals=evals,
        final_eval=final_eval,
        train_seconds=step_seconds,
        tokens_per_second=tokens_per_step * ran / step_seconds if step_seconds > 0 else 0.0,
        peak_mem_mib=peak,
        steps_done=step,
        diverged=diverged,
    )
