"""Reproduction ``kmax_deeplab`` (P25: Yu et al., ECCV 2022): k-means cross-attention against softmax cross-attention.

Setting (CPU scale): the generated ``segmentation`` task (32 px, three shape kinds and the background, one to three
shapes per image with occlusion and clutter; panoptic labels). Two arms, identical but for the cross-attention of
every decoder layer: ``kmax_tiny`` (k-means: argmax of the mask logits over the 8 queries, sum of the assigned
pixels' values) and ``mask2former_tiny`` (multi-head softmax attention of the queries over all pixels), each a
5-conv pixel encoder with a two-scale pixel decoder and 2 + 2 decoder layers, GroupNorm in place of the paper's
BatchNorm (small batches on one CPU). Trained alike (same seed, batches, steps, AdamW at the same LR) with the
matched set loss over every layer's prediction (:mod:`attnlab.tasks.panoptic`).

Measured: PQ and mIoU of the last layer's panoptic inference on validation images every ``eval_every`` steps
(the curves), and at the end on ``final_batches`` x 32 validation images pooled (the final figures); the step time.

Rule, written before the run (points = 100 x PQ or mIoU): with ``pq_gap`` and ``miou_gap`` the final k-means
minus softmax figures and ``curve_gap`` the mean over the evaluation steps of the PQ difference (the area between
the curves divided by their length: "converges faster"),

* inconclusive if neither arm learned the task (best final PQ below :data:`LEARNED_PQ`: predicting background
  everywhere scores about 22);
* holds if ``pq_gap >= -BAND``, ``miou_gap >= -BAND`` (at least the same quality) and ``curve_gap >= FASTER``;
* does not hold if ``pq_gap < -BAND`` or ``miou_gap < -BAND`` or ``curve_gap < -BAND`` (clearly worse or slower);
* inconclusive otherwise (the same quality, neither clearly faster nor slower).

Deviations from the paper: COCO/Cityscapes and a ResNet-50 or larger backbone there, generated 32 px shapes and a
tiny network here; 8 queries instead of 128; two decoder scales instead of three; no auxiliary semantic,
instance-discrimination or PQ-style weighted losses; one seed (the paper reports single runs too); one LR for both
arms.
"""
from __future__ import annotations

import statistics

import torch

from attnlab.repro.harness.arms import Arm, train_arms
from attnlab.repro.harness.plots import pyplot
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.repro.harness.timing import task_step_seconds

PAPER = "P25"
CLAIM = ("k-means cross-attention (a cluster-wise argmax over the object queries in place of a softmax over the "
         "pixels) reaches at least the segmentation quality (PQ, mIoU) of standard softmax cross-attention and "
         "converges faster.")

TASK = dict(img_size=32, num_kinds=3, min_objects=1, max_objects=3)
QUICK = dict(steps=6, batch_size=8, eval_every=3, eval_batches=1, final_batches=1, lr=3e-3, repeats=1)
FULL = dict(steps=500, batch_size=16, eval_every=50, eval_batches=4, final_batches=8, lr=3e-3, repeats=5)
ARMS = {"k-means (kMaX)": "kmax_tiny", "softmax (Mask2Former-style)": "mask2former_tiny"}

#: thresholds of the rule (points)
BAND, FASTER, LEARNED_PQ = 2.0, 1.0, 30.0

PQ_GAP = "final PQ k-means - softmax (points)"
MIOU_GAP = "final mIoU k-means - softmax (points)"
CURVE_GAP = "mean PQ gap over the curve (points)"
BEST_PQ = "best final PQ (points)"
FIGURES = (PQ_GAP, MIOU_GAP, CURVE_GAP, BEST_PQ)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    if not figures[BEST_PQ] >= LEARNED_PQ:
        return INCONCLUSIVE
    pq, miou, curve = figures[PQ_GAP], figures[MIOU_GAP], figures[CURVE_GAP]
    if pq >= -BAND and miou >= -BAND and curve >= FASTER:
        return HOLDS
    if pq < -BAND or miou < -BAND or curve < -BAND:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def arms(num_classes: int) -> list[Arm]:
    """The two arms as data: (name, builder) for the task's classes."""
    from attnlab.models import create

    return [Arm(name, lambda spec, m=model: create(m, img_size=spec.img_size[0], num_classes=num_classes))
            for name, model in ARMS.items()]


