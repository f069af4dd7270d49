"""The image-classification side of the harness: train designs and parameter-matched ViTs, judge on ``shapes``.

The vision reproductions (spectformer, activator, convit, crossvit, tnt, shvit, path_ensemble,
hyena_nd, and the efficient-mixer ones in :mod:`attnlab.repro.harness.dense`) all do the same: build
a few arms (the design, its ablations, and ``attnlab.models.ViT`` widened or narrowed until its
parameter count matches the design's), train each with ``attnlab.train.train`` on the generated
``shapes`` task (without distractors, :data:`SHAPES_KWARGS`) and on ``digits`` for a few seeds,
evaluate accuracy on held-out batches, time a training step (images/s, forward + backward, batch
32, fp32, arms interleaved) and count parameters (:func:`train_vision_arms`). A module then states
its figures and rule; :func:`vision_outcome` records the "was shapes learned" figure the rules guard
on (:data:`SHAPES_LEARNED`: false when every arm sits within :data:`LEARNED_MARGIN` of chance), the
tables, the bar plots and the per-seed accuracies. :func:`margin_study` and :func:`full_and_small` are
the two shapes of study that several designs share.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from attnlab.repro.harness.arms import Arm, count_params, total_params
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.rules import band, guard_learned
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.tasks.base import Batch, Task, TaskSpec

__all__ = [
    "Budget", "quick_budget", "full_budget", "SubsetTask", "make_task", "image_kwargs", "image_model", "vit_matched",
    "matched_vit", "design_arms", "VisionTable", "train_vision_arms", "plot_bars", "vision_outcome", "margin_study",
    "design_vs_matched_vits", "margin_rule", "full_and_small", "data_efficiency_study",
    "only_task", "SHAPES_KWARGS", "LEARNED_MARGIN", "SHAPES_LEARNED", "BAND_POINTS",
]

#: ``shapes`` kwargs of the vision repros' budgets: no distractor shapes. With the default three, no design here
#: gets off chance (12.5 %) in a 300-step budget; with none, the label still needs the positions of two distant
#: objects and their contents.
SHAPES_KWARGS = {"num_distractors": 0}
#: A task counts as learned when the best arm beats chance by this much; otherwise verdicts are inconclusive.
LEARNED_MARGIN = 0.05
#: The figure the vision rules guard on: did any arm learn ``shapes`` (best arm >= chance + LEARNED_MARGIN)?
SHAPES_LEARNED = "shapes learned"
#: Width of the band verdicts on accuracy margins, in points.
BAND_POINTS = 0.5


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


def quick_budget(**overrides) -> Budget:
    """The smoke-size budget of the vision reproductions' ``--quick`` mode (15 steps x 16, one seed, shapes only)."""
    base = dict(steps=15, batch_size=16, eval_batches=2, eval_batch_size=32, seeds=(0,), tasks=("shapes",),
                bench_repeats=1, task_kwargs={"shapes": SHAPES_KWARGS})
    return Budget(**{**base, **overrides})


def full_budget(steps: int, **overrides) -> Budget:
    """The full-run budget shared by the vision reproductions: ``steps`` x 32 images on shapes (no distractors)
    and digits, seeds 0 and 1, 8 eval batches, 5 timing repeats; ``overrides`` set any other field."""
    base = dict(steps=steps, batch_size=32, eval_batches=8, seeds=(0, 1), tasks=("shapes", "digits"),
                bench_repeats=5, task_kwargs={"shapes": SHAPES_KWARGS})
    return Budget(**{**base, **overrides})


class SubsetTask(Task):
    """A task whose training split is cut to its first ``num_batches`` batches, cycled.

    Models small-data regimes (ConViT's and Hyena N-D's data-efficiency claims) on generated
    tasks: training batch i is the wrapped task's batch ``i % num_batches``, so only
    ``num_batches * batch_size`` distinct images are ever seen; val/test are unchanged.
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


def image_kwargs(spec: TaskSpec) -> dict:
    """``img_size`` (side of the square image), ``in_chans`` and ``num_classes`` of an image task's spec."""
    img = spec.img_size[0] if isinstance(spec.img_size, (tuple, list)) else spec.img_size
    return dict(img_size=img, in_chans=spec.in_chans, num_classes=spec.num_classes)


def image_model(cls: Callable[..., nn.Module], **kwargs) -> Callable[[TaskSpec], nn.Module]:
    """A builder: ``cls(img_size=..., in_chans=..., num_classes=..., **kwargs)`` for the task's spec."""
    return lambda spec: cls(**image_kwargs(spec), **kwargs)


