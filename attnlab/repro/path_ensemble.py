"""P31 path-ensemble ViT at CPU scale: do some paths hurt, and do pruning / EnsembleScale beat the plain ViT?

Model: ``attnlab.models.path_ensemble.PathEnsembleViT`` at width 64, depth 6
(13 paths), patch 4. Arms, trained on the generated ``shapes`` task and on
``digits``:

1. ``ViT``: nothing pruned, no EnsembleScale, i.e. exactly ``attnlab.models.ViT``.
2. ``escale``: the same network with EnsembleScale (learned per-channel weight
   on each path's vote; 13 x 64 extra parameters, 0.3 %).
3. Path ablation of the trained ViTs (the paper's analysis): validation accuracy
   with each path's direct contribution removed. The paths whose removal helps
   on average over seeds form the prune set P; the post-hoc gain of removing P
   is then measured on the separate *test* split (so the selection on val does
   not inflate it).
4. ``pruned``: the ViT retrained from scratch with P pruned (same seeds).

Rule (on ``shapes``): with posthoc = test-accuracy gain of removing P from the
trained ViTs and gain = max(acc(escale), acc(pruned)) - acc(ViT) (val, mean over
seeds), holds if posthoc >= +0.5 and gain >= +0.5 points; does not hold if
gain <= -0.5, or if both are below +0.5; inconclusive otherwise (only one of
the two findings reproduced), or if no arm learned shapes. Self-distillation
(the paper's third tool) is not part of this reproduction.
"""
from __future__ import annotations

import statistics

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, guard_learned
from attnlab.repro.harness.vision import (
    BAND_POINTS, SHAPES_LEARNED, full_budget, image_model, make_task, only_task, quick_budget, train_vision_arms,
    vision_outcome,
)

PAPER = "P31"
CLAIM = ("A ViT is an ensemble of paths of different lengths; some paths pull the prediction down, and path pruning "
         "and EnsembleScale (re-weighting each path's direct contribution) improve on the plain ViT.")

QUICK, FULL = quick_budget(), full_budget(300, task_seeds={"digits": (0,)})

POSTHOC_ON = "{}: post-hoc pruning gain, test (points)"  # per task
POSTHOC = POSTHOC_ON.format("shapes")
GAIN = "shapes: best(escale, pruned) - ViT (points)"
FIGURES = (POSTHOC, GAIN, SHAPES_LEARNED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    posthoc, gain = figures[POSTHOC], figures[GAIN]
    if posthoc >= BAND_POINTS and gain >= BAND_POINTS:
        verdict = HOLDS
    elif gain <= -BAND_POINTS or (posthoc < BAND_POINTS and gain < BAND_POINTS):
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    return guard_learned(figures[SHAPES_LEARNED], verdict)


def _arm(name: str, dim: int, depth: int, *, ensemble_scale: bool = False, prune=()) -> Arm:
    from attnlab.models.path_ensemble import PathEnsembleViT

    return Arm(name, image_model(PathEnsembleViT, patch_size=4, dim=dim, depth=depth, num_heads=4,
                                 ensemble_scale=ensemble_scale, prune=prune))


def _accuracy(model, task, budget, split: str) -> float:
    from attnlab.train import evaluate

    return float(evaluate(model, task, batches=budget.eval_batches, batch_size=budget.eval_batch_size,
                          split=split)[task.metric])


def ablate_paths(models: list, task_name: str, budget, seeds) -> dict:
    """Per path: mean over seeds of val accuracy without that path's vote minus with it; the prune set (the paths
    whose removal helped) and the test-accuracy gain of removing it."""
    names = models[0].path_names()
    tasks = [make_task(task_name, seed=s, **budget.task_kwargs.get(task_name, {})) for s in seeds]
    deltas = {n: [] for n in names}
    for model, task in zip(models, tasks):
        full = _accuracy(model, task, budget, "val")
        for n in names:
            model.set_pruned([n])
            deltas[n].append(_accuracy(model, task, budget, "val") - full)
        model.set_pruned([])
    mean_delta = {n: statistics.fmean(v) for n, v in deltas.items()}
    prune = [n for n, d in mean_delta.items() if d > 0]
    if len(prune) == len(names):  # keep at least one vote
        prune.remove(max(prune, key=lambda n: names.index(n)))
    base_test, pruned_test = [], []
    for model, task in zip(models, tasks):
        base_test.append(_accuracy(model, task, budget, "test"))
        model.set_pruned(prune)
        pruned_test.append(_accuracy(model, task, budget, "test"))
        model.set_pruned([])
    return dict(delta=mean_delta, prune=prune, posthoc_gain=statistics.fmean(pruned_test) - statistics.fmean(base_test))


def run(ctx):
    """Train ViT and EnsembleScale; ablate the ViT's paths; retrain with the harmful ones pruned; record the gains."""
    budget = ctx.budget
    dim, depth = (32, 2) if ctx.quick else (64, 6)
    table = train_vision_arms([_arm("ViT", dim, depth), _arm("escale", dim, depth, ensemble_scale=True)], budget,
                              progress=ctx.progress, keep_models=True, seed_offset=ctx.seed)
    entries, ablations = {}, {}
    for task in budget.tasks:
        ab = ablations[task] = ablate_paths(table.models[task]["ViT"], task, budget,
                                            [s + ctx.seed for s in budget.seeds_for(task)])
        table.add(train_vision_arms([_arm("pruned", dim, depth, prune=ab["prune"])], only_task(budget, task),
                                    progress=ctx.progress, measure_speed=False, seed_offset=ctx.seed))
        scales = [m.ensemble_scale.detach().mean(dim=1) for m in table.models[task]["escale"]]
        entries[f"{task}: paths whose removal helps (val)"] = ", ".join(ab["prune"]) or "none"
        entries[POSTHOC_ON.format(task)] = 100 * ab["posthoc_gain"]
        entries |= {f"{task}: val change without {n} (points)": 100 * d for n, d in ab["delta"].items()}
        entries[f"{task}: learned EnsembleScale (mean per path)"] = [
            round(float(sum(s[k] for s in scales) / len(scales)), 3) for k in range(len(scales[0]))]
    vit, esc, pru = (table.accuracy(a) for a in ("ViT", "escale", "pruned"))
    entries[GAIN] = 100 * (max(esc, pru) - vit)
    panels = {f"{task}: removing one path's vote (red = helps)": {n: 100 * d for n, d in ab["delta"].items()}
              for task, ab in ablations.items()}
    plot_bar_panels(ctx, panels, "path_ablation.png",
                    ylabel="val acc change without the path (points)", hline=0.0, rotation=60, panel_width=5.5,
                    colors=lambda v: "tab:red" if v > 0 else "tab:blue")
    summary = (f"On shapes, removing the vote of {entries['shapes: paths whose removal helps (val)']} (selected on "
               f"val) changes the trained ViT's test accuracy by {entries[POSTHOC]:+.1f} points; retrained with those "
               f"paths pruned: {100 * pru:.1f}%, with EnsembleScale: {100 * esc:.1f}%, plain ViT: {100 * vit:.1f}% "
               f"(best - ViT {entries[GAIN]:+.1f} points; rule: both >= +0.5 holds, best - ViT <= -0.5 or both < +0.5 "
               f"does not). "
               f"Width {dim}, depth {depth}, {budget.steps} steps x {budget.batch_size}.")
    return vision_outcome(ctx, {"": table}, entries, summary, judge=judge,
                          plots={"": ("path_ensemble.png", "Path pruning / EnsembleScale vs ViT")})
