"""P26 DiNAT at CPU scale: dilated NA interleaved with NA beats NA alone at the same cost.

Setting. ``attnlab.models.ViT`` (patch 4 on 64 px images: a 16 x 16 token grid, depth 3,
width 48, 4 heads) on the generated ``far_match`` task: are two red 6 x 6 glyphs, at
least 40 px apart along both axes, the same pattern? (2 classes.) The head is linear on
mean-pooled tokens, so equality needs the two glyphs' information to meet in some token;
their nearest patches are >= 8 tokens apart along both axes.

Arms, identical except for the dilation of the neighbourhood attention layers (so equal
parameters and equal attention cost, 3 x 3 = 9 keys per query in every layer):

* ``NA``: kernel 3, dilation 1 in all three layers: receptive field 3 tokens each way,
  so no token ever sees both glyphs (expected: chance, 50%);
* ``DiNA+NA``: kernel 3, dilations (1, 4, 1), NA and DiNA interleaved as in DiNAT:
  receptive field 6 tokens each way.

Measured: validation accuracy (mean over seeds), training images/s (forward + backward,
batch 32, arms interleaved, one thread) and attention multiply-accumulates per image.

Verdict rule: with ``gain`` = accuracy(DiNA+NA) - accuracy(NA) in points, ``noise`` the
larger seed std (points) and ``cost`` = step time of DiNA+NA over NA:
holds if gain >= 5 points, gain > noise and cost <= 1.15 (same cost within timing noise);
does not hold if gain <= 0 or cost > 1.5; inconclusive otherwise.
"""
from __future__ import annotations

import time

import torch

from attnlab.repro._vision_common import Arm, Budget, format_table, plot_bars, run_arms
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P26"
CLAIM = ("Dilated neighborhood attention (DiNA), interleaved with neighborhood attention (NA), captures more "
         "global context and expands the receptive field exponentially at no additional cost, so NA+DiNA "
         "(DiNAT) beats NA alone (NAT) at the same cost.")

KERNEL = 3
DILATIONS = {"NA": (1, 1, 1), "DiNA+NA": (1, 4, 1)}
TASK = {"img_size": 64, "glyph": 6, "min_offset": 40, "num_distractors": 4}
PATCH, DIM, HEADS = 4, 48, 4
QUICK = Budget(steps=8, batch_size=16, eval_batches=2, eval_batch_size=32, seeds=(0,), tasks=("far_match",),
               task_kwargs={"far_match": TASK}, bench_repeats=1)
FULL = Budget(steps=300, batch_size=32, lr=2e-3, warmup_steps=30, eval_batches=8, eval_batch_size=64, seeds=(0, 1),
              tasks=("far_match",), task_kwargs={"far_match": TASK}, bench_repeats=5)

#: thresholds of the verdict rule (points / ratios)
MIN_GAIN, SAME_COST, TOO_COSTLY = 5.0, 1.15, 1.5


def judge(gain: float, noise: float, cost: float) -> str:
    """The module's verdict rule (see the module docstring)."""
    if gain <= 0.0 or cost > TOO_COSTLY:
        return DOES_NOT_HOLD
    if gain >= MIN_GAIN and gain > noise and cost <= SAME_COST:
        return HOLDS
    return INCONCLUSIVE


def _arm(name: str, dilations: tuple[int, ...], depth: int) -> Arm:
    def build(img, chans, ncls):
        from attnlab.models import ViT

        layers = [("neighborhood", {"kernel_size": KERNEL, "dilation": d}) for d in dilations[:depth]]
        return ViT(img_size=img, patch_size=PATCH, in_chans=chans, num_classes=ncls, dim=DIM, depth=depth,
                   num_heads=HEADS, mixer=layers)

    return Arm(name, build)


def run(ctx: ReproContext) -> ReproOutcome:
    """Train the NA and DiNA+NA ViTs on far-apart glyph pairs; judge the accuracy gain at equal cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: a second intra-op thread is slower on the shared 2-core box
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        budget = QUICK if ctx.quick else FULL
        depth = 3
        table = run_arms([_arm(name, dil, depth) for name, dil in DILATIONS.items()], budget, progress=ctx.progress)
    finally:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = table["summary"]["far_match"]
    na, dina = s["NA"], s["DiNA+NA"]
    gain = 100 * (dina["accuracy"] - na["accuracy"])
    noise = 100 * max(na["accuracy_std"], dina["accuracy_std"])
    cost = na["images_per_s"] / dina["images_per_s"]
    n = (TASK["img_size"] // PATCH) ** 2
    macs = 2 * n * KERNEL**2 * DIM  # QK^T and AV per image and layer, the same for both arms
    measured = {
        "NA accuracy": na["accuracy"], "DiNA+NA accuracy": dina["accuracy"],
        "NA accuracy std": na["accuracy_std"], "DiNA+NA accuracy std": dina["accuracy_std"],
        "accuracy gain DiNA+NA - NA (points)": gain, "seed noise (points)": noise,
        "NA images_per_s": na["images_per_s"], "DiNA+NA images_per_s": dina["images_per_s"],
        "step time DiNA+NA / NA": cost, "parameters (each arm)": na["params"],
        "attention MACs per image and layer (each arm)": macs,
        "per-seed": table["rows"], "wall seconds": round(wall, 1), "cpu seconds": round(cpu, 1),
    }
    verdict = judge(gain, noise, cost)
    summary = (
        f"ViTs with 3x3 neighbourhood attention on a 16x16 token grid, glyphs >= 40 px apart: NA only "
        f"{100 * na['accuracy']:.1f}% vs NA and DiNA (dilations {DILATIONS['DiNA+NA']}) {100 * dina['accuracy']:.1f}% "
        f"(gain {gain:+.1f} points, seed noise {noise:.1f}) at {cost:.2f}x the step time and identical parameters "
        f"({na['params']}) and attention MACs. Rule: holds if gain >= {MIN_GAIN:g} points, above noise, and step time "
        f"<= {SAME_COST}x; does not hold if gain <= 0 or step time > {TOO_COSTLY}x; else inconclusive. "
        f"Chance is 50%: a model whose tokens never see both glyphs cannot do better. "
        f"Wall {wall:.0f} s, CPU {cpu:.0f} s.\n\n{format_table(table)}"
    )
    plots = [p for p in [plot_bars(table, ctx.path("dinat.png"), "NA vs NA+DiNA (same cost)")] if p]
    return ReproOutcome(measured, verdict, summary, plots)
