"""P26 DiNAT at CPU scale: dilated NA interleaved with NA beats NA alone at the same cost.

Setting. ``attnlab.models.ViT`` backbones (patch 4 on 64 px images: a 16 x 16 token grid,
depth 4, width 32, 4 heads) with a per-patch linear head (a dense-prediction model; the
paper's DiNAT gains are largest on dense tasks), trained on the generated ``far_cue``
task: every patch must be labelled with the colour class (4 classes) of one cue square
placed anywhere in the image among grey distractors. A patch can be labelled only if its
token's receptive field reaches the cue, so accuracy measures how much context the
layers carry.

Arms, identical except for the dilation of the neighbourhood-attention layers (equal
parameters and equal attention cost: 3 x 3 = 9 keys per query in every layer):

* ``NA``: kernel 3, dilation 1 in all four layers: receptive field 4 tokens each way;
* ``DiNA+NA``: kernel 3, dilations (1, 4, 1, 4): NA and DiNA interleaved as in DiNAT,
  receptive field 10 tokens each way.

Measured: validation accuracy over patches (mean over seeds), training step time
(forward + backward, arms interleaved, one thread) and attention multiply-accumulates
per image and layer (counted: equal by construction).

Verdict rule: with ``gain`` = accuracy(DiNA+NA) - accuracy(NA) in points, ``noise`` the
larger seed std (points) and ``cost`` = step time of DiNA+NA over NA:
holds if gain >= 5 points, gain > noise and cost <= 1.15 (same cost within timing noise);
does not hold if gain <= 0 or cost > 1.5; inconclusive otherwise. Deviation: the paper's
models are hierarchical (4 stages, k=7, ImageNet/COCO/ADE20K); here one stage, k=3, a
generated task.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.repro.harness.timing import task_step_seconds
from attnlab.repro.harness.vision import Budget, make_task, train_vision_arms

PAPER = "P26"
CLAIM = ("Dilated neighborhood attention (DiNA), interleaved with neighborhood attention (NA), captures more "
         "global context and expands the receptive field exponentially at no additional cost, so NA+DiNA "
         "(DiNAT) beats NA alone (NAT) at the same cost.")

KERNEL = 3
DILATIONS = {"NA": (1, 1, 1, 1), "DiNA+NA": (1, 4, 1, 4)}
TASK = {"img_size": 64, "patch": 4, "cue": 6, "num_classes": 4, "num_distractors": 6}
DIM, HEADS = 32, 4
_TRAIN = dict(lr=2e-3, warmup_steps=25, weight_decay=0.05, eval_batch_size=64, tasks=("far_cue",),
              task_kwargs={"far_cue": TASK})
QUICK = Budget(steps=6, batch_size=8, seeds=(0,), eval_batches=1, bench_repeats=1, **_TRAIN)
FULL = Budget(steps=200, batch_size=32, seeds=(0, 1), eval_batches=8, bench_repeats=5, **_TRAIN)

#: thresholds of the verdict rule (points / ratios)
MIN_GAIN, SAME_COST, TOO_COSTLY = 5.0, 1.15, 1.5

GAIN = "accuracy gain DiNA+NA - NA (points)"
NOISE = "seed noise (points)"
COST = "step time DiNA+NA / NA"
FIGURES = (GAIN, NOISE, COST)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    gain, noise, cost = figures[GAIN], figures[NOISE], figures[COST]
    if gain <= 0.0 or cost > TOO_COSTLY:
        return DOES_NOT_HOLD
    if gain >= MIN_GAIN and gain > noise and cost <= SAME_COST:
        return HOLDS
    return INCONCLUSIVE


class PatchLabeler(nn.Module):
    """A ViT whose linear head is applied to every token: images -> (B, N, num_classes) per-patch logits."""

    def __init__(self, dilations: tuple[int, ...], num_classes: int):
        super().__init__()
        from attnlab.models import ViT

        layers = [("neighborhood", {"kernel_size": KERNEL, "dilation": d}) for d in dilations]
        self.vit = ViT(img_size=TASK["img_size"], patch_size=TASK["patch"], in_chans=3, num_classes=num_classes,
                       dim=DIM, depth=len(dilations), num_heads=HEADS, mixer=layers)

    def no_weight_decay(self) -> set[str]:
        """The backbone's position embedding (read by attnlab.train)."""
        return {f"vit.{n}" for n in self.vit.no_weight_decay()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, num_classes)."""
        return self.vit.head(self.vit.forward_features(x))


def run(ctx):
    """Train the NA and DiNA+NA patch labellers on far_cue; record the accuracy gain and the step-time ratio."""
    b = ctx.budget
    arms = [Arm(name, lambda spec, d=dil: PatchLabeler(d, TASK["num_classes"])) for name, dil in DILATIONS.items()]
    table = train_vision_arms(arms, b, progress=ctx.progress, measure_speed=False, keep_models=True,
                              seed_offset=ctx.seed)
    s, last = table.summary["far_cue"], {name: models[-1] for name, models in table.models["far_cue"].items()}
    step = task_step_seconds(last, make_task("far_cue", seed=b.seeds[-1] + ctx.seed, **TASK), b.batch_size,
                             b.bench_repeats)
    n = (TASK["img_size"] // TASK["patch"]) ** 2
    measured = {
        "NA accuracy": s["NA"]["accuracy"], "DiNA+NA accuracy": s["DiNA+NA"]["accuracy"],
        "NA accuracy std": s["NA"]["accuracy_std"], "DiNA+NA accuracy std": s["DiNA+NA"]["accuracy_std"],
        GAIN: 100 * (s["DiNA+NA"]["accuracy"] - s["NA"]["accuracy"]),
        NOISE: 100 * max(x["accuracy_std"] for x in s.values()),
        "NA step seconds": step["NA"], "DiNA+NA step seconds": step["DiNA+NA"], COST: step["DiNA+NA"] / step["NA"],
        "parameters (each arm)": s["NA"]["params"],
        "attention MACs per image and layer (each arm)": 2 * n * KERNEL**2 * DIM,
    }
    plot_bar_panels(ctx, {"far_cue: NA vs NA+DiNA, same cost": {k: 100 * x["accuracy"] for k, x in s.items()}},
                    "dinat.png", ylabel="patches labelled right (%)", rotation=0, hline=100 / TASK["num_classes"],
                    hline_label="chance", errors={"far_cue: NA vs NA+DiNA, same cost":
                                                  {k: 100 * x["accuracy_std"] for k, x in s.items()}})
    summary = (
        f"Per-patch labelling of a far cue on a 16x16 token grid (chance {100 / TASK['num_classes']:.0f}%), ViT "
        f"depth 4 with 3x3 neighbourhood attention: NA only {100 * s['NA']['accuracy']:.1f}% vs NA and DiNA "
        f"interleaved (dilations {DILATIONS['DiNA+NA']}) {100 * s['DiNA+NA']['accuracy']:.1f}% (gain "
        f"{measured[GAIN]:+.1f} points, seed noise {measured[NOISE]:.1f}, {len(b.seeds)} seed(s), {b.steps} steps), "
        f"at {measured[COST]:.2f}x the step time, identical parameters ({measured['parameters (each arm)']}) and "
        f"attention MACs. Rule: holds if gain >= {MIN_GAIN:g} points, above noise, and step time <= {SAME_COST}x; "
        f"does not hold if gain <= 0 or step time > {TOO_COSTLY}x; else inconclusive."
    )
    return ReproOutcome(measured, summary, table.per_seed())
