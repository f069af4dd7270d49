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
the two findings reproduced). Self-distillation (the paper's third tool) is
not part of this reproduction.
"""
from __future__ import annotations

import statistics

from attnlab.repro._vision_common import (
    Arm, Budget, format_table, full_budget, learned_guard, make_task, mean_acc, plot_bars, quick_budget, run_arms,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P31"
CLAIM = ("A ViT is an ensemble of paths of different lengths; some paths pull the prediction down, and path pruning "
         "and EnsembleScale (re-weighting each path's direct contribution) improve on the plain ViT.")
BAND = 0.005

QUICK = quick_budget()
FULL = full_budget(300, task_seeds={"digits": (0,)})


def _builder(dim: int, depth: int, *, ensemble_scale: bool, prune=()):
    from attnlab.models.path_ensemble import PathEnsembleViT

    return lambda img, ch, ncls: PathEnsembleViT(img_size=img, in_chans=ch, num_classes=ncls, patch_size=4, dim=dim,
                                                 depth=depth, num_heads=4, ensemble_scale=ensemble_scale,
                                                 prune=prune)


def _accuracy(model, task, budget: Budget, split: str) -> float:
    from attnlab.train import evaluate

    return float(evaluate(model, task, batches=budget.eval_batches, batch_size=budget.eval_batch_size,
                          split=split)[task.metric])


def ablate_paths(models: list, task_name: str, budget: Budget, seeds) -> dict:
    """Per path: mean over seeds of val accuracy without that path's vote minus with it; the prune set and its test gain."""
    names = models[0].path_names()
    deltas = {n: [] for n in names}
    base_test, pruned_test = [], []
    per_seed_tasks = [make_task(task_name, seed=s, **budget.task_kwargs.get(task_name, {})) for s in seeds]
    for model, task in zip(models, per_seed_tasks):
        full = _accuracy(model, task, budget, "val")
        for n in names:
            model.set_pruned([n])
            deltas[n].append(_accuracy(model, task, budget, "val") - full)
        model.set_pruned([])
    mean_delta = {n: statistics.fmean(v) for n, v in deltas.items()}
    prune = [n for n, d in mean_delta.items() if d > 0]
    if len(prune) == len(names):  # keep at least one vote
        prune.remove(max(prune, key=lambda n: names.index(n)))
    for model, task in zip(models, per_seed_tasks):
        base_test.append(_accuracy(model, task, budget, "test"))
        model.set_pruned(prune)
        pruned_test.append(_accuracy(model, task, budget, "test"))
        model.set_pruned([])
    return dict(delta=mean_delta, prune=prune,
                posthoc_gain=statistics.fmean(pruned_test) - statistics.fmean(base_test))


def _plot(ablations: dict, path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(ablations), figsize=(5.5 * len(ablations), 3.2), squeeze=False)
    for ax, (task, ab) in zip(axes[0], ablations.items()):
        names = list(ab["delta"])
        vals = [100 * ab["delta"][n] for n in names]
        ax.bar(range(len(names)), vals, color=["tab:red" if v > 0 else "tab:blue" for v in vals])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, fontsize=7)
        ax.set_ylabel("val acc change without the path (points)")
        ax.set_title(f"{task}: removing one path's vote (red = helps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def run(ctx: ReproContext) -> ReproOutcome:
    """Train ViT and EnsembleScale; ablate the ViT's paths; retrain with the harmful ones pruned; judge on shapes."""
    from dataclasses import replace

    budget = QUICK if ctx.quick else FULL
    dim, depth = (32, 2) if ctx.quick else (64, 6)
    table = run_arms([Arm("ViT", _builder(dim, depth, ensemble_scale=False)),
                      Arm("escale", _builder(dim, depth, ensemble_scale=True))],
                     budget, progress=ctx.progress, keep_models=True)
    ablations, measured = {}, {}
    for task in budget.tasks:
        ab = ablate_paths(table["models"][task]["ViT"], task, budget, budget.seeds_for(task))
        ablations[task] = ab
        pruned = run_arms([Arm("pruned", _builder(dim, depth, ensemble_scale=False, prune=ab["prune"]))],
                          replace(budget, tasks=(task,)), progress=ctx.progress, measure_speed=False)
        table["summary"][task]["pruned"] = pruned["summary"][task]["pruned"]
        scales = [m.ensemble_scale.detach().mean(dim=1) for m in table["models"][task]["escale"]]
        mean_scale = [float(sum(s[k] for s in scales) / len(scales)) for k in range(len(scales[0]))]
        names = table["models"][task]["ViT"][0].path_names()
        measured[f"{task}: paths whose removal helps (val)"] = ", ".join(ab["prune"]) or "none"
        measured[f"{task}: post-hoc pruning gain, test (points)"] = 100 * ab["posthoc_gain"]
        for n in names:
            measured[f"{task}: val change without {n} (points)"] = 100 * ab["delta"][n]
        measured[f"{task}: learned EnsembleScale (mean per path)"] = [round(v, 3) for v in mean_scale]
    for t, arms in table["summary"].items():
        for a, s in arms.items():
            for k, v in s.items():
                measured[f"{t}/{a} {k}"] = v
    vit, esc, pru = (mean_acc(table, "shapes", a) for a in ("ViT", "escale", "pruned"))
    gain = max(esc, pru) - vit
    posthoc = ablations["shapes"]["posthoc_gain"]
    measured["shapes: best(escale, pruned) - ViT (points)"] = 100 * gain
    if posthoc >= BAND and gain >= BAND:
        verdict = HOLDS
    elif gain <= -BAND or (posthoc < BAND and gain < BAND):
        verdict = DOES_NOT_HOLD
    else:
        verdict = INCONCLUSIVE
    plots = [p for p in [_plot(ablations, ctx.path("path_ablation.png")),
                         plot_bars(table, ctx.path("path_ensemble.png"), "Path pruning / EnsembleScale vs ViT")] if p]
    summary = (f"On shapes, removing the vote of {measured['shapes: paths whose removal helps (val)']} "
               f"(selected on val) changes the trained ViT's test accuracy by {100 * posthoc:+.1f} points; retrained "
               f"with those paths pruned: {100 * pru:.1f}%, with EnsembleScale: {100 * esc:.1f}%, plain ViT: "
               f"{100 * vit:.1f}% (best - ViT {100 * gain:+.1f} points; rule: both >= +0.5 holds, best - ViT <= -0.5 "
               f"or both < +0.5 does not). Width {dim}, depth {depth}, {budget.steps} steps x {budget.batch_size}."
               f"\n\n{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
