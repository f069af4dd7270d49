"""The image-classification side of the harness: designs against parameter-matched ViTs, under the protocol.

The vision reproductions (spectformer, activator, convit, crossvit, tnt, shvit, path_ensemble,
hyena_nd, and the efficient-mixer ones in :mod:`attnlab.repro.harness.dense`) all do the same: build
a few arms (the design, its ablations, and ``attnlab.models.ViT`` widened or narrowed until its
parameter count matches the design's) and train each with ``attnlab.train.train`` on a generated
image task (``shapes`` without distractors, :data:`SHAPES_KWARGS`, or ``digits``) under the
protocol of :mod:`~attnlab.repro.harness.protocol`: an LR sweep per arm on the val split at a
fraction of the budget, then every seed at the arm's LR, accuracy on the test split
(:func:`train_vision_arms`). Training images/s (forward + backward, batch 32, fp32, arms
interleaved) is measured on every seed's models, so speed ratios have intervals too.

A module then states its figures (intervals, in points) and its rule; :func:`vision_outcome`
records the tables, the :data:`~attnlab.repro.harness.protocol.AT_CHANCE` figures (arms within
:data:`LEARNED_MARGIN` of chance at every LR tried), the bar plots and the protocol's records.
:func:`margin_study` and :func:`data_efficiency_study` are the two shapes of study several designs
share.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from torch import nn

from attnlab.repro.harness.arms import Arm, count_params, total_params
from attnlab.repro.harness.intervals import Interval, paired, t_interval
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, FairArms, Protocol, at_chance_figure, fair_arms, \
    training_trial
from attnlab.repro.harness.rules import chance_rule, clears
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.tasks.base import Batch, Task, TaskSpec

__all__ = [
    "Budget", "quick_budget", "full_budget", "SubsetTask", "make_task", "image_kwargs", "image_model", "vit_matched",
    "matched_vit", "design_arms", "VisionTable", "train_vision_arms", "plot_bars", "vision_outcome", "margin_study",
    "design_vs_matched_vits", "margin_rule", "data_efficiency_study", "only_task", "SHAPES_KWARGS", "LEARNED_MARGIN",
    "BAND_POINTS", "VISION_LRS", "QUICK_PROTOCOL", "FULL_PROTOCOL",
]

#: ``shapes`` kwargs of the vision repros' budgets: no distractor shapes. With the default three, no design here
#: gets off chance (12.5 %) in a 300-step budget; with none, the label still needs the positions of two distant
#: objects and their contents.
SHAPES_KWARGS = {"num_distractors": 0}
#: An arm whose test (and sweep) accuracy stays below chance + this margin in every run learned nothing.
LEARNED_MARGIN = 0.05
#: The margin of the "beats" claims, in points: a design beats its baseline when the interval of its accuracy
#: gap lies above +0.5 point, and does not when the interval lies below it.
BAND_POINTS = 0.5
#: The LR grid of the vision sweeps (half-decades around the 1e-3 to 2e-3 the earlier runs used).
VISION_LRS = (3e-4, 1e-3, 3e-3)
#: The full runs' protocol: three LRs at a quarter of the steps, then three seeds (t_{0.975, 2} = 4.30).
FULL_PROTOCOL = Protocol(lrs=VISION_LRS, seeds=(0, 1, 2), sweep_fraction=0.25)
#: The quick runs' protocol: every step of it at smoke size (two LRs, two seeds).
QUICK_PROTOCOL = Protocol(lrs=(1e-3, 3e-3), seeds=(0, 1), sweep_fraction=0.5)


@dataclass
class Budget:
    """Training budget of one comparison (per arm, task and seed) and its protocol (LR grid, seeds, sweep fraction).

    ``tasks``: the judged tasks (each gets the whole protocol); ``task_kwargs``: per task.
    """

    steps: int = 400
    batch_size: int = 32
    protocol: Protocol = FULL_PROTOCOL
    warmup_steps: int = 30
    weight_decay: float = 0.05
    eval_batches: int = 8
    eval_batch_size: int = 64
    tasks: tuple[str, ...] = ("shapes",)
    bench_repeats: int = 5
    task_kwargs: dict = field(default_factory=dict)

    def config(self, lr: float, steps: int, seed: int):
        """The ``TrainConfig`` of one run (warm-up at most a fifth of the steps; no evaluation along the way)."""
        from attnlab.train import TrainConfig

        return TrainConfig(steps=steps, batch_size=self.batch_size, lr=lr,
                           warmup_steps=min(self.warmup_steps, max(1, steps // 5)), weight_decay=self.weight_decay,
                           eval_every=0, eval_batches=self.eval_batches, log_every=max(1, steps // 5), seed=seed)


def quick_budget(**overrides) -> Budget:
    """The smoke-size budget of the vision reproductions' ``--quick`` mode (15 steps x 16, :data:`QUICK_PROTOCOL`)."""
    base = dict(steps=15, batch_size=16, eval_batches=2, eval_batch_size=32, protocol=QUICK_PROTOCOL,
                tasks=("shapes",), bench_repeats=1, task_kwargs={"shapes": SHAPES_KWARGS})
    return Budget(**{**base, **overrides})


