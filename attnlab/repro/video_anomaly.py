"""P21's bi-directional hybrid at CPU scale: middle-frame prediction detects anomalies, and predicting in both
directions detects them at least as well as predicting forwards only.

Setting. The generated ``moving_shapes_prediction`` task (32 px frames; objects of two normal shapes
drive rightwards over a cluttered background; clips of 3 past + 3 middle + 3 future frames). Both
arms train on normal clips only, with P21's loss (0.5 (1 - SSIM) + 0.5 Gaussian-L1), the same data and
steps:

* ``bi-directional`` — :class:`attnlab.models.bidirectional_vad.BiDirectionalVAD` (ConvTTrans encoder,
  twin forward / backward decoders, layer-interactive ConvLSTM bridge, merge 0.85 / 0.15);
* ``forward only`` — the same network without the backward pipeline (P21's ablation).

Protocol (``attnlab.repro.harness.protocol``): each arm at its own LR from a sweep over 1e-3 / 3e-3 at 50
of the 200 steps on the val split (AdamW, warm-up, cosine; final val loss picks), then three seeds (each
seed draws the training data, the test videos and the initialisation).

Test: long videos (40 frames) that each hold one abnormal event of 3 frames (teleport, 3x speed-up,
wrong direction, a new shape; the kinds in turn). Every scorable frame is predicted once (sliding
clips), its error is P21's loss between prediction and frame, errors are min-max normalised per
video (P21's anomaly score), and the frame-level AUROC is taken over all frames of all videos.
Reported beside: the AUROC per kind, and that of a predictor that copies the last past frame (how
easy the events are without learning).

Rule (written before the run; seed by seed, 95 % t intervals). Arms at chance (val SSIM of the predicted
middle frames not above that of the better no-learning predictor, copying the last past frame or averaging
the context frames, at every LR tried): inconclusive if both are; does not hold if the bi-directional model
alone is. Otherwise part 1, the bi-directional model's frame AUROC clears 0.9; part 2, its AUROC minus the
forward-only model's clears 0. Both parts agree -> their verdict; otherwise inconclusive. History: before
the protocol, the first full run (one seed, LR 2e-3 for both, 250 steps, the same parts on point values)
measured AUROC bi-directional 0.897, forward only 0.886, copying the last past frame 0.732 -> inconclusive,
in 156 s of CPU; the protocol's sweep and seeds needed the step budget cut to 200 to stay within 10 minutes
of one core.

Deviations: 32 px generated video (P21: UCSD Ped2, CUHK Avenue, ShanghaiTech at 256 px, frames
sampled every 3rd); widths 8/16/32, 4 heads, 2 encoder and 2 + 2 decoder layers (P21: 16/32/64, 8
heads, 5 and 5 + 5); 3x3 ConvLSTM gates (P21: 5x5 at 256 px); per-frame normalisation (P21's code:
BatchNorm over the batch's frames without running statistics); the error is P21's training loss
rather than PSNR.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnlab.repro.harness.arms import Arm, count_params
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.plots import plot_bar_panels, plot_curves
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import chance_rule, clears, unanimous
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P21"
CLAIM = ("A bi-directional hybrid of a convolutional temporal transformer and a layer-interactive ConvLSTM bridge, "
         "trained to predict middle frames of normal video, detects abnormal frames by its prediction error "
         "(state-of-the-art frame AUC), and predicting in both directions beats predicting forwards only.")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Training sizes, the protocol and the number of test videos."""

    steps: int
    batch_size: int
    eval_batches: int
    test_videos: int
    protocol: Protocol
    warmup_steps: int = 20
    weight_decay: float = 0.01


QUICK = Budget(steps=2, batch_size=2, eval_batches=1, test_videos=2,
               protocol=Protocol(lrs=(1e-3, 3e-3), seeds=(0, 1), sweep_fraction=0.5))
