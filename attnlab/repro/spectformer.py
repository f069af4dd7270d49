"""P04 SpectFormer at CPU scale: spectral-then-attention vs all-attention, all-spectral, attention-then-spectral.

Arms (same width 64, depth 4, patch 4): ``SSAA`` (SpectFormer: 2 spectral
gating blocks, then 2 attention blocks), ``AAAA`` (all attention, ViT-like),
``SSSS`` (all spectral, GFNet-like), ``AASS`` (the reverse order), and a plain
``attnlab.models.ViT`` with the parameter count of ``SSAA``. Trained on the
generated ``shapes`` task (labels need global context) and on ``digits``.

Rule (on ``shapes``, mean over seeds): holds if SSAA beats both ends
(all-spectral and all-attention) by more than 0.5 point; does not hold if it
trails the better end by more than 0.5 point; inconclusive in between.
"""
from __future__ import annotations

from attnlab.repro._vision_common import (
    Arm, flat_measured, format_table, full_budget, learned_guard, mean_acc, plot_bars, quick_budget, run_arms,
    vit_matched,
)
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P04"
CLAIM = ("Spectral gating layers in the first blocks followed by multi-head attention (SpectFormer) beat both "
         "an all-attention transformer and an all-spectral one (GFNet).")
BAND = 0.005

QUICK = quick_budget()
FULL = full_budget(300)


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.spectformer import SpectFormer

    def sf(layers):
        return lambda img, ch, ncls: SpectFormer(img_size=img, in_chans=ch, num_classes=ncls, embed_dim=dim,
                                                 depth=depth, layers=layers, num_heads=4)

    half = depth // 2
    arms = [Arm("SSAA", sf("s" * half + "a" * (depth - half))), Arm("AAAA", sf("a" * depth)),
            Arm("SSSS", sf("s" * depth)), Arm("AASS", sf("a" * (depth - half) + "s" * half))]
    target = lambda img, ch, ncls: sum(p.numel() for p in arms[0].build(img, ch, ncls).parameters())  # noqa: E731
    arms.append(Arm("ViT", lambda img, ch, ncls: vit_matched(target(img, ch, ncls), img, ch, ncls, depth=depth)))
    return arms


def run(ctx: ReproContext) -> ReproOutcome:
    """Train the five arms, judge SSAA against the two ends on shapes."""
    budget = QUICK if ctx.quick else FULL
    table = run_arms(_arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), budget, progress=ctx.progress)
    ssaa, aaaa, ssss = (mean_acc(table, "shapes", a) for a in ("SSAA", "AAAA", "SSSS"))
    margin = ssaa - max(aaaa, ssss)
    verdict = HOLDS if margin > BAND else DOES_NOT_HOLD if margin < -BAND else INCONCLUSIVE
    measured = flat_measured(table)
    measured["shapes: SSAA - max(AAAA, SSSS) (points)"] = 100 * margin
    plots = [p for p in [plot_bars(table, ctx.path("spectformer.png"), "SpectFormer layouts")] if p]
    summary = (f"On shapes SSAA reached {100 * ssaa:.1f}% vs all-attention {100 * aaaa:.1f}% and all-spectral "
               f"{100 * ssss:.1f}% (margin {100 * margin:+.1f} points; rule: > +0.5 holds, < -0.5 does not). "
               f"{budget.steps} steps x {budget.batch_size} images, seeds {list(budget.seeds)}.\n\n{format_table(table)}")
    verdict, summary = learned_guard(measured, verdict, summary, table)
    return ReproOutcome(measured, verdict, summary, plots)
