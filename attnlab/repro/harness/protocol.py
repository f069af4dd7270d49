"""The protocol every reproduction follows (issue 18, "the verdict book"): fair arms, then seeds.

1. **Fair arms.** Every arm of a comparison trains at each learning rate of a small log-spaced grid
   (:attr:`Protocol.lrs`) for a stated fraction of the verdict's step budget
   (:attr:`Protocol.sweep_fraction`; warm-up and cosine decay are compressed into the shorter run,
   as in P02's sweeps), on a seed the verdict never reads (``ctx.seed +`` :data:`SWEEP_SEED`), and is
   scored on the **validation** split. Its LR is the one with the lowest final validation loss (P02's
   criterion; a run that diverged is never chosen; if all did, the smallest LR). Each arm then trains
   at its own LR.
2. **Seeds.** At its chosen LR every arm trains for the full budget on each seed of
   :attr:`Protocol.seeds` (seed = initialisation and generated data) and is scored on the **test**
   split, which nothing selected on. The figures a rule reads are means over these seeds with 95 %
   t intervals (:mod:`~attnlab.repro.harness.intervals`).
3. **Arms that learned nothing.** An arm whose judged metric stayed within the stated margin of
   chance (:class:`Chance`) in every run, at every LR of its sweep and on every seed at its LR, is
   listed in the figure :data:`AT_CHANCE`; the runner names it in the verdict line ("<arm> did not
   learn the task at any LR tried") and the rule says beforehand what it means
   (:func:`~attnlab.repro.harness.rules.chance_rule`).
4. **Blind sweeps.** An arm whose sweep stayed at chance at every LR (but which learned on some seed) had its
   LR chosen by validation loss alone, before the judged metric moved; the record lists it (``blind_sweep``)
   and the report says so, since a short sweep can then hand a late learner an LR that fails at the full
   budget (the cure is a longer sweep).

A comparison is run by :func:`fair_arms` over a ``trial(arm, lr, seed, steps, split)`` function;
:func:`training_trial` is that function for the usual case (build, ``attnlab.train.train``,
evaluate). Its result, :class:`FairArms`, gives per-seed values, intervals and paired differences,
and the JSON record (:meth:`FairArms.record`) the runner writes into ``result.json``, plots and
puts in the report. Inside :func:`~attnlab.repro.harness.fanout.trials_on` (``attnlab repro <slug> --workers N``
or ``--executor ray``), :func:`fair_arms` runs every arm's sweep trials as one batch of parallel jobs, then every
arm's seed runs as another; the result is the serial run's.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.fanout import run_trials
from attnlab.repro.harness.intervals import Interval, paired, t_interval
from attnlab.utils.checks import fail

__all__ = ["Protocol", "Chance", "Trial", "FairArms", "fair_arms", "training_trial", "scaled_config", "train_fair",
           "at_chance_figure", "fixed_record", "AT_CHANCE", "SWEEP_SEED", "NOT_LEARNED", "BLIND_SWEEP_NOTE", "blind_arms"]

#: The figure listing the arms at chance at every LR tried (a sorted list of names). A reproduction with
#: several comparisons writes one per comparison, named ``f"{AT_CHANCE}: {comparison}"``.
AT_CHANCE = "arms at chance at every LR tried"
#: Offset of the sweep's seed from the run's seed: the sweep never trains on a seed the verdict reads.
SWEEP_SEED = 1000
#: How a verdict line names an arm of :data:`AT_CHANCE`.
NOT_LEARNED = "did not learn the task at any LR tried"
#: how reports name the arms of :attr:`FairArms.blind_sweep` (``{hyper}``: the swept hyperparameter)
BLIND_SWEEP_NOTE = ("At chance at every {hyper} of the sweep but not on every seed, so the {hyper} was chosen by "
                    "validation loss alone:")


@dataclass(frozen=True)
class Protocol:
    """The protocol's settings in a budget: the LR grid (log-spaced, increasing), the seeds the verdict reads
    (offsets added to the run's seed) and the fraction of the step budget the sweep trains for."""

    lrs: tuple[float, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    sweep_fraction: float = 0.25

    def __post_init__(self):
        lrs, seeds = tuple(self.lrs), tuple(self.seeds)
        if not lrs or any(not (isinstance(x, (int, float)) and math.isfinite(x) and x > 0) for x in lrs) \
                or list(lrs) != sorted(set(lrs)):
            fail("lrs", "a non-empty increasing tuple of positive learning rates", repr(self.lrs))
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            fail("seeds", "a non-empty tuple of distinct ints >= 0", repr(self.seeds))
        if not (isinstance(self.sweep_fraction, (int, float)) and 0 < self.sweep_fraction <= 1):
            fail("sweep_fraction", "a fraction in (0, 1]", repr(self.sweep_fraction))
        object.__setattr__(self, "lrs", tuple(float(x) for x in lrs))
        object.__setattr__(self, "seeds", seeds)

    def sweep_steps(self, steps: int) -> int:
        """Steps of a sweep run: ``sweep_fraction`` of ``steps``, at least 1."""
        return max(1, round(steps * self.sweep_fraction))


@dataclass(frozen=True)
class Chance:
    """The judged metric at chance (``level``) and the margin within which a run counts as having learned nothing.

    A run is at chance if its metric is below ``level + margin`` (``higher_is_better``) or above
    ``level - margin`` (lower is better); NaN (a diverged run) is at chance.
    """

    level: float
    margin: float
    higher_is_better: bool = True

    def at(self, value: float) -> bool:
        """Whether a run with this metric learned nothing."""
        if math.isnan(value):
            return True
        return value < self.level + self.margin if self.higher_is_better else value > self.level - self.margin


@dataclass
class Trial:
    """One training run of one arm.

    ``val_loss``: the final validation loss (NaN if the run diverged), which picks the LR in a sweep;
    ``metric``: the judged metric on ``split`` (val in the sweep, test in the seed runs);
    ``measured``: further figures of the run, by name; ``curve``: (step, val metric) along training;
    ``model``: the trained model when kept.
    """

    lr: float
    seed: int
    steps: int
    split: str
    val_loss: float
    metric: float
    diverged: bool = False
    measured: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)
    model: Any = None
    cpu_seconds: float = 0.0


@dataclass
class FairArms:
    """A comparison run under the protocol: the sweep per arm (one :class:`Trial` per LR), the LR chosen per arm
    and the runs at it (one :class:`Trial` per seed)."""

    name: str
    metric: str
    protocol: Protocol
    steps: int
    chance: Chance | None
    sweep: dict[str, list[Trial]] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[Trial]] = field(default_factory=dict)
    hyper: str = "lr"

    @property
    def arms(self) -> list[str]:
        """Arm names, in the order they were given."""
        return list(self.runs)

    @property
    def at_chance(self) -> list[str]:
        """Arms at chance in every run (every LR of the sweep, every seed at the chosen LR), sorted."""
        if self.chance is None:
            return []
        return sorted(a for a in self.runs
                      if all(self.chance.at(t.metric) for t in (*self.sweep.get(a, []), *self.runs[a])))

    @property
    def blind_sweep(self) -> list[str]:
        """Arms whose sweep was at chance at every LR while some seed run learned, sorted: their LR was chosen by
        validation loss alone, before the judged metric had moved (arms at chance everywhere are :attr:`at_chance`)."""
        return _blind(self.chance, {a: [t.metric for t in ts] for a, ts in self.sweep.items()}, self.at_chance)

    def values(self, arm: str, key: str | None = None) -> list[float]:
        """One value per seed: the judged metric (``key`` None) or ``measured[key]`` of each seed's run."""
        return [float(t.metric if key is None else t.measured[key]) for t in self.runs[arm]]

    def interval(self, arm: str, key: str | None = None, *, scale: float = 1.0) -> Interval:
        """Mean over seeds of :meth:`values` times ``scale``, with its 95 % t interval."""
        return t_interval([scale * v for v in self.values(arm, key)])

    def difference(self, a: str, b: str, key: str | None = None, *, scale: float = 1.0) -> Interval:
        """``scale * (a - b)`` seed by seed, with its 95 % t interval."""
        return paired(self.values(a, key), self.values(b, key), scale=scale)

    def best(self, arms: Sequence[str], key: str | None = None, *, higher_is_better: bool = True) -> str:
        """The arm of ``arms`` with the best mean over seeds."""
        mean = lambda a: sum(self.values(a, key)) / len(self.runs[a])  # noqa: E731
        return (max if higher_is_better else min)(arms, key=mean)

    def models(self, index: int) -> dict[str, Any]:
        """The kept models of seed number ``index`` (position in the protocol's seeds), by arm."""
        return {a: runs[index].model for a, runs in self.runs.items()}

    def record(self) -> dict:
        """The comparison as JSON for ``result.json``: grid, fraction, sweep losses and metrics, chosen LR, per-seed
        test metric, arms at chance."""
        lrs = list(self.protocol.lrs)
        return {
            "name": self.name, "hyper": self.hyper, "metric": self.metric, "grid": lrs,
            "sweep_fraction": self.protocol.sweep_fraction, "steps": self.steps,
            "sweep_steps": self.protocol.sweep_steps(self.steps), "seeds": list(self.protocol.seeds),
            "split": {"sweep": "val", "verdict": "test"},
            "chance": None if self.chance is None else {"level": self.chance.level, "margin": self.chance.margin,
                                                        "higher_is_better": self.chance.higher_is_better},
            "sweep": {a: {"val_loss": [t.val_loss for t in ts], "val_metric": [t.metric for t in ts],
                          "diverged": [t.diverged for t in ts]} for a, ts in self.sweep.items()},
            "chosen": dict(self.lr),
            "at_edge": sorted(a for a, lr in self.lr.items() if len(lrs) > 2 and lr in (lrs[0], lrs[-1])),
            "test": {a: self.values(a) for a in self.runs},
            "at_chance": self.at_chance,
            "blind_sweep": self.blind_sweep,
        }


