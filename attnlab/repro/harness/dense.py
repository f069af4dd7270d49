"""An efficient token mixer against dense attention in the same ViT: the shape of study of biformer (P10),
s2aformer (P09) and axial (P19).

Those papers claim accuracy on par with (or better than) dense-attention models at a lower cost.
Here: ``attnlab.models.ViT`` with the efficient mixer in every layer against the same ViT with dense
softmax attention, its width matched to equal parameters, trained on the budget's tasks (``shapes``,
``digits`` upsampled to 32 px), patch size 2 (a 16x16 token grid, so attention is a sizeable part of
the cost). Cost is measured two ways: training images/s (forward + backward, batch 32, models
interleaved, one thread) and the multiply-accumulates of the attention core per image and layer,
counted analytically. The rule (:func:`judge`) reads the figures named below.
"""
from __future__ import annotations

import math
import statistics

from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.vision import Budget, matched_vit, train_vision_arms, vision_outcome

__all__ = ["judge", "rule", "efficient_vs_dense", "quick_budget", "full_budget", "dense_macs", "ceil_div", "DENSE", "GAP",
           "NOISE", "SPEED", "DENSE_LEARNED", "FIGURES", "MACS_RATIO"]

DENSE = "ViT (dense)"
#: A task counts for the accuracy gap only if the dense ViT beat chance on it by this much.
LEARNED_POINTS = 0.10

GAP = "mean accuracy gap (points)"
NOISE = "seed noise (points)"
SPEED = "slowest train speed ratio"
DENSE_LEARNED = "dense ViT learned a task"
FIGURES = (GAP, NOISE, SPEED, DENSE_LEARNED)
MACS_RATIO = "attention MACs ratio efficient / dense"


def quick_budget(tasks: tuple[str, ...] = ("shapes",)) -> Budget:
    """The quick runs' budget of these studies: 8 steps x 16 images, one seed, on ``tasks``."""
    return Budget(steps=8, batch_size=16, eval_batches=2, eval_batch_size=32, seeds=(0,), tasks=tasks, bench_repeats=1)


def full_budget(tasks: tuple[str, ...] = ("shapes", "digits"), **overrides) -> Budget:
    """The full runs' budget of these studies: 250 steps x 32 images at LR 2e-3, seeds 0 and 1, 8 eval batches,
    5 timing repeats, on ``tasks``; ``overrides`` set any other field."""
    base = dict(steps=250, batch_size=32, lr=2e-3, eval_batches=8, seeds=(0, 1), tasks=tasks, bench_repeats=5)
    return Budget(**base | overrides)


def rule(margin: float):
    """The module rule ``judge(figures)`` of a study with this ``margin`` (points): :func:`judge` at ``margin``."""

    def judge_at_margin(figures: dict) -> str:
        return judge(figures, margin)

    judge_at_margin.__doc__ = f"Efficient mixer vs dense attention at a {margin:g}-point margin (see dense.judge)."
    return judge_at_margin


def judge(figures: dict, margin: float) -> str:
    """Does the efficient mixer keep accuracy within ``margin`` points of dense attention at a lower cost?

    * inconclusive if the dense ViT learned none of the tasks (:data:`DENSE_LEARNED` false): the
      accuracy gap (:data:`GAP`) is a mean over the tasks it did learn (accuracy at least 10 points
      above chance), since on a task the baseline did not learn "equal accuracy" means nothing;
    * does not hold if it is not faster (:data:`SPEED`, its images/s over dense, <= 1), or if its
      accuracy is more than ``margin`` + :data:`NOISE` points below dense;
    * holds if it is faster and at most ``margin`` points below dense;
    * inconclusive otherwise (the gap lies within seed noise of the margin).
    """
    gap, noise = figures[GAP], figures[NOISE]
    if not figures[DENSE_LEARNED]:
        return INCONCLUSIVE
    if figures[SPEED] <= 1.0:
        return DOES_NOT_HOLD
    if gap >= -margin:
        return HOLDS
    if gap < -margin - noise:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def efficient_vs_dense(ctx, *, label: str, mixer: str, mixer_kwargs: dict, attn_macs, margin: float,
                       patch_size: int = 2, dim: int = 48, depth: int = 4, num_heads: int = 4, title: str = ""):
    """Train the efficient-mixer ViT and a parameter-matched dense ViT on ``ctx.budget``; returns the ReproOutcome.

    ``attn_macs(n_tokens, dim, grid) -> (efficient, dense)`` counts attention-core MACs per image and layer;
    ``margin`` is the module's margin (points), quoted in the summary.
    """
    from attnlab.models import ViT
    from attnlab.repro.harness.vision import image_kwargs

    budget = ctx.budget
    d, dp = (32, 2) if ctx.quick else (dim, depth)
    vit_kw = dict(patch_size=patch_size, depth=dp, num_heads=num_heads)

    def eff(spec):
        return ViT(**image_kwargs(spec), dim=d, mixer=mixer, mixer_kwargs=mixer_kwargs, **vit_kw)

    table = train_vision_arms([Arm(label, eff), matched_vit(DENSE, eff, **vit_kw)], budget, progress=ctx.progress,
                              seed_offset=ctx.seed)
    deltas, noises, speeds, judged, entries = [], [], [], [], {}
    for task, arms in table.summary.items():
        a, b = arms[label], arms[DENSE]
        gap = 100 * (a["accuracy"] - b["accuracy"])
        if b["accuracy"] >= 1.0 / table.num_classes[task] + LEARNED_POINTS:  # the dense baseline learned this task
            judged.append(task)
            deltas.append(gap)
            noises.append(100 * max(a["accuracy_std"], b["accuracy_std"]))
        speeds.append(a["images_per_s"] / b["images_per_s"])
        entries[f"{task}: accuracy {label} - dense (points)"] = gap
        entries[f"{task}: train speed {label} / dense"] = speeds[-1]
    grid = (32 // patch_size, 32 // patch_size)
    e_macs, d_macs = attn_macs(grid[0] * grid[1], d, grid)
    delta = statistics.fmean(deltas) if deltas else math.nan
    noise = statistics.fmean(noises) if noises else math.nan
    entries |= {
        "attention MACs per image and layer (efficient)": e_macs, "attention MACs per image and layer (dense)": d_macs,
        MACS_RATIO: e_macs / d_macs, "tasks judged (dense ViT >= chance + 10 points)": judged,
        GAP: delta, NOISE: noise, SPEED: min(speeds), DENSE_LEARNED: bool(judged),
    }
    summary = (
        f"{label} vs a dense ViT of equal parameters ({grid[0]}x{grid[1]} tokens, patch {patch_size}): accuracy gap "
        f"{delta:+.1f} points (mean over the tasks the dense ViT learned, {judged}, and seeds; seed noise "
        f"{noise:.1f}), "
        f"training throughput {min(speeds):.2f}x dense (slowest task), attention MACs {e_macs / d_macs:.2f}x dense. "
        f"Rule: holds if faster and at most {margin:g} point below dense; does not hold if not faster or more than "
        f"{margin:g} + noise below; inconclusive if the dense ViT learned no task or the gap is within noise."
    )
    return vision_outcome(ctx, {"": table}, entries, summary, judge=None, guard=False,  # guarded per task above
                          plots={"": (f"{mixer}.png", title or f"{label} vs dense ViT")})


def dense_macs(n: int, c: int) -> int:
    """QK^T and AV multiply-accumulates of dense attention over n tokens of width c."""
    return 2 * n * n * c


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for ints."""
    return -(-a // b)
