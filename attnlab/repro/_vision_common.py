"""Shared routine of the vision reproductions: train designs and a parameter-matched ViT, compare.

Every vision repro (spectformer, activator, convit, crossvit, tnt, shvit) does
the same thing: build a few "arms" (the design, its ablations, and
``attnlab.models.ViT`` widened or narrowed until its parameter count matches
the design's), train each with ``attnlab.train.train`` on the generated
``shapes`` task and on ``digits`` for a few seeds, evaluate accuracy on held-out
batches, time a training step (images/s, forward + backward, batch 32, fp32,
arms interleaved) and count parameters. The repro modules then apply their
paper's rule to the table this returns, after :func:`learned_guard`: when every
arm sits within 5 points of chance on ``shapes`` the verdict is inconclusive.
The vision repros use ``shapes`` without distractors (:data:`SHAPES_KWARGS`).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from attnlab.utils.threads import torch_threads
from attnlab.tasks.base import Batch, Task, TaskSpec

__all__ = [
    "Arm", "Budget", "SubsetTask", "count_params", "vit_matched", "make_task", "run_arms", "mean_acc", "not_learned", "learned_guard", "flat_measured",
    "SHAPES_KWARGS", "LEARNED_MARGIN",
    "format_table", "plot_bars",
]


#: ``shapes`` kwargs of the vision repros' budgets: no distractor shapes. With the default three, no design here
#: gets off chance (12.5 %) in a 300-step budget; with none, the label still needs the positions of two distant
#: objects and their contents.
SHAPES_KWARGS = {"num_distractors": 0}
#: A task counts as learned when the best arm beats chance by this much; otherwise verdicts are inconclusive.
LEARNED_MARGIN = 0.05


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Arm:
    """One model to train: ``build(img_size, in_chans, num_classes) -> nn.Module``."""

    name: str
    build: Callable[[int, int, int], nn.Module]


@dataclass
class Budget:
    """Training budget of one run (per arm, task, seed)."""

    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.05
    eval_batches: int = 8
    eval_batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1)
    tasks: tuple[str, ...] = ("shapes", "digits")
    bench_repeats: int = 5
    task_kwargs: dict = field(default_factory=dict)
    task_seeds: dict = field(default_factory=dict)  # task -> seeds, overriding ``seeds`` (e.g. one seed on digits)

    def seeds_for(self, task: str) -> tuple[int, ...]:
        """The seeds to run on ``task``."""
        return tuple(self.task_seeds.get(task, self.seeds))


def quick_budget() -> Budget:
    """The smoke-size budget every vision reproduction's ``--quick`` mode uses (one seed, shapes only)."""
    return Budget(steps=15, batch_size=16, eval_batches=2, eval_batch_size=32, seeds=(0,), tasks=("shapes",),
                  bench_repeats=1, task_kwargs={"shapes": SHAPES_KWARGS})


def full_budget(steps: int, **overrides) -> Budget:
    """The full-run budget shared by the vision reproductions: ``steps`` x 32 images on shapes (no distractors)
    and digits, seeds 0 and 1, 8 eval batches, 5 timing repeats; ``overrides`` set any other field."""
    base = dict(steps=steps, batch_size=32, eval_batches=8, seeds=(0, 1), tasks=("shapes", "digits"),
                bench_repeats=5, task_kwargs={"shapes": SHAPES_KWARGS})
    return Budget(**{**base, **overrides})


class SubsetTask(Task):
    """A task whose training split is cut to its first ``num_batches`` batches, cycled.

    Models small-data regimes (ConViT's sample-efficiency claim) on generated
    tasks: training batch i is the wrapped task's batch ``i % num_batches``, so
    only ``num_batches * batch_size`` distinct images are ever seen; val/test
    are unchanged.
    """

    def __init__(self, task: Task, num_batches: int):
        super().__init__(task.seed)
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches: expected a positive int, received {num_batches!r}")
        self.task = task
        self.num_batches = num_batches
        self.name = f"{task.name}[{num_batches} batches]"
        self.metric = task.metric
        self.higher_is_better = task.higher_is_better

    @property
    def spec(self) -> TaskSpec:
        """The wrapped task's spec."""
        return self.task.spec

    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Training batches cycle through the first ``num_batches``; other splits pass through."""
        if split == "train":
            index = index % self.num_batches
        return self.task.batch(split, index, batch_size)

    def loss(self, outputs, batch):
        """The wrapped task's loss."""
        return self.task.loss(outputs, batch)

    def tokens_per_example(self) -> int:
        """The wrapped task's value."""
        return self.task.tokens_per_example()