def blind_arms(rec: dict) -> list[str]:
    """The ``blind_sweep`` arms of a protocol record (:meth:`FairArms.record`); derived from its sweep's val metrics,
    chance and ``at_chance`` for records written before the field existed (NaN, a diverged run, counts as at
    chance)."""
    if "blind_sweep" in rec:
        return list(rec["blind_sweep"])
    chance = Chance(**rec["chance"]) if rec.get("chance") else None
    return _blind(chance, {a: s.get("val_metric") or [] for a, s in rec.get("sweep", {}).items()},
                  rec.get("at_chance", []))


def _blind(chance: Chance | None, sweep_metrics: dict[str, list], at_chance: Sequence[str]) -> list[str]:
    """Arms (sorted) with a non-empty sweep at chance at every value, leaving out ``at_chance`` (None counts as a
    diverged run, at chance); none without a chance level."""
    if chance is None:
        return []
    skip = set(at_chance)
    return sorted(a for a, ms in sweep_metrics.items()
                  if ms and a not in skip and all(chance.at(math.nan if m is None else m) for m in ms))


def _choose(trials: list[Trial]) -> float:
    """The LR with the lowest final validation loss; the smallest LR when every run diverged."""
    ok = [t for t in trials if not (t.diverged or math.isnan(t.val_loss))]
    return min(ok, key=lambda t: t.val_loss).lr if ok else trials[0].lr