FULL = Budget(steps=200, batch_size=8, eval_batches=4, test_videos=16,
              protocol=Protocol(lrs=(1e-3, 3e-3), seeds=(0, 1, 2), sweep_fraction=0.25))

TASK = {"img_size": 32, "context": 3, "targets": 3, "test_frames": 40}
MODEL = {"lstm_kernel": 3}
ARMS = {"bi-directional": "bidirectional_vad_tiny", "forward only": "forward_vad_tiny"}
BI, FWD = ARMS
COPY = "copy last past frame"

#: thresholds of the rule
AUROC_MIN = 0.9

AUC_BI = "frame AUROC bi-directional"
AUC_GAP = "frame AUROC bi-directional - forward only"
FIGURES = (AUC_BI, AUC_GAP, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], ARMS, counts_against=(BI,)) \
        or unanimous(clears(figures[AUC_BI], AUROC_MIN), clears(figures[AUC_GAP], 0.0))


def arms() -> list[Arm]:
    """The two predictors, as data (name and builder from the task's spec)."""
    from attnlab import models

    return [Arm(label, lambda spec, name=name: models.create(name, img_size=spec.img_size[0], **MODEL))
            for label, name in ARMS.items()]


def anomaly_auroc(task, predict, videos) -> tuple[float, dict[str, float]]:
    """Frame AUROC of per-video normalised errors of ``predict`` over ``videos``, overall and per event kind."""
    from attnlab.tasks.video_metrics import frame_auroc, normalize_per_video

    scores, labels, kinds = [], [], []
    with torch.no_grad():
        for video in videos:
            s = task.score_video(predict, video)
            scores.append(normalize_per_video(s.errors))
            labels.append(s.labels)
            kinds.append(video.anomaly.kind)
    per_kind = {k: frame_auroc(np.concatenate([s for s, kk in zip(scores, kinds) if kk == k]),
                               np.concatenate([y for y, kk in zip(labels, kinds) if kk == k]))
                for k in dict.fromkeys(kinds)}
    return frame_auroc(np.concatenate(scores), np.concatenate(labels)), per_kind


def copy_last_past_frame(task):
    """The no-learning predictor: every middle frame is the last past frame."""
    c, t = task.context, task.targets
    return lambda clips: clips[:, c - 1: c].expand(-1, t, -1, -1, -1)


def mean_of_context(task):
    """The other no-learning predictor: every middle frame is the mean of the past and future context frames."""
    c = task.context
    keep = [*range(c), *range(c + task.targets, 2 * c + task.targets)]
    return lambda clips: clips[:, keep].mean(1, keepdim=True).expand(-1, task.targets, -1, -1, -1)


def make_task(seed: int):
    """The frame-prediction task of a seed (its data and test videos)."""
    from attnlab import tasks

    return tasks.create("moving_shapes_prediction", seed=seed, **TASK)


def chance(task, batches: int, batch_size: int) -> Chance:
    """SSIM at chance: the better val SSIM of the two no-learning predictors (margin 0: an arm whose predictions are
    no better than copying or averaging frames learned nothing of the motion)."""
    levels = []
    for predict in (copy_last_past_frame(task), mean_of_context(task)):
        total = 0.0
        for i in range(batches):
            batch = task.batch("val", i, batch_size)
            total += task.loss(predict(batch.inputs), batch)[1]["ssim"] / batches
        levels.append(total)
    return Chance(float(max(levels)), 0.0)


def _test_videos(task, n: int) -> list:
    return [task.test_video(i) for i in range(n)]