@torch.no_grad()
def pooled_metrics(model, task, batches: int, batch_size: int = 32) -> dict[str, float]:
    """PQ, SQ, RQ and mIoU (x 100) over ``batches`` validation batches pooled (dataset-level, not batch means)."""
    from attnlab.tasks.segmentation_metrics import ConfusionMatrix, PanopticStats

    model.eval()
    conf, stats = ConfusionMatrix(task.num_classes), PanopticStats(task.num_classes)
    for i in range(batches):
        batch = task.batch("val", 1000 + i, batch_size)
        task.accumulate(model(batch.inputs), batch, conf, stats)
    return {**{k: 100 * v for k, v in stats.summary().items()}, "miou": 100 * conf.mean_iou()}


def _plot(ctx, curves: dict) -> None:
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("pq", "miou")):
        for name, pts in curves.items():
            ax.plot([s for s, _ in pts[metric]], [v for _, v in pts[metric]], marker="o", ms=3, label=name)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"validation {metric.upper()} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("P25: k-means vs softmax cross-attention, generated panoptic segmentation", fontsize=9)
    ctx.save_plot(fig, "kmax_deeplab_curves.png")


def run(ctx):
    """Train both arms on the segmentation task; record the curves, the pooled final PQ / mIoU and the step time."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget
    task = create_task("segmentation", **TASK, seed=ctx.seed)
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=b["lr"], warmup_steps=min(30, b["steps"] // 5),
                      weight_decay=0.05, eval_every=b["eval_every"], eval_batches=b["eval_batches"],
                      log_every=max(1, b["steps"] // 10), seed=ctx.seed)
    res = train_arms(task, arms(task.num_classes), cfg, seed=ctx.seed, progress=ctx.progress)
    curves = {name: {m: [(int(e["step"]), 100 * float(e[m])) for e in r.evals] for m in ("pq", "miou")}
              for name, r in res.results.items()}
    final = {name: pooled_metrics(model, task, b["final_batches"]) for name, model in res.models.items()}
    step = task_step_seconds(res.models, task, b["batch_size"], b["repeats"])
    km, sm = ARMS
    pq_curve_gap = statistics.fmean(a - c for (_, a), (_, c) in zip(curves[km]["pq"], curves[sm]["pq"]))
    measured = {
        PQ_GAP: final[km]["pq"] - final[sm]["pq"], MIOU_GAP: final[km]["miou"] - final[sm]["miou"],
        CURVE_GAP: pq_curve_gap, BEST_PQ: max(f["pq"] for f in final.values()),
        "final (pooled validation, points)": {k: {m: round(v, 2) for m, v in f.items()} for k, f in final.items()},
        "curves (points)": curves, "params": res.params, "train seconds": res.seconds,
        "train CPU seconds": res.cpu_seconds, "step seconds": step,
        "step time k-means / softmax": step[km] / step[sm],
        "validation images at the end": 32 * b["final_batches"], "steps": b["steps"],
    }
    _plot(ctx, curves)
    summary = (
        f"After {b['steps']} steps x {b['batch_size']} images: k-means PQ {final[km]['pq']:.1f} / mIoU "
        f"{final[km]['miou']:.1f} vs softmax PQ {final[sm]['pq']:.1f} / mIoU {final[sm]['miou']:.1f} (pooled over "
        f"{32 * b['final_batches']} validation images); PQ gap {measured[PQ_GAP]:+.1f}, mIoU gap "
        f"{measured[MIOU_GAP]:+.1f} points; mean PQ gap along the curve {pq_curve_gap:+.1f} points; step time "
        f"k-means / softmax {measured['step time k-means / softmax']:.2f}. Rule: holds if both final gaps >= "
        f"-{BAND:g} and the curve gap >= +{FASTER:g}; does not hold if a gap < -{BAND:g}; inconclusive if no arm "
        f"reached PQ {LEARNED_PQ:g} or otherwise. Tiny network, 32 px generated shapes: far below the paper's scale."
    )
    return ReproOutcome(measured, summary)