def fair_arms(arms: Sequence[Arm], trial: Callable[[Arm, float, int, int, str], Trial], protocol: Protocol, *,
              steps: int, name: str, metric: str, chance: Chance | None, seed: int = 0, progress: bool = False,
              chosen: dict[str, float] | None = None) -> FairArms:
    """Run one comparison under the protocol (module docstring).

    ``trial(arm, lr, seed, steps, split)`` trains ``arm`` at ``lr`` for ``steps`` on seed ``seed`` and scores it on
    ``split``. The sweep (every LR of ``protocol.lrs``, ``protocol.sweep_steps(steps)`` steps, seed
    ``seed + SWEEP_SEED``, split "val") is skipped for an arm whose LR is given in ``chosen``, and entirely when
    the grid has one LR. Then every arm trains ``steps`` steps at its LR on each seed ``seed + s`` of
    ``protocol.seeds`` (split "test"). Inside a parallel :func:`~attnlab.repro.harness.fanout.trials_on` the
    trials run in worker processes (all sweep trials, then all seed runs): ``trial`` must then be a function of its
    arguments that returns everything read afterwards (see :mod:`~attnlab.repro.harness.fanout`).
    """
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        fail("arms", "arms with distinct names", repr(names))
    chosen = dict(chosen or {})
    out = FairArms(name=name, metric=metric, protocol=protocol, steps=steps, chance=chance)
    todo = sum(len(protocol.lrs) for a in arms if a.name not in chosen and len(protocol.lrs) > 1)
    bar = _progress(progress, todo + len(arms) * len(protocol.seeds), name)
    try:
        _run_batches(arms, trial, protocol, steps, seed, chosen, out, bar)
    finally:
        if bar is not None:
            bar.close()
    return out


