"""P07 Activator at CPU scale: GLU-MLP token "mixer" vs a ViT of equal parameters.

Arms: ``activator`` (GLU + channel MLP), ``only_glu`` (the paper's variant
without the second MLP), and ``attnlab.models.ViT`` with the parameter count of
``activator``. As in the official model, Activator mixes no tokens and has no
position embedding, so it is a bag of patches; ``shapes`` labels need global
context, which is where this should show.

Rule (on ``shapes``, mean over seeds): holds if both Activator variants are
within 3 points of the ViT's accuracy and Activator trains at least as fast
(images/s); does not hold if either variant trails by more than 3 points or it
is slower; there is no inconclusive band beyond the 3 points the claim allows.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, format_table, full_budget, learned_guard, mean_acc, plot_bars, quick_budget, run_arms, vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, ReproContext, ReproOutcome

PAPER = "P07"
CLAIM = ("A GLU-based MLP in place of attention (Activator) is competitive with ViT and MLP baselines at lower "
         "compute, even without the second (channel) MLP.")
TOLERANCE = 0.03

QUICK = quick_budget()
FULL = full_budget(400)


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.activator import Activator

    def act(channel_mlp):
        return lambda img, ch, ncls: Activator(img_size=img, in_chans=ch, num_classes=ncls, embed_dim=dim,
                                               depth=depth, channel_mlp=channel_mlp)

    arms = [Arm("activator", act(True)), Arm("only_glu", act(False))]
    target = lambda img, ch, ncls: sum(p.numel() for p in arms[0].build(img, ch, ncls).parameters())  # noqa: E731
    arms.append(Arm("ViT", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, depth=depth)))
    return arms


def run(ctx: ReproContext) -> ReproOutcome:
    """Train Activator, only-GLU and a matched ViT; judge accuracy within 3 points and speed."""
    budget = QUICK if ctx.quick else FULL
    table = run_arms(_arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), budget, progress=ctx.progress)
    act, glu, vit = (mean_acc(table, "shapes", a) for a in ("activator", "only_glu", "ViT"))
    s = table["summary"]["shapes"]
    speed = s["activator"]["images_per_s"] / s["ViT"]["images_per_s"]
    ok = act >= vit - TOLERANCE and glu >= vit - TOLERANCE and speed >= 1.0
    verdict = HOLDS if ok else DOES_NOT_HOLD
    measured = {f"{t}/{a} {k}": v for t, arms in table["summary"].items() for a, x in arms.items() for k, v in x.items()}
    measured["shapes: activator speed / ViT speed"] = speed
    plots = [p for p in [plot_bars(table, ctx.path("activator.png"), "Activator vs ViT")] if p]
    summary = (f"On shapes Activator {100 * act:.1f}%, only-GLU {100 * glu:.1f}%, ViT (equal params) {100 * vit:.1f}%; "
               f"Activator trains {speed:.2f}x the ViT's images/s (rule: both within 3 points and >= 1x). "
               f"{budget.steps} steps x {budget.batch_size}, seeds {list(budget.seeds)}.\n\n{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