def make_task(name: str, seed: int = 0, **kwargs) -> Task:
    """Build a registered task (``shapes``, ``digits``, ...) with ``seed``."""
    from attnlab import tasks

    return tasks.create(name, seed=seed, **kwargs)


def vit_matched(
    target_params: int, img_size: int, in_chans: int, num_classes: int, *, patch_size: int = 4, depth: int = 4,
    num_heads: int = 4, **kwargs,
) -> nn.Module:
    """``attnlab.models.ViT`` whose width is chosen (multiples of num_heads) to match ``target_params`` best."""
    from attnlab.models import ViT

    best, best_gap = None, math.inf
    for dim in range(num_heads, 1025, num_heads):
        model = ViT(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes, dim=dim,
                    depth=depth, num_heads=num_heads, **kwargs)
        gap = abs(count_params(model) - target_params)
        if gap < best_gap:
            best, best_gap = model, gap
        elif count_params(model) > target_params:
            break
    return best


def _metric(result_eval: dict, task: Task) -> float:
    for key in (task.metric, "accuracy", "acc"):
        if key in result_eval:
            return float(result_eval[key])
    raise KeyError(f"eval: expected the metric {task.metric!r}, received keys {sorted(result_eval)}")


def run_arms(arms: list[Arm], budget: Budget, *, progress: bool = False, task_wrap: Callable[[Task], Task] | None = None,
             measure_speed: bool = True, keep_models: bool = False) -> dict:
    """Train every arm on every task and seed; returns the table the repros judge.

    Returns ``{"rows": [...], "summary": {task: {arm: {...}}}}`` where a row is
    ``{arm, task, seed, accuracy, train_seconds}`` and the summary holds, per task
    and arm, mean and std accuracy over seeds, parameters and training images/s
    (median forward+backward step at batch 32, arms interleaved; measured once
    per task). With ``keep_models`` the trained models are returned too, as
    ``{"models": {task: {arm: [model per seed]}}}``.
    """
    with torch_threads(1):  # small models: a second intra-op thread is slower on the shared 2-core box
        return _run_arms(arms, budget, progress=progress, task_wrap=task_wrap, measure_speed=measure_speed,
                         keep_models=keep_models)


