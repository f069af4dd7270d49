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

Protocol (``attnlab.repro.harness.protocol``): each arm at its own LR from a sweep over
6e-4 / 2e-3 / 6e-3 at 50 of the 200 steps on the val split, then three seeds. Measured: test
accuracy over patches, training step time of every seed's models (forward + backward, arms
interleaved, one thread) and attention multiply-accumulates per image and layer (counted:
equal by construction).

Verdict rule (seed by seed, 95 % intervals; written before the run): inconclusive if both arms
learned nothing at any LR tried; does not hold if DiNA+NA learned nothing while NA did;
otherwise two parts, both needed: ``gain`` = accuracy(DiNA+NA) - accuracy(NA) above 5 points,
and ``cost`` = step time of DiNA+NA over NA below 1.15 (the same cost, within 15 %). Holds if
both intervals clear their margins, does not hold if either lies on the wrong side, else
inconclusive. Deviation: the paper's models are hierarchical (4 stages, k=7,
ImageNet/COCO/ADE20K); here one stage, k=3, a generated task.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.protocol import AT_CHANCE, Protocol
from attnlab.repro.harness.rules import all_parts, chance_rule, clears
from attnlab.repro.harness.timing import task_step_seconds
from attnlab.repro.harness.vision import QUICK_PROTOCOL, Budget, make_task, train_vision_arms, vision_outcome

PAPER = "P26"
CLAIM = ("Dilated neighborhood attention (DiNA), interleaved with neighborhood attention (NA), captures more "
         "global context and expands the receptive field exponentially at no additional cost, so NA+DiNA "
         "(DiNAT) beats NA alone (NAT) at the same cost.")

KERNEL = 3
DILATIONS = {"NA": (1, 1, 1, 1), "DiNA+NA": (1, 4, 1, 4)}
TASK = {"img_size": 64, "patch": 4, "cue": 6, "num_classes": 4, "num_distractors": 6}
DIM, HEADS = 32, 4
_TRAIN = dict(warmup_steps=25, weight_decay=0.05, eval_batch_size=64, tasks=("far_cue",),
              task_kwargs={"far_cue": TASK})
QUICK = Budget(steps=6, batch_size=8, protocol=QUICK_PROTOCOL, eval_batches=1, bench_repeats=1, **_TRAIN)
FULL = Budget(steps=200, batch_size=32, protocol=Protocol(lrs=(6e-4, 2e-3, 6e-3)), eval_batches=8, bench_repeats=5,
              **_TRAIN)

#: margins of the verdict rule (points / ratio)
MIN_GAIN, SAME_COST = 5.0, 1.15

GAIN = "accuracy gain DiNA+NA - NA (points)"
COST = "step time DiNA+NA / NA"
FIGURES = (GAIN, COST, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], DILATIONS, counts_against=("DiNA+NA",)) \
        or all_parts(clears(figures[GAIN], MIN_GAIN), clears(figures[COST], SAME_COST, above=False))


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
    fair = table.fair["far_cue"]
    steps = [task_step_seconds(fair.models(i), make_task("far_cue", seed=s + ctx.seed, **TASK), b.batch_size,
                               b.bench_repeats) for i, s in enumerate(b.protocol.seeds)]
    n = (TASK["img_size"] // TASK["patch"]) ** 2
    entries = {
        GAIN: table.gap("DiNA+NA", "NA"), COST: t_interval([s["DiNA+NA"] / s["NA"] for s in steps]),
        "step seconds per seed": steps, "attention MACs per image and layer (each arm)": 2 * n * KERNEL**2 * DIM,
    }
    acc = {k: table.accuracy(k) for k in DILATIONS}
    summary = (
        f"Per-patch labelling of a far cue on a 16x16 token grid (chance {100 / TASK['num_classes']:.0f}%), ViT "
        f"depth 4 with 3x3 neighbourhood attention, each arm at its own LR: NA only {acc['NA'].text(3)}% vs NA and "
        f"DiNA interleaved (dilations {DILATIONS['DiNA+NA']}) {acc['DiNA+NA'].text(3)}% (test accuracy; gain "
        f"{entries[GAIN].text(3)} points), at {entries[COST].text(3)}x the step time, identical parameters "
        f"({table.params['NA']}) and attention MACs. Rule: holds if the gain's 95 % interval lies above "
        f"{MIN_GAIN:g} points and the step-time ratio's below {SAME_COST}; does not hold if either lies on the "
        f"wrong side; else inconclusive. {b.steps} steps."
    )
    return vision_outcome(ctx, {"": table}, entries, summary, plots={"": ("dinat.png", "far_cue: NA vs NA+DiNA")})