def run(ctx) -> ReproOutcome:
    """Train both predictors on normal clips under the protocol; score the anomalous test videos; frame AUROC."""
    from attnlab.train import TrainConfig

    b = ctx.budget
    template = TrainConfig(steps=b.steps, batch_size=b.batch_size, lr=2e-3, warmup_steps=min(b.warmup_steps, b.steps),
                           weight_decay=b.weight_decay, eval_every=max(b.steps // 5, 1), eval_batches=b.eval_batches,
                           log_every=max(b.steps // 5, 1))

    def measure(model, task, split: str) -> dict:
        if split != "test":
            return {}
        model.eval()
        auc, per_kind = anomaly_auroc(task, model, _test_videos(task, b.test_videos))
        return {"auroc": auc, **{f"auroc {k}": v for k, v in per_kind.items()}}

    fair = train_fair(arms(), make_task, template, b.protocol, seed=ctx.seed, progress=ctx.progress,
                      name="middle-frame prediction", metric="ssim", keep_models=True, measure=measure,
                      chance=chance(make_task(ctx.seed), b.eval_batches, b.batch_size))
    seeds = [ctx.seed + s for s in b.protocol.seeds]
    copy = [anomaly_auroc(make_task(s), copy_last_past_frame(make_task(s)), _test_videos(make_task(s), b.test_videos))
            for s in seeds]
    auc = {label: fair.interval(label, "auroc") for label in ARMS}
    auc[COPY] = t_interval([c[0] for c in copy])
    kinds = [k.removeprefix("auroc ") for k in fair.runs[BI][0].measured if k.startswith("auroc ")]
    per_kind = {label: {k: float(np.mean(fair.values(label, f"auroc {k}"))) for k in kinds} for label in ARMS}
    per_kind[COPY] = {k: float(np.mean([c[1][k] for c in copy])) for k in kinds}
    measured = {AUC_BI: auc[BI], AUC_GAP: fair.difference(BI, FWD, "auroc"), **at_chance_figure(fair),
                f"frame AUROC {FWD}": auc[FWD], f"frame AUROC {COPY}": auc[COPY]}
    for label, by_kind in per_kind.items():
        measured.update({f"AUROC {label}, {k} (seed mean)": v for k, v in by_kind.items()})
    first = fair.models(0)
    for label in ARMS:
        measured[f"test SSIM {label}"] = fair.interval(label)
        measured[f"parameters {label}"] = count_params(first[label])
    measured["lr"] = fair.lr
    plot_curves(ctx, {label: fair.runs[label][0].curve for label in ARMS}, "video_anomaly_ssim.png",
                ylabel="val SSIM of predicted middle frames", title="middle-frame prediction on normal clips (first seed)",
                final={label: fair.runs[label][0].metric for label in ARMS}, digits=3)
    panels = {"frame AUROC, all events": {label: iv.mean for label, iv in auc.items()}}
    panels.update({f"AUROC, {k}": {label: per_kind[label][k] for label in per_kind} for k in kinds})
    plot_bar_panels(ctx, panels, "video_anomaly_auroc.png", ylabel="frame AUROC (seed mean)", hline=AUROC_MIN,
                    hline_label="0.9", rotation=30, panel_width=3.2)
    summary = (f"Middle-frame prediction on the generated moving-shapes video (32 px, {b.steps} steps x "
               f"{b.batch_size} normal clips, each arm at its own LR {fair.lr}, 95 % intervals over seeds "
               f"{list(b.protocol.seeds)}), scored on {b.test_videos} test videos of {TASK['test_frames']} frames with "
               f"one 3-frame event each: frame AUROC bi-directional {auc[BI].text(3)}, forward only {auc[FWD].text(3)}, "
               f"bi - forward {measured[AUC_GAP].text(3)}; copying the last past frame {auc[COPY].text(3)}; per kind "
               "(bi / forward, seed means): " + ", ".join(f"{k} {per_kind[BI][k]:.2f} / {per_kind[FWD][k]:.2f}"
                                                         for k in kinds) +
               f". Rule: part 1 bi-directional AUROC clears {AUROC_MIN}, part 2 bi - forward clears 0; both agree -> "
               "their verdict, else inconclusive; the bi-directional model at chance -> does not hold.")
    per_seed = {f"frame AUROC {label}": fair.values(label, "auroc") for label in ARMS}
    return ReproOutcome(measured, summary, per_seed, protocol=[fair.record()])