def vit_matched(target_params: int, spec: TaskSpec, *, patch_size: int = 4, depth: int = 4, num_heads: int = 4,
                **kwargs) -> nn.Module:
    """``attnlab.models.ViT`` for ``spec`` whose width (multiples of num_heads) best matches ``target_params``."""
    from attnlab.models import ViT

    best, best_gap = None, math.inf
    for dim in range(num_heads, 1025, num_heads):
        model = ViT(**image_kwargs(spec), patch_size=patch_size, dim=dim, depth=depth, num_heads=num_heads, **kwargs)
        gap = abs(count_params(model) - target_params)
        if gap < best_gap:
            best, best_gap = model, gap
        elif count_params(model) > target_params:
            break
    return best


def matched_vit(name: str, design: Callable[[TaskSpec], nn.Module], **vit_kw) -> Arm:
    """An arm: the :func:`vit_matched` ViT with as many parameters as ``design`` builds for the task."""
    return Arm(name, lambda spec: vit_matched(total_params(design(spec)), spec, **vit_kw))


def design_arms(name: str, design: Callable[[TaskSpec], nn.Module], *, patches: tuple[int, ...],
                depth: int) -> list[Arm]:
    """The design, then for each patch size ``p`` an arm ``ViT-p{p}`` matched to the design's parameters."""
    return [Arm(name, design), *(matched_vit(f"ViT-p{p}", design, patch_size=p, depth=depth) for p in patches)]


@dataclass
class VisionTable:
    """What :func:`train_vision_arms` measured.

    ``summary[task][arm]``: mean and std (over seeds) of val accuracy, trainable parameters and,
    when timed, training images/s; ``rows``: one per (arm, task, seed) with its accuracy and
    training seconds; ``models[task][arm]``: the trained models (per seed) when kept;
    ``num_classes[task]``: for the chance level.
    """

    summary: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    models: dict = field(default_factory=dict)
    num_classes: dict = field(default_factory=dict)

    def accuracy(self, arm: str, task: str = "shapes") -> float:
        """Mean val accuracy of ``arm`` on ``task`` over seeds."""
        return self.summary[task][arm]["accuracy"]

    def speed_ratio(self, arm: str, other: str, task: str = "shapes") -> float:
        """Training images/s of ``arm`` over ``other``'s on ``task``."""
        s = self.summary[task]
        return s[arm]["images_per_s"] / s[other]["images_per_s"]

    def add(self, other: VisionTable) -> None:
        """Merge the arms of ``other`` (trained on the same tasks) into this table."""
        for task, arms in other.summary.items():
            self.summary.setdefault(task, {}).update(arms)
        self.rows += other.rows

    def flat(self, prefix: str = "") -> dict:
        """The summary as flat ``{"<prefix><task>/<arm> <field>": value}`` entries."""
        return {f"{prefix}{t}/{a} {k}": v for t, arms in self.summary.items() for a, s in arms.items()
                for k, v in s.items()}

    def per_seed(self, prefix: str = "") -> dict:
        """Per-seed val accuracies, ``{"<prefix><task>/<arm> accuracy": [one per seed]}``."""
        out: dict = {}
        for r in self.rows:
            out.setdefault(f"{prefix}{r['task']}/{r['arm']} accuracy", []).append(r["accuracy"])
        return out

    def not_learned(self, task: str = "shapes") -> str | None:
        """Why ``task`` was not learned (best arm below chance + :data:`LEARNED_MARGIN`), or None if it was."""
        arms = self.summary[task]
        best = max(arms, key=lambda a: arms[a]["accuracy"])
        chance = 1.0 / self.num_classes[task]
        if arms[best]["accuracy"] < chance + LEARNED_MARGIN:
            return (f"{task} was not learned within the budget (best arm {best} at "
                    f"{100 * arms[best]['accuracy']:.1f}%, chance {100 * chance:.1f}%), so the comparison on it is "
                    "inconclusive")
        return None

    def markdown(self) -> str:
        """Markdown table: task, arm, accuracy (mean +- std over seeds), parameters, images/s."""
        out = ["| task | arm | accuracy | params | train img/s |", "|---|---|---|---|---|"]
        for task, arms in self.summary.items():
            for arm, s in arms.items():
                ips = f"{s['images_per_s']:.0f}" if "images_per_s" in s else "-"
                out.append(f"| {task} | {arm} | {100 * s['accuracy']:.1f} +- {100 * s['accuracy_std']:.1f} | "
                           f"{s['params'] / 1e3:.0f} k | {ips} |")
        return "\n".join(out)


def _metric(result_eval: dict, task: Task) -> float:
    for key in (task.metric, "accuracy", "acc"):
        if key in result_eval:
            return float(result_eval[key])
    raise KeyError(f"eval: expected the metric {task.metric!r}, received keys {sorted(result_eval)}")


