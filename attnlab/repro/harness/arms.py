"""Arms: the models a reproduction trains side by side, as data, and the loop that trains them on a task.

An :class:`Arm` is a name and a builder from the task's :class:`~attnlab.tasks.base.TaskSpec`;
a reproduction lists its arms, and :func:`train_arms` gives each the same start (``torch.manual_seed``
before it is built), the same :class:`~attnlab.train.TrainConfig` and the same batches. Keeping arms
as data is what lets a runner sweep a setting (e.g. the learning rate) per arm.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Arm", "mixer_arm", "ArmResults", "train_arms", "count_params", "total_params"]


@dataclass(frozen=True)
class Arm:
    """One model to train: ``build(spec) -> nn.Module`` for the task's spec."""

    name: str
    build: Callable[..., nn.Module]


def mixer_arm(name: str, mixer: str, mixer_kwargs: dict | None = None, **model_kw) -> Arm:
    """The task's backbone (``attnlab.models.build_for_task``) with token mixer (or pattern) ``mixer``."""

    def build(spec):
        from attnlab.models import build_for_task

        return build_for_task(spec, mixer=mixer, mixer_kwargs=mixer_kwargs or None, **model_kw)

    return Arm(name, build)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_params(model: nn.Module) -> int:
    """Number of parameters, trainable or not."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class ArmResults:
    """Per arm name: final metric, eval curve [(step, value)], trainable parameters, wall and CPU seconds of
    training (rounded to 0.1 s), the trained model and its :class:`~attnlab.train.TrainResult`."""

    final: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    cpu_seconds: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)


def train_arms(task, arms: list[Arm], cfg, *, seed: int = 0, progress: bool = False,
               metric: str | None = None) -> ArmResults:
    """Train every arm on ``task`` with ``cfg`` (an ``attnlab.train.TrainConfig``), each built after
    ``torch.manual_seed(seed)``.

    ``metric`` (default ``task.metric``) is read from the final evaluation and from each evaluation
    along the way (the curve).
    """
    from attnlab.train import train

    metric = metric or task.metric
    out = ArmResults()
    for arm in arms:
        torch.manual_seed(seed)
        model = arm.build(task.spec)
        out.params[arm.name] = count_params(model)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(model, task, cfg, progress=progress)
        out.seconds[arm.name] = round(time.perf_counter() - t0, 1)
        out.cpu_seconds[arm.name] = round(time.process_time() - c0, 1)
        out.final[arm.name] = float(res.final_eval[metric])
        out.curves[arm.name] = [(int(ev.get("step", 0)), float(ev[metric]))
                                for ev in (res.evals or []) if isinstance(ev, dict) and metric in ev]
        out.models[arm.name], out.results[arm.name] = model, res
    return out