def full_budget(steps: int, **overrides) -> Budget:
    """The full-run budget shared by the vision reproductions: ``steps`` x 32 images on shapes (no distractors),
    :data:`FULL_PROTOCOL`, 8 eval batches of 64, 5 timing repeats; ``overrides`` set any other field."""
    base = dict(steps=steps, batch_size=32, eval_batches=8, protocol=FULL_PROTOCOL, tasks=("shapes",),
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


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@dataclass
class VisionTable:
    """What :func:`train_vision_arms` measured: one protocol comparison (:class:`FairArms`) per task, keyed by the
    task's label, and each arm's trainable parameters. Accuracies are on the test split, in points where a
    method says so; images/s per seed sits in each run's ``measured``."""

    fair: dict[str, FairArms] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """The label of the first task (the one most studies judge)."""
        return next(iter(self.fair))

    def _of(self, task: str | None) -> FairArms:
        return self.fair[task or self.task]

    def accuracy(self, arm: str, task: str | None = None) -> Interval:
        """Test accuracy of ``arm`` in points: mean over seeds with its 95 % interval."""
        return self._of(task).interval(arm, scale=100.0)

    def gap(self, a: str, b: str, task: str | None = None) -> Interval:
        """Accuracy of ``a`` minus ``b`` in points, seed by seed, with its interval."""
        return self._of(task).difference(a, b, scale=100.0)

    def speed_ratio(self, a: str, b: str, task: str | None = None) -> Interval:
        """Training images/s of ``a`` over ``b``'s, seed by seed (both timed side by side), with its interval."""
        f = self._of(task)
        return t_interval([x / y for x, y in zip(f.values(a, "images_per_s"), f.values(b, "images_per_s"))])

    def best(self, arms, task: str | None = None) -> str:
        """The arm of ``arms`` with the best mean test accuracy."""
        return self._of(task).best(arms)

    def add(self, other: VisionTable) -> None:
        """Merge the arms of ``other`` (the same tasks and protocol) into this table."""
        for task, f in other.fair.items():
            mine = self.fair.setdefault(task, f)
            if mine is not f:
                for d in ("sweep", "lr", "runs"):
                    getattr(mine, d).update(getattr(f, d))
        self.params.update(other.params)

    def flat(self, prefix: str = "") -> dict:
        """Per task and arm: ``"<prefix><task>/<arm> accuracy"`` (interval, points), ``... lr`` (chosen),
        ``... params`` and, when timed, ``... images_per_s`` (mean over seeds)."""
        out: dict = {}
        for task, f in self.fair.items():
            for arm in f.arms:
                key = f"{prefix}{task}/{arm}"
                out[f"{key} accuracy"] = f.interval(arm, scale=100.0)
                out[f"{key} lr"] = f.lr[arm]
                out[f"{key} params"] = self.params.get(arm)
                if "images_per_s" in f.runs[arm][0].measured:
                    out[f"{key} images_per_s"] = f.interval(arm, "images_per_s").mean
        return out

    def per_seed(self, prefix: str = "") -> dict:
        """Per-seed test accuracies (fractions), ``{"<prefix><task>/<arm> accuracy": [one per seed]}``."""
        return {f"{prefix}{task}/{arm} accuracy": f.values(arm) for task, f in self.fair.items() for arm in f.arms}

    def markdown(self) -> str:
        """Markdown table: task, arm, test accuracy (mean [95 % interval] over seeds), chosen LR, parameters,
        images/s."""
        out = ["| task | arm | test accuracy (%) | LR | params | train img/s |", "|---|---|---|---|---|---|"]
        for task, f in self.fair.items():
            for arm in f.arms:
                acc = f.interval(arm, scale=100.0)
                ips = f"{f.interval(arm, 'images_per_s').mean:.0f}" if "images_per_s" in f.runs[arm][0].measured \
                    else "-"
                out.append(f"| {task} | {arm} | {acc.mean:.1f} [{acc.low:.1f}, {acc.high:.1f}] | {f.lr[arm]:.0e} | "
                           f"{self.params.get(arm, 0) / 1e3:.0f} k | {ips} |")
        return "\n".join(out)


def train_vision_arms(arms: list[Arm], budget: Budget, *, progress: bool = False,
                      task_wrap: Callable[[Task], Task] | None = None, measure_speed: bool = True,
                      keep_models: bool = False, seed_offset: int = 0) -> VisionTable:
    """Train every arm on every task of ``budget`` under its protocol (see the module docstring and
    :func:`~attnlab.repro.harness.protocol.fair_arms`); see :class:`VisionTable`.

    Each run starts from ``torch.manual_seed(seed)`` and trains on the task generated with that seed (wrapped by
    ``task_wrap``); seeds are the protocol's plus ``seed_offset``. With ``measure_speed``, every seed's models are
    timed side by side (median forward + backward step at batch 32, arms interleaved) and their images/s
    recorded in the runs. ``keep_models`` keeps the trained models in the runs.
    """
    from attnlab.train.throughput import classifier_step_seconds

    table = VisionTable()
    for task_name in budget.tasks:
        task_kw = budget.task_kwargs.get(task_name, {})

        def make(seed: int, _name=task_name, _kw=task_kw) -> Task:
            task = make_task(_name, seed=seed, **_kw)
            return task_wrap(task) if task_wrap is not None else task

        probe = make(0)
        spec, kw = probe.spec, image_kwargs(probe.spec)
        trial = training_trial(make, lambda arm, lr, steps, seed: budget.config(lr, steps, seed),
                               eval_batches=budget.eval_batches, eval_batch_size=budget.eval_batch_size,
                               keep_models=True)
        fair = fair_arms(arms, trial, budget.protocol, steps=budget.steps, name=probe.name, metric=probe.metric,
                         chance=Chance(1.0 / spec.num_classes, LEARNED_MARGIN), seed=seed_offset, progress=progress)
        table.params |= {arm: count_params(m) for arm, m in fair.models(0).items()}
        for i in range(len(budget.protocol.seeds)):
            models = fair.models(i)
            if measure_speed:
                sec = classifier_step_seconds(models, kw["img_size"], batch=32, repeats=budget.bench_repeats,
                                              warmup=1, in_chans=kw["in_chans"], num_classes=kw["num_classes"])
                for arm, s in sec.items():
                    fair.runs[arm][i].measured["images_per_s"] = 32.0 / s
            if not keep_models:
                for arm in models:
                    fair.runs[arm][i].model = None
        table.fair[probe.name] = fair
    return table


def plot_bars(ctx, table: VisionTable, name: str, title: str) -> str:
    """Bar chart of mean test accuracy per arm (error bar: the 95 % interval's half width), one panel per task;
    saved as ``name``."""
    panels, errors = {}, {}
    for task, f in table.fair.items():
        ivs = {a: f.interval(a, scale=100.0) for a in f.arms}
        panels[task] = {a: iv.mean for a, iv in ivs.items()}
        errors[task] = {a: _finite(iv.high - iv.mean) for a, iv in ivs.items()}
    chance = {task: 100 * f.chance.level for task, f in table.fair.items() if f.chance}
    return plot_bar_panels(ctx, panels, name, ylabel="test accuracy (%)", errors=errors, suptitle=title,
                           hline=chance, hline_label="chance")


#: Headings of the tables in a summary, by measured-key prefix.
_HEADINGS = {"full/": "Full data", "small/": "Small data"}


def vision_outcome(ctx, tables: Mapping[str, VisionTable], entries: dict, summary: str, *,
                   plots: Mapping[str, tuple[str, str]]) -> ReproOutcome:
    """The outcome of a vision study.

    Measured: every table's entries (keys prefixed by the mapping's key), then ``entries`` (the study's own
    figures), then the :data:`~attnlab.repro.harness.protocol.AT_CHANCE` figure(s), one per comparison when
    there are several. Summary: ``summary`` with the tables appended. Plots: a bar chart per table (``plots``:
    prefix -> (file name, title)). Per seed: the accuracies. Protocol: every comparison's record.
    """
    measured: dict = {}
    for prefix, table in tables.items():
        measured |= table.flat(prefix)
    measured |= entries
    comparisons = [f for t in tables.values() for f in t.fair.values()]
    measured |= at_chance_figure(*comparisons)
    if len(tables) == 1:
        summary += "\n\n" + next(iter(tables.values())).markdown()
    else:
        summary += "".join(f"\n\n{_HEADINGS.get(p, p)}:\n\n{t.markdown()}" for p, t in tables.items())
    for prefix, (name, title) in plots.items():
        plot_bars(ctx, tables[prefix], name, title)
    per_seed = {k: v for p, t in tables.items() for k, v in t.per_seed(p).items()}
    return ReproOutcome(measured, summary, per_seed, protocol=[f.record() for f in comparisons])


def margin_study(ctx, arms: list[Arm], *, judged: str, against: tuple[str, ...], figure: str, plot: str,
                 title: str, note: str = "") -> ReproOutcome:
    """Train ``arms``; record ``figure`` = test accuracy of ``judged`` minus that of the best (by mean) of
    ``against``, in points, seed by seed with its interval.

    The shape of study of designs claimed to beat a baseline (crossvit, tnt, spectformer); their rule is
    :func:`margin_rule`.
    """
    budget = ctx.budget
    table = train_vision_arms(arms, budget, progress=ctx.progress, seed_offset=ctx.seed)
    best = table.best(against)
    margin = table.gap(judged, best)
    accs = ", ".join(f"{a} {table.accuracy(a).mean:.1f}%" for a in table.fair[table.task].arms)
    summary = (f"Test accuracy on {table.task} (mean over seeds {list(budget.protocol.seeds)}, each arm at its own "
               f"LR): {accs}; {judged} - {best} (the better baseline) {margin.text(3)} points (rule: the interval "
               f"above +{BAND_POINTS:g} holds, below it does not). {note}{budget.steps} steps x {budget.batch_size} "
               "images.")
    return vision_outcome(ctx, {"": table}, {figure: margin}, summary, plots={"": (plot, title)})


def design_vs_matched_vits(ctx, name: str, design: Callable[[TaskSpec], nn.Module], *, patches: tuple[int, ...],
                           against: tuple[str, ...], figure: str, title: str, note: str = "") -> ReproOutcome:
    """A design against ViTs of its parameter count, one per patch size (:func:`design_arms`, depth 4, 2 in a
    quick run), judged by its :func:`margin_study` over the ViTs ``against``; plot ``<name>.png``.

    The whole study of the single-design papers (crossvit, tnt): a module gives its design and names.
    """
    arms = design_arms(name, design, patches=patches, depth=2 if ctx.quick else 4)
    return margin_study(ctx, arms, judged=name, against=against, figure=figure, plot=f"{name}.png", title=title,
                        note=note)


def margin_rule(figure: str, judged: str, against: tuple[str, ...]) -> Callable[[Mapping], str]:
    """The rule of a :func:`margin_study`, stated before the run: if every arm it reads sat at chance at every LR
    tried, inconclusive; if ``judged`` did while a baseline learned, does not hold (the design cannot learn what its
    baseline learns at equal budget); otherwise holds if the interval of ``figure`` (points) lies above
    +:data:`BAND_POINTS`, does not hold if it lies below, else inconclusive."""

    def judge(figures: Mapping) -> str:
        return chance_rule(figures[AT_CHANCE], (judged, *against), counts_against=(judged,)) \
            or clears(figures[figure], BAND_POINTS)

    judge.__doc__ = (f"Chance rule ({judged} at chance counts against the claim), then the interval of {figure!r} "
                     f"against +{BAND_POINTS:g} points.")
    return judge


def data_efficiency_study(ctx, arms: list[Arm], *, small_batches: int, gaps: Mapping[tuple[str, str], tuple[str, str]],
                          rule: str, plot: str, title: str, growth: str | None = None) -> ReproOutcome:
    """Train ``arms`` on the full stream and on ``small_batches`` batches cycled (:class:`SubsetTask`), each
    regime under the whole protocol; record the gaps.

    ``gaps`` maps a pair of figure names (full data, small data) to the pair of arms (a, b) whose test accuracy
    difference a - b (points, seed by seed) they hold; ``growth`` names the figure "small-data gap minus
    full-data gap" of the first pair (seed by seed). Measured keys of the tables: ``full/...`` and ``small/...``;
    plots ``<plot>_full.png`` and ``<plot>_small.png``. The study of data-efficiency claims (convit, hyena_nd).
    """
    budget = ctx.budget
    full = train_vision_arms(arms, budget, progress=ctx.progress, seed_offset=ctx.seed)
    small = train_vision_arms(arms, budget, progress=ctx.progress, measure_speed=False, seed_offset=ctx.seed,
                              task_wrap=lambda t: SubsetTask(t, small_batches))
    entries, lines = {}, []
    n_small = small_batches * budget.batch_size
    for i, ((on_full, on_small), (a, b)) in enumerate(gaps.items()):
        entries[on_full], entries[on_small] = full.gap(a, b), small.gap(a, b)
        if i == 0 and growth:
            entries[growth] = paired(entries[on_small].values, entries[on_full].values)
        lines.append(f"{a} - {b} on {full.task}: {entries[on_full].text(3)} points with the full stream, "
                     f"{entries[on_small].text(3)} with {n_small} distinct training images")
    summary = (f"{'; '.join(lines)} (test accuracy, each arm at its own LR per regime; equal parameters where "
               f"matched; rule: {rule}). {budget.steps} steps x {budget.batch_size}.")
    return vision_outcome(ctx, {"full/": full, "small/": small}, entries, summary,
                          plots={"full/": (f"{plot}_full.png", f"{title}, full data"),
                                 "small/": (f"{plot}_small.png", f"{title}, {n_small} images")})


def only_task(budget: Budget, task: str) -> Budget:
    """``budget`` restricted to one task."""
    return replace(budget, tasks=(task,))