def _run_arms(arms: list[Arm], budget: Budget, *, progress: bool, task_wrap, measure_speed: bool,
              keep_models: bool) -> dict:
    from attnlab.train.throughput import classifier_step_seconds
    from attnlab.train import TrainConfig, evaluate, train

    rows, summary, kept = [], {}, {}
    for task_name in budget.tasks:
        base = make_task(task_name, seed=0, **budget.task_kwargs.get(task_name, {}))
        spec = base.spec
        img = spec.img_size[0] if isinstance(spec.img_size, (tuple, list)) else spec.img_size
        chans, ncls = spec.in_chans, spec.num_classes
        summary[task_name] = {}
        models_for_speed = {}
        for arm in arms:
            accs = []
            for seed in budget.seeds_for(task_name):
                torch.manual_seed(seed)
                model = arm.build(img, chans, ncls)
                task = make_task(task_name, seed=seed, **budget.task_kwargs.get(task_name, {}))
                if task_wrap is not None:
                    task = task_wrap(task)
                cfg = TrainConfig(
                    steps=budget.steps, batch_size=budget.batch_size, lr=budget.lr,
                    warmup_steps=min(budget.warmup_steps, max(1, budget.steps // 5)),
                    weight_decay=budget.weight_decay, eval_every=0, eval_batches=budget.eval_batches,
                    log_every=max(1, budget.steps // 5), seed=seed,
                )
                result = train(model, task, cfg, progress=progress)
                ev = evaluate(model, task, batches=budget.eval_batches, batch_size=budget.eval_batch_size, split="val")
                acc = _metric(ev, task)
                accs.append(acc)
                if keep_models:
                    kept.setdefault(task_name, {}).setdefault(arm.name, []).append(model)
                rows.append(dict(arm=arm.name, task=task_name, seed=seed, accuracy=acc,
                                 train_seconds=float(result.train_seconds), diverged=bool(result.diverged)))
            models_for_speed[arm.name] = model
            summary[task_name][arm.name] = dict(
                accuracy=statistics.fmean(accs), accuracy_std=statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                params=count_params(model),
            )
        if measure_speed:
            sec = classifier_step_seconds(models_for_speed, img, batch=32, repeats=budget.bench_repeats, warmup=1, in_chans=chans,
                          num_classes=ncls)
            for name, s in sec.items():
                summary[task_name][name]["images_per_s"] = 32.0 / s
    return {"rows": rows, "summary": summary} | ({"models": kept} if keep_models else {})


def not_learned(table: dict, task: str) -> str | None:
    """Why ``task`` was not learned (best arm below chance + ``LEARNED_MARGIN``), or None if it was.

    Repros call this before their rule: comparing arms that all sit at chance
    measures noise, so the verdict is then inconclusive.
    """
    arms = table["summary"][task]
    best = max(arms, key=lambda a: arms[a]["accuracy"])
    chance = 1.0 / make_task(task).spec.num_classes
    if arms[best]["accuracy"] < chance + LEARNED_MARGIN:
        return (f"{task} was not learned within the budget (best arm {best} at {100 * arms[best]['accuracy']:.1f}%, "
                f"chance {100 * chance:.1f}%), so the comparison on it is inconclusive")
    return None


def learned_guard(measured: dict, verdict: str, summary: str, *tables: dict, task: str = "shapes") -> tuple[str, str]:
    """Apply the "was it learned" check of :func:`not_learned` to a repro's verdict.

    Records ``measured["<task> learned"]``; if any table's ``task`` sits at chance, the
    verdict becomes inconclusive and the summary says why.
    """
    from attnlab.repro.base import INCONCLUSIVE

    whys = [w for w in (not_learned(t, task) for t in tables) if w]
    measured[f"{task} learned"] = not whys
    if not whys:
        return verdict, summary
    return INCONCLUSIVE, f"Inconclusive: {whys[0]}. Rule outcome had it been learned: {verdict}. {summary}"


def flat_measured(table: dict, prefix: str = "") -> dict:
    """The summary of a :func:`run_arms` table as flat ``{"<prefix><task>/<arm> <field>": value}`` entries."""
    return {f"{prefix}{t}/{a} {k}": v for t, arms in table["summary"].items() for a, s in arms.items()
            for k, v in s.items()}


def mean_acc(table: dict, task: str, arm: str) -> float:
    """Mean accuracy of ``arm`` on ``task`` from a :func:`run_arms` table."""
    return table["summary"][task][arm]["accuracy"]


def format_table(table: dict) -> str:
    """Markdown table: task, arm, accuracy (mean +- std over seeds), parameters, images/s."""
    out = ["| task | arm | accuracy | params | train img/s |", "|---|---|---|---|---|"]
    for task, arms in table["summary"].items():
        for arm, s in arms.items():
            ips = f"{s['images_per_s']:.0f}" if "images_per_s" in s else "-"
            out.append(f"| {task} | {arm} | {100 * s['accuracy']:.1f} +- {100 * s['accuracy_std']:.1f} | "
                       f"{s['params'] / 1e3:.0f} k | {ips} |")
    return "\n".join(out)


def plot_bars(table: dict, path, title: str) -> str | None:
    """Bar chart of mean accuracy per arm and task (None if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(table["summary"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        arms = list(table["summary"][task])
        vals = [100 * table["summary"][task][a]["accuracy"] for a in arms]
        errs = [100 * table["summary"][task][a]["accuracy_std"] for a in arms]
        ax.bar(range(len(arms)), vals, yerr=errs, color="tab:blue")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("val accuracy (%)")
        ax.set_title(task)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
