"""P07 Activator at CPU scale: GLU-MLP token "mixer" vs a ViT of equal parameters.

Arms: ``activator`` (GLU + channel MLP), ``only_glu`` (the paper's variant
without the second MLP), and ``attnlab.models.ViT`` with the parameter count of
``activator``. As in the official model, Activator mixes no tokens and has no
position embedding, so it is a bag of patches; ``shapes`` labels need global
context, which is where this should show. Protocol (``attnlab.repro.harness.protocol``):
each arm at its own LR from a sweep over 3e-4 / 1e-3 / 3e-3 at 100 of the 400 steps on the
val split, then three seeds, test accuracy; images/s timed on every seed's models.
``digits``, reported as context before issue 18, is no longer trained.

Rule (on ``shapes``, seed by seed, 95 % intervals; written before the run): inconclusive if
all three arms learned nothing at any LR tried; does not hold if an Activator variant learned
nothing while the ViT did; otherwise three parts, all needed: each variant's accuracy minus the
ViT's (points) above -3 (the 3 points "competitive" allows), and Activator's images/s over the
ViT's above 1. Holds if every interval clears its margin, does not hold if any interval lies on
the wrong side, else inconclusive.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import all_parts, chance_rule, clears
from attnlab.repro.harness.vision import full_budget, image_model, matched_vit, quick_budget, train_vision_arms, \
    vision_outcome

PAPER = "P07"
CLAIM = ("A GLU-based MLP in place of attention (Activator) is competitive with ViT and MLP baselines at lower "
         "compute, even without the second (channel) MLP.")
TOLERANCE = 3.0  # points

QUICK, FULL = quick_budget(), full_budget(400)

ACTIVATOR, ONLY_GLU = "shapes: activator - ViT (points)", "shapes: only_glu - ViT (points)"
SPEED = "shapes: activator speed / ViT speed"
FIGURES = (ACTIVATOR, ONLY_GLU, SPEED, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], ("activator", "only_glu", "ViT"), counts_against=("activator", "only_glu")) \
        or all_parts(clears(figures[ACTIVATOR], -TOLERANCE), clears(figures[ONLY_GLU], -TOLERANCE),
                     clears(figures[SPEED], 1.0))


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.activator import Activator

    def act(channel_mlp: bool):
        return image_model(Activator, embed_dim=dim, depth=depth, channel_mlp=channel_mlp)

    return [Arm("activator", act(True)), Arm("only_glu", act(False)), matched_vit("ViT", act(True), depth=depth)]


def run(ctx):
    """Train Activator, only-GLU and a matched ViT; record their accuracy gaps and Activator's relative speed."""
    table = train_vision_arms(_arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), ctx.budget,
                              progress=ctx.progress, seed_offset=ctx.seed)
    figures = {ACTIVATOR: table.gap("activator", "ViT"), ONLY_GLU: table.gap("only_glu", "ViT"),
               SPEED: table.speed_ratio("activator", "ViT")}
    summary = (f"On shapes (test accuracy, each arm at its own LR, 95 % intervals over seeds): Activator - ViT "
               f"{figures[ACTIVATOR].text(3)} points, only-GLU - ViT {figures[ONLY_GLU].text(3)}; Activator trains at "
               f"{figures[SPEED].text(3)}x the ViT's images/s (rule: both gaps above -3 and the ratio above 1 hold). "
               f"{ctx.budget.steps} steps x {ctx.budget.batch_size}.")
    return vision_outcome(ctx, {"": table}, figures, summary, plots={"": ("activator.png", "Activator vs ViT")})
