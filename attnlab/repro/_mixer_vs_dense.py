"""Shared routine of the biformer (P10) and s2aformer (P09) reproductions: an efficient mixer vs dense attention.

Both papers claim accuracy on par with (or better than) dense-attention models at a
lower cost. Here: ``attnlab.models.ViT`` with the efficient mixer in every layer
against the same ViT with dense softmax attention, its width matched to equal
parameters, trained on the generated ``shapes`` task (32 px, labels need
long-range context) and on ``digits`` (upsampled to 32 px), patch size 2 (a 16x16
token grid, so attention is a sizeable part of the cost). Cost is measured two ways:
training images/s (forward + backward, batch 32, models interleaved, one thread) and
the multiply-accumulates of the attention core per image and layer, counted
analytically. The verdict rule (:func:`judge`) is stated there.
"""
from __future__ import annotations

import statistics
import time

from attnlab.utils.threads import torch_threads
from attnlab.repro._vision_common import Arm, Budget, format_table, plot_bars, run_arms, vit_matched
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext

__all__ = ["judge", "compare", "DENSE"]

DENSE = "ViT (dense)"
CHANCE_CLASSES = {"shapes": 8, "digits": 10}


def judge(delta_points: float, noise_points: float, speed_ratio: float, margin: float, dense_learned: bool) -> str:
    """Verdict: does the efficient mixer keep accuracy within ``margin`` points of dense at lower cost?

    * inconclusive if the dense ViT learned none of the tasks (``dense_learned`` False); the
      accuracy gap is taken over the tasks it did learn (accuracy at least 10 points above
      chance), since on a task the baseline did not learn "equal accuracy" means nothing;
    * does not hold if it is not faster (``speed_ratio`` = its images/s over dense <= 1), or if
      its accuracy is more than ``margin + noise_points`` below dense;
    * holds if it is faster and at most ``margin`` points below dense;
    * inconclusive otherwise (the gap lies within seed noise of the margin).
    """
    if not dense_learned:
        return INCONCLUSIVE
    if speed_ratio <= 1.0:
        return DOES_NOT_HOLD
    if delta_points >= -margin:
        return HOLDS
    if delta_points < -margin - noise_points:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def compare(ctx: ReproContext, *, label: str, mixer: str, mixer_kwargs: dict, attn_macs, quick: Budget, full: Budget,
            patch_size: int = 2, dim: int = 48, depth: int = 4, num_heads: int = 4, margin: float = 1.0,
            title: str = "") -> tuple[dict, str, str, list[str]]:
    """Train the efficient-mixer ViT and a parameter-matched dense ViT; returns (measured, verdict, summary, plots).

    ``attn_macs(n_tokens, dim, grid) -> (efficient, dense)`` counts attention-core MACs per image and layer.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    with torch_threads(1):  # small steps: a second intra-op thread is slower on the shared 2-core box
        budget = quick if ctx.quick else full
        d, dp = (32, 2) if ctx.quick else (dim, depth)
        vit_kw = dict(patch_size=patch_size, depth=dp, num_heads=num_heads)

        def eff(img, ch, ncls):
            from attnlab.models import ViT

            return ViT(img_size=img, in_chans=ch, num_classes=ncls, dim=d, mixer=mixer, mixer_kwargs=mixer_kwargs,
                       **vit_kw)

        def dense(img, ch, ncls):
            target = sum(p.numel() for p in eff(img, ch, ncls).parameters())
            return vit_matched(target, img, ch, ncls, **vit_kw)

        table = run_arms([Arm(label, eff), Arm(DENSE, dense)], budget, progress=ctx.progress)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = table["summary"]
    deltas, noises, speeds = [], [], []
    measured: dict = {}
    judged = []
    for task, arms in s.items():
        a, b = arms[label], arms[DENSE]
        gap = 100 * (a["accuracy"] - b["accuracy"])
        if b["accuracy"] >= 1.0 / CHANCE_CLASSES[task] + 0.10:  # the dense baseline learned this task
            judged.append(task)
            deltas.append(gap)
            noises.append(100 * max(a["accuracy_std"], b["accuracy_std"]))
        speeds.append(a["images_per_s"] / b["images_per_s"])
        for arm, x in arms.items():
            for k, v in x.items():
                measured[f"{task}/{arm} {k}"] = v
        measured[f"{task}: accuracy {label} - dense (points)"] = gap
        measured[f"{task}: train speed {label} / dense"] = speeds[-1]
    img = 32
    grid = (img // patch_size, img // patch_size)
    n = grid[0] * grid[1]
    e_macs, d_macs = attn_macs(n, d, grid)
    measured["attention MACs per image and layer (efficient)"] = e_macs
    measured["attention MACs per image and layer (dense)"] = d_macs
    measured["attention MACs ratio efficient / dense"] = e_macs / d_macs
    delta = statistics.fmean(deltas) if deltas else float("nan")
    noise = statistics.fmean(noises) if noises else float("nan")
    speed = min(speeds)
    measured["tasks judged (dense ViT >= chance + 10 points)"] = judged
    measured["mean accuracy gap (points)"] = delta
    measured["seed noise (points)"] = noise
    measured["slowest train speed ratio"] = speed
    measured["wall seconds"] = round(wall, 1)
    measured["cpu seconds"] = round(cpu, 1)
    verdict = judge(delta, noise, speed, margin, bool(judged))
    summary = (
        f"{label} vs a dense ViT of equal parameters ({grid[0]}x{grid[1]} tokens, patch {patch_size}): accuracy "
        f"gap {delta:+.1f} points (mean over the tasks the dense ViT learned, {judged}, and seeds; seed noise {noise:.1f}), training throughput "
        f"{speed:.2f}x dense (slowest task), attention MACs {e_macs / d_macs:.2f}x dense. Rule: holds if faster and "
        f"at most {margin:g} point below dense; does not hold if not faster or more than {margin:g} + noise below; "
        f"inconclusive if the dense ViT learned no task or the gap is within noise. Wall {wall:.0f} s, CPU {cpu:.0f} s.\n\n{format_table(table)}"
    )
    plots = [p for p in [plot_bars(table, ctx.path(f"{mixer}.png"), title or f"{label} vs dense ViT")] if p]
    return measured, verdict, summary, plots


def dense_macs(n: int, c: int) -> int:
    """QK^T and AV multiply-accumulates of dense attention over n tokens of width c."""
    return 2 * n * n * c


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for ints."""
    return -(-a // b)

