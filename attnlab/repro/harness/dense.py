"""An efficient token mixer against dense attention in the same ViT: the shape of study of biformer (P10),
s2aformer (P09) and axial (P19).

Those papers claim accuracy on par with (or better than) dense-attention models at a lower cost.
Here: ``attnlab.models.ViT`` with the efficient mixer in every layer against the same ViT with dense
softmax attention, its width matched to equal parameters, trained under the protocol
(:mod:`~attnlab.repro.harness.protocol`: each arm at its own LR from a sweep on val, three seeds,
test accuracy) on ``digits`` upsampled to 32 px, patch size 2 (a 16x16 token grid, so attention is a
sizeable part of the cost). ``shapes`` is not used: in every earlier full run the dense ViT stayed at
chance on it at 16x16 tokens within the budget, so it judged nothing. Cost is measured two ways:
training images/s (forward + backward, batch 32, models interleaved, one thread, on every seed's
models) and the multiply-accumulates of the attention core per image and layer, counted analytically.
The rule (:func:`judge`) reads the figures named below.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.protocol import AT_CHANCE, Protocol
from attnlab.repro.harness.rules import DOES_NOT_HOLD, INCONCLUSIVE, all_parts, clears
from attnlab.repro.harness.vision import QUICK_PROTOCOL, Budget, matched_vit, train_vision_arms, vision_outcome

__all__ = ["judge", "rule", "efficient_vs_dense", "quick_budget", "full_budget", "dense_macs", "ceil_div", "DENSE",
           "GAP", "SPEED", "FIGURES", "MACS_RATIO", "DENSE_LRS"]

DENSE = "ViT (dense)"

GAP = "accuracy gap efficient - dense (points)"
SPEED = "train speed ratio efficient / dense"
FIGURES = (GAP, SPEED, AT_CHANCE)
MACS_RATIO = "attention MACs ratio efficient / dense"
#: the LR grid of these studies' sweeps (half-decades around the 2e-3 of the earlier runs)
DENSE_LRS = (6e-4, 2e-3, 6e-3)


def quick_budget(tasks: tuple[str, ...] = ("digits",)) -> Budget:
    """The quick runs' budget of these studies: 8 steps x 16 images, the quick protocol, on ``tasks``."""
    return Budget(steps=8, batch_size=16, eval_batches=2, eval_batch_size=32, protocol=QUICK_PROTOCOL, tasks=tasks,
                  bench_repeats=1)


def full_budget(tasks: tuple[str, ...] = ("digits",), **overrides) -> Budget:
    """The full runs' budget of these studies: 250 steps x 32 images, LRs :data:`DENSE_LRS` swept at a quarter of
    the steps, seeds 0-2, 8 eval batches, 5 timing repeats, on ``tasks``; ``overrides`` set any other field."""
    base = dict(steps=250, batch_size=32, protocol=Protocol(lrs=DENSE_LRS), eval_batches=8, tasks=tasks,
                bench_repeats=5)
    return Budget(**base | overrides)


def rule(margin: float):
    """The module rule ``judge(figures)`` of a study with this ``margin`` (points): :func:`judge` at ``margin``."""

    def judge_at_margin(figures: dict) -> str:
        return judge(figures, margin)

    judge_at_margin.__doc__ = f"Efficient mixer vs dense attention at a {margin:g}-point margin (see dense.judge)."
    return judge_at_margin


def judge(figures: dict, margin: float) -> str:
    """Does the efficient mixer keep accuracy within ``margin`` points of dense attention at a lower cost?

    Stated before the run:

    * inconclusive if the dense ViT learned nothing at any LR tried (it is in :data:`AT_CHANCE`):
      "equal accuracy" to a baseline at chance means nothing;
    * does not hold if the efficient ViT learned nothing while the dense one did (at equal budget);
    * otherwise two parts, both needed: accuracy (:data:`GAP`, the interval above ``-margin`` holds,
      below it does not) and cost (:data:`SPEED`, the interval of images/s ratios above 1 holds,
      below 1 does not); holds if both hold, does not hold if either does not, else inconclusive.
    """
    at = set(figures[AT_CHANCE])
    if DENSE in at:
        return INCONCLUSIVE
    if at:
        return DOES_NOT_HOLD
    return all_parts(clears(figures[GAP], -margin), clears(figures[SPEED], 1.0))


def efficient_vs_dense(ctx, *, label: str, mixer: str, mixer_kwargs: dict, attn_macs, margin: float,
                       patch_size: int = 2, dim: int = 48, depth: int = 4, num_heads: int = 4, title: str = ""):
    """Train the efficient-mixer ViT and a parameter-matched dense ViT on ``ctx.budget``'s task; returns the
    ReproOutcome.

    ``attn_macs(n_tokens, dim, grid) -> (efficient, dense)`` counts attention-core MACs per image and layer;
    ``margin`` is the module's margin (points), quoted in the summary.
    """
    from attnlab.models import ViT
    from attnlab.repro.harness.vision import image_kwargs

    budget = ctx.budget
    d, dp = (32, 2) if ctx.quick else (dim, depth)
    vit_kw = dict(patch_size=patch_size, depth=dp, num_heads=num_heads)

    def eff(spec):
        return ViT(**image_kwargs(spec), dim=d, mixer=mixer, mixer_kwargs=mixer_kwargs, **vit_kw)

    table = train_vision_arms([Arm(label, eff), matched_vit(DENSE, eff, **vit_kw)], budget, progress=ctx.progress,
                              seed_offset=ctx.seed)
    gap, speed = table.gap(label, DENSE), table.speed_ratio(label, DENSE)
    grid = (32 // patch_size, 32 // patch_size)
    e_macs, d_macs = attn_macs(grid[0] * grid[1], d, grid)
    entries = {
        "attention MACs per image and layer (efficient)": e_macs, "attention MACs per image and layer (dense)": d_macs,
        MACS_RATIO: e_macs / d_macs, GAP: gap, SPEED: speed,
    }
    summary = (
        f"{label} vs a dense ViT of equal parameters on {table.task} ({grid[0]}x{grid[1]} tokens, patch {patch_size}), "
        f"each at its own LR: test accuracy gap {gap.text(3)} points, training throughput {speed.text(3)}x dense "
        f"(95 % intervals over seeds {list(budget.protocol.seeds)}), attention MACs {e_macs / d_macs:.2f}x dense. "
        f"Rule: holds if the gap's interval lies above -{margin:g} point and the throughput ratio's above 1; does "
        f"not hold if either lies below; inconclusive if the dense ViT learned nothing."
    )
    return vision_outcome(ctx, {"": table}, entries, summary,
                          plots={"": (f"{mixer}.png", title or f"{label} vs dense ViT")})


def dense_macs(n: int, c: int) -> int:
    """QK^T and AV multiply-accumulates of dense attention over n tokens of width c."""
    return 2 * n * n * c


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for ints."""
    return -(-a // b)