def train_vision_arms(arms: list[Arm], budget: Budget, *, progress: bool = False,
                      task_wrap: Callable[[Task], Task] | None = None, measure_speed: bool = True,
                      keep_models: bool = False, seed_offset: int = 0) -> VisionTable:
    """Train every arm on every task of ``budget`` and each of its seeds (plus ``seed_offset``); see
    :class:`VisionTable`.

    Each (arm, seed) starts from ``torch.manual_seed(seed)`` and trains on the task generated with that
    seed; images/s is the median forward+backward step at batch 32, arms interleaved, measured once per
    task on the last seed's models.
    """
    from attnlab.train import TrainConfig, evaluate, train
    from attnlab.train.throughput import classifier_step_seconds

    table = VisionTable()
    for task_name in budget.tasks:
        task_kw = budget.task_kwargs.get(task_name, {})
        spec = make_task(task_name, seed=0, **task_kw).spec
        kw = image_kwargs(spec)
        table.num_classes[task_name] = spec.num_classes
        table.summary[task_name] = {}
        last = {}
        for arm in arms:
            accs = []
            for seed in (s + seed_offset for s in budget.seeds_for(task_name)):
                torch.manual_seed(seed)
                model = arm.build(spec)
                task = make_task(task_name, seed=seed, **task_kw)
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
                accs.append(_metric(ev, task))
                if keep_models:
                    table.models.setdefault(task_name, {}).setdefault(arm.name, []).append(model)
                table.rows.append(dict(arm=arm.name, task=task_name, seed=seed, accuracy=accs[-1],
                                       train_seconds=float(result.train_seconds), diverged=bool(result.diverged)))
            last[arm.name] = model
            table.summary[task_name][arm.name] = dict(
                accuracy=statistics.fmean(accs), accuracy_std=statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                params=count_params(model),
            )
        if measure_speed:
            sec = classifier_step_seconds(last, kw["img_size"], batch=32, repeats=budget.bench_repeats, warmup=1,
                                          in_chans=kw["in_chans"], num_classes=kw["num_classes"])
            for name, s in sec.items():
                table.summary[task_name][name]["images_per_s"] = 32.0 / s
    return table


def plot_bars(ctx, table: VisionTable, name: str, title: str) -> str:
    """Bar chart of mean val accuracy (error bar: std over seeds) per arm, one panel per task; saved as ``name``."""
    panels = {task: {a: 100 * s["accuracy"] for a, s in arms.items()} for task, arms in table.summary.items()}
    errors = {task: {a: 100 * s["accuracy_std"] for a, s in arms.items()} for task, arms in table.summary.items()}
    return plot_bar_panels(ctx, panels, name, ylabel="val accuracy (%)", errors=errors, suptitle=title)


#: Headings of the tables in a summary, by measured-key prefix.
_HEADINGS = {"full/": "Full data", "small/": "Small data"}


def vision_outcome(ctx, tables: Mapping[str, VisionTable], entries: dict, summary: str, *, judge,
                   plots: Mapping[str, tuple[str, str]], guard: bool = True) -> ReproOutcome:
    """The outcome of a vision study.

    Measured: every table's entries (keys prefixed by the mapping's key), then ``entries`` (the study's
    own figures), then, with ``guard``, :data:`SHAPES_LEARNED`. Summary: ``summary`` with the tables
    appended and, when shapes was not learned, why, with what ``judge`` would have said had it been.
    Plots: a bar chart per table (``plots``: prefix -> (file name, title)). Per seed: the accuracies.
    """
    measured: dict = {}
    for prefix, table in tables.items():
        measured |= table.flat(prefix)
    measured |= entries
    whys = [w for w in (t.not_learned("shapes") for t in tables.values()) if w] if guard else []
    if guard:
        measured[SHAPES_LEARNED] = not whys
    if len(tables) == 1:
        summary += "\n\n" + next(iter(tables.values())).markdown()
    else:
        summary += "".join(f"\n\n{_HEADINGS.get(p, p)}:\n\n{t.markdown()}" for p, t in tables.items())
    if whys:
        summary = (f"Inconclusive: {whys[0]}. Rule outcome had it been learned: "
                   f"{judge({**measured, SHAPES_LEARNED: True})}. {summary}")
    for prefix, (name, title) in plots.items():
        plot_bars(ctx, tables[prefix], name, title)
    per_seed = {k: v for p, t in tables.items() for k, v in t.per_seed(p).items()}
    return ReproOutcome(measured, summary, per_seed)