def _run_batches(arms, trial, protocol: Protocol, steps: int, seed: int, chosen: dict, out: FairArms,
                 bar) -> None:
    """:func:`fair_arms`'s trials in two batches through :func:`~attnlab.repro.harness.fanout.run_trials` (a plain
    loop here, parallel jobs inside a parallel ``trials_on``): every arm's sweep, then every arm's seed runs;
    ``out`` filled in arm order. Each trial seeds itself, so the order of the runs does not change a figure."""
    def label(call) -> str:
        arm, lr, s, n, split = call
        return f"{out.name}: arm {arm.name!r} at lr {lr:g}, seed {s}, {n} steps, split {split!r}"

    tick = (lambda t: bar.update(1)) if bar is not None else None
    swept = [a for a in arms if a.name not in chosen and len(protocol.lrs) > 1]
    calls = [(a, lr, seed + SWEEP_SEED, protocol.sweep_steps(steps), "val") for a in swept for lr in protocol.lrs]
    done = run_trials(trial, calls, on_done=tick, label=label)
    n = len(protocol.lrs)
    for k, a in enumerate(swept):
        out.sweep[a.name] = done[k * n:(k + 1) * n]
        chosen[a.name] = _choose(out.sweep[a.name])
    for a in arms:
        chosen.setdefault(a.name, protocol.lrs[0])
    calls = [(a, chosen[a.name], seed + s, steps, "test") for a in arms for s in protocol.seeds]
    done = run_trials(trial, calls, on_done=tick, label=label)
    n = len(protocol.seeds)
    for k, a in enumerate(arms):
        out.lr[a.name] = chosen[a.name]
        out.runs[a.name] = done[k * n:(k + 1) * n]


def _progress(on: bool, total: int, name: str):
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"runs ({name})", leave=False)




def training_trial(make_task: Callable[[int], Any], config: Callable[[str, float, int, int], Any], *,
                   eval_batches: int, eval_batch_size: int, metric: str | None = None, keep_models: bool = False,
                   measure: Callable[[Any, Any, str], dict] | None = None) -> Callable[..., Trial]:
    """The usual ``trial`` of :func:`fair_arms`: build the arm for the task of the seed after
    ``torch.manual_seed(seed)``, train it with ``attnlab.train.train``, evaluate it on the split.

    ``make_task(seed)`` gives the task; ``config(arm_name, lr, steps, seed)`` the ``TrainConfig``; the judged
    metric is ``metric`` (default the task's) over ``eval_batches`` batches of ``eval_batch_size``;
    ``measure(model, task, split)`` adds figures of the trained model to :attr:`Trial.measured`;
    ``keep_models`` keeps the models of the seed runs (not of the sweep).
    """
    from attnlab.train import evaluate, train

    def trial(arm: Arm, lr: float, seed: int, steps: int, split: str) -> Trial:
        task = make_task(seed)
        torch.manual_seed(seed)
        model = arm.build(task.spec)
        c0 = time.process_time()
        res = train(model, task, config(arm.name, lr, steps, seed), progress=False)
        ev = evaluate(model, task, batches=eval_batches, batch_size=eval_batch_size, split=split)
        key = metric or task.metric
        val_loss = ev["loss"] if split == "val" else float(res.final_eval.get("loss", math.nan))
        return Trial(lr=lr, seed=seed, steps=steps, split=split, diverged=bool(res.diverged),
                     val_loss=math.nan if res.diverged else float(val_loss), metric=float(ev.get(key, math.nan)),
                     measured=measure(model, task, split) if measure else {},
                     curve=[(int(e["step"]), float(e[key])) for e in (res.evals or []) if key in e],
                     model=model if keep_models and split != "val" else None,
                     cpu_seconds=round(time.process_time() - c0, 2))

    return trial


