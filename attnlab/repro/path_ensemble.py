"""P31 path-ensemble ViT at CPU scale: do some paths hurt, and do pruning / EnsembleScale beat the plain ViT?

Model: ``attnlab.models.path_ensemble.PathEnsembleViT`` at width 64, depth 6
(13 paths), patch 4. Arms, trained on the generated ``shapes`` task under the protocol
(``attnlab.repro.harness.protocol``: each arm at its own LR from a sweep over 3e-4 / 1e-3 /
3e-3 at 75 of the 300 steps on the val split, then three seeds, test accuracy; ``digits``,
reported as context before issue 18, is no longer trained):

1. ``ViT``: nothing pruned, no EnsembleScale, i.e. exactly ``attnlab.models.ViT``.
2. ``escale``: the same network with EnsembleScale (learned per-channel weight
   on each path's vote; 13 x 64 extra parameters, 0.3 %).
3. Path ablation of the trained ViTs (the paper's analysis): validation accuracy
   with each path's direct contribution removed. The paths whose removal helps
   on average over seeds form the prune set P; the post-hoc gain of removing P
   is then measured on the separate *test* split (so the selection on val does
   not inflate it), seed by seed.
4. ``pruned``: the ViT retrained from scratch with P pruned (its own sweep, same seeds).

Rule (on ``shapes``, seed by seed, 95 % intervals; written before the run): with posthoc =
test-accuracy gain of removing P from the trained ViTs and gain = acc(best of escale and pruned,
by mean) - acc(ViT) (test, points): inconclusive if the ViT learned nothing at any LR tried (its
paths say nothing then); does not hold if gain's interval lies below -0.5 (pruning or
EnsembleScale makes the model worse); otherwise two findings, posthoc and gain against +0.5
point: both intervals above -> holds, both below -> does not hold, anything else (one of the
two findings reproduced, or an interval containing +0.5) -> inconclusive. Self-distillation
(the paper's third tool) is not part of this reproduction.
"""
from __future__ import annotations

import statistics

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, INCONCLUSIVE, clears, unanimous
from attnlab.repro.harness.vision import BAND_POINTS, full_budget, image_model, make_task, quick_budget, \
    train_vision_arms, vision_outcome

PAPER = "P31"
CLAIM = ("A ViT is an ensemble of paths of different lengths; some paths pull the prediction down, and path pruning "
         "and EnsembleScale (re-weighting each path's direct contribution) improve on the plain ViT.")

QUICK, FULL = quick_budget(), full_budget(300)

POSTHOC = "shapes: post-hoc pruning gain, test (points)"
GAIN = "shapes: best(escale, pruned) - ViT (points)"
FIGURES = (GAIN, POSTHOC, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    if "ViT" in figures[AT_CHANCE]:
        return INCONCLUSIVE
    if clears(figures[GAIN], -BAND_POINTS) == DOES_NOT_HOLD:
        return DOES_NOT_HOLD
    return unanimous(clears(figures[POSTHOC], BAND_POINTS), clears(figures[GAIN], BAND_POINTS))


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
    whose removal helped) and, per seed, the test-accuracy gain of removing it."""
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
    return dict(delta=mean_delta, prune=prune, posthoc_gain=[p - b for p, b in zip(pruned_test, base_test)])


def run(ctx):
    """Train ViT and EnsembleScale; ablate the ViT's paths; retrain with the harmful ones pruned; record the gains."""
    budget, task = ctx.budget, ctx.budget.tasks[0]
    dim, depth = (32, 2) if ctx.quick else (64, 6)
    table = train_vision_arms([_arm("ViT", dim, depth), _arm("escale", dim, depth, ensemble_scale=True)], budget,
                              progress=ctx.progress, keep_models=True, seed_offset=ctx.seed)
    fair = table.fair[table.task]
    ab = ablate_paths([r.model for r in fair.runs["ViT"]], task, budget, [s + ctx.seed for s in budget.protocol.seeds])
    table.add(train_vision_arms([_arm("pruned", dim, depth, prune=ab["prune"])], budget, progress=ctx.progress,
                                measure_speed=False, seed_offset=ctx.seed))
    scales = [r.model.ensemble_scale.detach().mean(dim=1) for r in fair.runs["escale"]]
    best = table.best(("escale", "pruned"))
    entries = {
        GAIN: table.gap(best, "ViT"), POSTHOC: t_interval([100 * g for g in ab["posthoc_gain"]]),
        "better of escale and pruned": best, "paths whose removal helps (val)": ", ".join(ab["prune"]) or "none",
        **{f"val change without {n} (points)": 100 * d for n, d in ab["delta"].items()},
        "learned EnsembleScale (mean per path)": [round(float(sum(s[k] for s in scales) / len(scales)), 3)
                                                  for k in range(len(scales[0]))],
    }
    deltas = {n: 100 * d for n, d in ab["delta"].items()}
    plot_bar_panels(ctx, {f"{task}: removing one path's vote (red = helps)": deltas},
                    "path_ablation.png", ylabel="val acc change without the path (points)", hline=0.0, rotation=60,
                    panel_width=5.5, colors=lambda v: "tab:red" if v > 0 else "tab:blue")
    summary = (f"On {task}, removing the vote of {entries['paths whose removal helps (val)']} (selected on val) "
               f"changes the trained ViT's test accuracy by {entries[POSTHOC].text(3)} points; retrained with those "
               f"paths pruned: {table.accuracy('pruned').text(3)}%, with EnsembleScale: "
               f"{table.accuracy('escale').text(3)}%, plain ViT: {table.accuracy('ViT').text(3)}% ({best} - ViT "
               f"{entries[GAIN].text(3)} points; rule: both "
               f"intervals above +0.5 hold, both below or the gain's below -0.5 do not). Width {dim}, depth {depth}, "
               f"{budget.steps} steps x {budget.batch_size}, each arm at its own LR.")
    return vision_outcome(ctx, {"": table}, entries, summary,
                          plots={"": ("path_ensemble.png", "Path pruning / EnsembleScale vs ViT")})
