"""P15 Hyena N-D at CPU scale: Hyena-first hybrid and attention-free Hyena ViT vs a ViT of equal parameters.

Arms (width 64, depth 4, patch 4, 8x8 grid, mean pooling):
``hybrid`` (``attnlab.models.hyena_vit.HyenaViT`` with Hyena N-D in the first 2
blocks, softmax attention in the last 2: the paper's best layout),
``hyena`` (Hyena N-D in all 4 blocks, attention-free) and ``ViT``
(``attnlab.models.ViT`` widened until its parameter count matches the hybrid's).
Two data regimes on ``shapes``: the full training stream, and a small pool of
``SMALL_BATCHES`` batches cycled (``SubsetTask``), since the paper's claim is
about data efficiency (small datasets). Protocol (``attnlab.repro.harness.protocol``), in
each regime: each arm at its own LR from a sweep over 3e-4 / 1e-3 / 3e-3 at 62 of the 250
steps on the val split, then three seeds, test accuracy. ``digits``, reported as context
before issue 18, is no longer trained.

Rule (seed by seed, 95 % intervals; written before the run): inconclusive if the hybrid and
the ViT both learned nothing at any LR tried in either regime; does not hold if the hybrid
learned nothing in a regime where the ViT did; otherwise two parts, both needed: gap_small =
acc(hybrid) - acc(ViT) with little data above +0.5 point, and gap_full above -0.5 (helps with
little data, costs nothing with more). Holds if both intervals clear their margins, does not
hold if either lies on the wrong side, else inconclusive. The attention-free Hyena ViT is
reported beside it.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import all_parts, chance_rule_each, clears
from attnlab.repro.harness.vision import BAND_POINTS, data_efficiency_study, full_budget, image_model, matched_vit, \
    quick_budget

PAPER = "P15"
CLAIM = ("Hyena N-D in place of attention gives a data-efficient ViT, and the hybrid with Hyena N-D in the first "
         "layers and attention after consistently improves on the plain ViT, most of all on small datasets.")
SMALL_BATCHES = 10

QUICK, FULL = quick_budget(), full_budget(250)

GAP_FULL, GAP_SMALL = "shapes: hybrid - ViT, full (points)", "shapes: hybrid - ViT, small (points)"
HYENA_FULL, HYENA_SMALL = "shapes: hyena - ViT, full (points)", "shapes: hyena - ViT, small (points)"  # context
CHANCE_FULL, CHANCE_SMALL = f"{AT_CHANCE}: shapes", f"{AT_CHANCE}: shapes[{SMALL_BATCHES} batches]"
FIGURES = (GAP_SMALL, GAP_FULL, CHANCE_FULL, CHANCE_SMALL)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    chance = [figures[CHANCE_FULL], figures[CHANCE_SMALL]]
    return chance_rule_each(chance, ("hybrid", "ViT"), counts_against=("hybrid",)) \
        or all_parts(clears(figures[GAP_SMALL], BAND_POINTS), clears(figures[GAP_FULL], -BAND_POINTS))


def _arms(dim: int, depth: int) -> list[Arm]:
    from attnlab.models.hyena_vit import HyenaViT

    def hyena(num_hyena: int):
        return image_model(HyenaViT, patch_size=4, dim=dim, depth=depth, num_heads=4, num_hyena=num_hyena)

    return [Arm("hybrid", hyena(depth // 2)), Arm("hyena", hyena(depth)),
            matched_vit("ViT", hyena(depth // 2), depth=depth)]


def run(ctx):
    """Train hybrid, Hyena ViT and a matched ViT on full and small data; record the hybrid's gaps on shapes."""
    return data_efficiency_study(
        ctx, _arms(32 if ctx.quick else 64, 2 if ctx.quick else 4), small_batches=SMALL_BATCHES,
        gaps={(GAP_FULL, GAP_SMALL): ("hybrid", "ViT"), (HYENA_FULL, HYENA_SMALL): ("hyena", "ViT")},
        rule="hybrid - ViT with small data above +0.5 and with full data above -0.5 holds, either interval on the "
             "wrong side does not", plot="hyena_nd", title="Hyena N-D vs ViT")