def margin_study(ctx, arms: list[Arm], *, judged: str, against: tuple[str, ...], figure: str, judge, plot: str,
                 title: str, note: str = "") -> ReproOutcome:
    """Train ``arms``; record ``figure`` = accuracy of ``judged`` minus the best of ``against`` on shapes (points).

    The shape of study of designs claimed to beat a baseline (crossvit, tnt, spectformer): the rule
    is :func:`~attnlab.repro.harness.rules.band` of ``figure`` with :data:`BAND_POINTS`, after the guard.
    """
    budget = ctx.budget
    table = train_vision_arms(arms, budget, progress=ctx.progress, seed_offset=ctx.seed)
    acc = {arm.name: table.accuracy(arm.name) for arm in arms}
    margin = 100 * (acc[judged] - max(acc[b] for b in against))
    baseline = against[0] if len(against) == 1 else "the better of " + " and ".join(against)
    summary = (f"On shapes {', '.join(f'{a} {100 * x:.1f}%' for a, x in acc.items())}; {judged} - {baseline} "
               f"{margin:+.1f} points (rule: > +{BAND_POINTS:g} holds, < -{BAND_POINTS:g} does not). {note}"
               f"{budget.steps} steps x {budget.batch_size} images, seeds {list(budget.seeds)}.")
    return vision_outcome(ctx, {"": table}, {figure: margin}, summary, judge=judge, plots={"": (plot, title)})


def design_vs_matched_vits(ctx, name: str, design: Callable[[TaskSpec], nn.Module], *, patches: tuple[int, ...],
                           against: tuple[str, ...], figure: str, judge, title: str, note: str = "") -> ReproOutcome:
    """A design against ViTs of its parameter count, one per patch size (:func:`design_arms`, depth 4, 2 in a
    quick run), judged by its :func:`margin_study` over the ViTs ``against``; plot ``<name>.png``.

    The whole study of the single-design papers (crossvit, tnt): a module gives its design and names.
    """
    arms = design_arms(name, design, patches=patches, depth=2 if ctx.quick else 4)
    return margin_study(ctx, arms, judged=name, against=against, figure=figure, judge=judge, plot=f"{name}.png",
                        title=title, note=note)


def margin_rule(figure: str) -> Callable[[Mapping], str]:
    """The rule of a :func:`margin_study`: inconclusive unless shapes was learned, then the band verdict of
    ``figure`` (points) with :data:`BAND_POINTS`: holds above +0.5, does not hold below -0.5."""

    def judge(figures: Mapping) -> str:
        return guard_learned(figures[SHAPES_LEARNED], band(figures[figure], BAND_POINTS))

    judge.__doc__ = f"Learned guard, then the band verdict (+-{BAND_POINTS:g} points) of {figure!r}."
    return judge


def full_and_small(ctx, arms: list[Arm], small_batches: int) -> tuple[VisionTable, VisionTable]:
    """Train ``arms`` twice: on the full training stream (timed) and on ``small_batches`` batches cycled
    (:class:`SubsetTask`); the shape of study of data-efficiency claims (convit, hyena_nd)."""
    full = train_vision_arms(arms, ctx.budget, progress=ctx.progress, seed_offset=ctx.seed)
    small = train_vision_arms(arms, ctx.budget, progress=ctx.progress, measure_speed=False, seed_offset=ctx.seed,
                              task_wrap=lambda t: SubsetTask(t, small_batches))
    return full, small


def data_efficiency_study(ctx, arms: list[Arm], *, small_batches: int, gaps: Mapping[tuple[str, str], tuple[str, str]],
                          judge, rule: str, plot: str, title: str) -> ReproOutcome:
    """Train ``arms`` on the full stream and on ``small_batches`` batches (:func:`full_and_small`); record gaps.

    ``gaps`` maps a pair of figure names (full data, small data) to the pair of arms (a, b) whose shapes
    accuracy difference a - b (points) they hold; the first pair is the one the rule reads (``rule``
    says how, in the summary). Measured keys of the tables: ``full/...`` and ``small/...``; plots
    ``<plot>_full.png`` and ``<plot>_small.png``. The study of data-efficiency claims (convit, hyena_nd).
    """
    full, small = full_and_small(ctx, arms, small_batches)
    entries, lines = {}, []
    n_small, budget = small_batches * ctx.budget.batch_size, ctx.budget
    for (on_full, on_small), (a, b) in gaps.items():
        entries[on_full] = 100 * (full.accuracy(a) - full.accuracy(b))
        entries[on_small] = 100 * (small.accuracy(a) - small.accuracy(b))
        lines.append(f"{a} - {b} on shapes: {entries[on_full]:+.1f} points with the full stream, "
                     f"{entries[on_small]:+.1f} with {n_small} distinct training images")
    summary = (f"{'; '.join(lines)} (equal parameters where matched; rule: {rule}). {budget.steps} steps x "
               f"{budget.batch_size}, seeds {list(budget.seeds)}.")
    return vision_outcome(ctx, {"full/": full, "small/": small}, entries, summary, judge=judge,
                          plots={"full/": (f"{plot}_full.png", f"{title}, full data"),
                                 "small/": (f"{plot}_small.png", f"{title}, {n_small} images")})


def only_task(budget: Budget, task: str) -> Budget:
    """``budget`` restricted to one task."""
    return replace(budget, tasks=(task,))