def scaled_config(template) -> Callable[[str, float, int, int], Any]:
    """``config(arm, lr, steps, seed)`` for :func:`training_trial`: the ``TrainConfig`` ``template`` at that LR, step
    count and seed, its warm-up and logging interval scaled by ``steps / template.steps`` (the schedule compressed
    into a sweep run, which evaluates only at its end)."""

    def config(arm: str, lr: float, steps: int, seed: int):
        k = steps / template.steps
        return replace(template, lr=lr, steps=steps, seed=seed, warmup_steps=round(template.warmup_steps * k),
                       eval_every=template.eval_every if k >= 1 else 0, log_every=max(1, round(template.log_every * k)))

    return config


def train_fair(arms: Sequence[Arm], make_task: Callable[[int], Any], template, protocol: Protocol, *, chance: Chance,
               name: str, seed: int = 0, progress: bool = False, eval_batches: int | None = None,
               eval_batch_size: int | None = None, metric: str | None = None, keep_models: bool = False,
               measure: Callable[[Any, Any, str], dict] | None = None) -> FairArms:
    """:func:`fair_arms` over :func:`training_trial` with the ``TrainConfig`` ``template`` (its ``steps`` the full
    budget, :func:`scaled_config` for the sweep): the usual comparison of sequence models. Evaluation defaults to the
    template's ``eval_batches`` batches of its ``batch_size``; the judged metric to the task's."""
    probe = make_task(seed)
    trial = training_trial(make_task, scaled_config(template), eval_batches=eval_batches or template.eval_batches,
                           eval_batch_size=eval_batch_size or template.batch_size, metric=metric,
                           keep_models=keep_models, measure=measure)
    return fair_arms(arms, trial, protocol, steps=template.steps, name=name, metric=metric or probe.metric,
                     chance=chance, seed=seed, progress=progress)


def at_chance_figure(*comparisons: FairArms) -> dict[str, list[str]]:
    """The :data:`AT_CHANCE` figure(s): one comparison -> ``{AT_CHANCE: names}``; several -> one entry per
    comparison, ``f"{AT_CHANCE}: {name}"``."""
    if len(comparisons) == 1:
        return {AT_CHANCE: comparisons[0].at_chance}
    return {f"{AT_CHANCE}: {c.name}": c.at_chance for c in comparisons}


def fixed_record(name: str, hyper: str, value: float, test: dict[str, list[float]], *, metric: str, why: str) -> dict:
    """A protocol record (``FairArms.record()``'s layout) for a study with no sweep: every arm at the one ``value`` of
    ``hyper`` for the reason ``why`` (stated in the report), ``test`` the judged figure per arm and seed."""
    seeds = len(next(iter(test.values()))) if test else 0
    return {"name": name, "hyper": hyper, "metric": metric, "grid": [value], "sweep_fraction": 0.0, "steps": None,
            "sweep_steps": 0, "seeds": list(range(seeds)), "split": {"sweep": f"none: {why}", "verdict": "test"},
            "chance": None, "sweep": {}, "chosen": {a: value for a in test}, "at_edge": [], "test": dict(test),
            "at_chance": []}
