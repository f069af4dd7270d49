"""Reproduction ``fit`` (P27: Chen & Li, 2023): FIT reaches across groups like full attention at O(N^(4/3)) cost.

Setting (CPU scale): the generated ``distant_xor`` task: 1024 tokens seen as 16 groups of 64; two marked bits in
two groups at least two groups apart; the label is their XOR, so no single group holds the answer. The other
tokens are one blank symbol (``noise_vocab=1``): in trial runs with the task's default 14 noise symbols full attention
stayed at chance for 400 steps (at 256 tokens), with the blank it learned within 150 steps (at 1024), and a
comparison of arms that all fail measures nothing. Arms, trained
alike (same seed, batches, steps, AdamW at the same LR), width 32, 4 heads:

* ``FIT``: the paper's network (:class:`attnlab.models.fit.FITSequenceModel`): layout ``"(1)2(1)"`` (a local
  layer in each group of 64, the latents (2 per group) read their group, 2 global layers over the 32 latents,
  the tokens read them back, a local layer), a head on the tokens' and latents' means;
* ``full attention``: a 2-layer ``SequenceModel`` with softmax attention over all 1024 tokens;
* ``local only``: the same 2-layer backbone with ``fit_local`` (attention within the same groups of 64) - FIT's
  local layers without its latents.

Scaling, in the same run: forward + backward time of one ``fit`` mixer layer (one FIT block: groups of n tokens,
t = N / n groups of one latent each, one global layer) against one ``softmax`` mixer layer (dense SDPA), dim 64, 4
heads, at N = k^3 for k in ``sizes``, with n = k and t = k^2 (the paper's t ~ N^(2/3), which makes the local
cost t n^2 and the global (t m)^2 both N^(4/3)); times measured round-robin, median of ``repeats``; the slopes
are least-squares fits of log time on log N.

Rule, written before the run:

* inconclusive if neither FIT nor full attention learned the task (validation accuracy below :data:`LEARNED`);
* part A (reach): FIT's accuracy at least full attention's minus :data:`MATCH`, and local-only at most
  :data:`CHANCE_BAND` (it stays at chance, 0.5);
* part B (cost): FIT's slope at most :data:`SLOPE_FIT_MAX` and dense attention's at least :data:`SLOPE_GAP` above it;
* both parts -> holds; neither -> does not hold at this scale; one -> inconclusive.

Deviations: the paper trains FIT on ImageNet-scale images and pixel diffusion; here a synthetic 1-D task at 1024
tokens, widths 32/64, one seed; the scaling is timed on one block, not a whole network.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from attnlab.repro.harness.arms import Arm, train_arms
from attnlab.repro.harness.plots import pyplot
from attnlab.repro.harness.rules import INCONCLUSIVE, two_parts
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.utils.timing import interleaved_median_seconds

PAPER = "P27"
CLAIM = ("FIT's interleaved local (within groups) and global (over a few latents per group) layers exchange "
         "information across the whole sequence at O(N^(4/3)) cost instead of O(N^2): it about matches full "
         "attention on a task that needs distant groups, where local attention alone fails.")

GROUPS = 16
TASK = dict(num_groups=GROUPS, noise_vocab=1)
QUICK = dict(seq_len=256, steps=6, batch_size=8, eval_every=3, eval_batches=1, lr=3e-3, dim=32,
             sizes=(4, 6, 8), repeats=1)
FULL = dict(seq_len=1024, steps=400, batch_size=32, eval_every=50, eval_batches=8, lr=3e-3, dim=32,
            sizes=(8, 12, 16, 20, 24), repeats=3)

#: thresholds of the rule
LEARNED, MATCH, CHANCE_BAND = 0.75, 0.05, 0.60
SLOPE_FIT_MAX, SLOPE_GAP = 1.5, 0.3

ACC_FIT, ACC_FULL, ACC_LOCAL = (f"val accuracy {a}" for a in ("FIT", "full attention", "local only"))
SLOPE_FIT, SLOPE_DENSE = "log-log time slope FIT block", "log-log time slope dense attention"
FIGURES = (ACC_FIT, ACC_FULL, ACC_LOCAL, SLOPE_FIT, SLOPE_DENSE)


def rule_parts(figures: dict) -> tuple[bool, bool]:
    """(A: FIT reaches across groups like full attention while local-only stays at chance, B: FIT scales better)."""
    reach = figures[ACC_FIT] >= figures[ACC_FULL] - MATCH and figures[ACC_LOCAL] <= CHANCE_BAND
    cost = figures[SLOPE_FIT] <= SLOPE_FIT_MAX and figures[SLOPE_DENSE] - figures[SLOPE_FIT] >= SLOPE_GAP
    return reach, cost


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    if not max(figures[ACC_FIT], figures[ACC_FULL]) >= LEARNED:
        return INCONCLUSIVE
    return two_parts(*rule_parts(figures))


def arms(b: dict) -> list[Arm]:
    """The three arms as data (module docstring)."""
    from attnlab.models import SequenceModel
    from attnlab.models.fit import FITSequenceModel

    n, d = b["seq_len"] // GROUPS, b["dim"]

    def backbone(mixer, **kw):
        return lambda spec: SequenceModel(vocab_size=spec.vocab_size, dim=d, depth=2, num_heads=4, mixer=mixer,
                                          head="class", num_classes=2, max_len=spec.seq_len, **kw)

    return [
        Arm("FIT", lambda spec: FITSequenceModel(vocab_size=spec.vocab_size, seq_len=spec.seq_len, group_size=n,
                                                 num_classes=2, layout="(1)2(1)", dim=d, latent_dim=d, num_heads=4,
                                                 latents_per_group=2)),
        Arm("full attention", backbone("softmax")),
        Arm("local only", backbone("fit_local", mixer_kwargs={"group_size": n})),
    ]


def slope(ns, seconds) -> float:
    """Least-squares slope of log(seconds) on log(N)."""
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(seconds, float)), 1)[0])


def time_blocks(sizes, repeats: int) -> dict:
    """Forward + backward seconds of one FIT block (n = k, t = k^2) and one dense layer at N = k^3."""
    import attnlab.mixers as mixers

    out = {"N": [], "FIT block": [], "dense attention": []}
    for k in sizes:
        n = k**3
        torch.manual_seed(0)
        layers = {"FIT block": mixers.create("fit", 64, num_heads=4, group_size=k, latents_per_group=1),
                  "dense attention": mixers.create("softmax", 64, num_heads=4)}
        x = torch.randn(1, n, 64, requires_grad=True)
        g = torch.randn(1, n, 64)

        def step(m):
            return lambda: m(x).backward(g)

        sec = interleaved_median_seconds({name: step(m) for name, m in layers.items()}, repeats)
        out["N"].append(n)
        for name, s in sec.items():
            out[name].append(s)
    return out


def _plot(ctx, curves: dict, timing: dict, slopes: dict) -> None:
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.6))
    for name, pts in curves.items():
        axes[0].plot(*zip(*pts), marker="o", ms=3, label=name)
    axes[0].axhline(0.5, color="grey", ls="--", lw=0.8, label="chance")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("validation accuracy")
    axes[0].set_title("distant_xor, 1024 tokens in 16 groups", fontsize=9)
    axes[0].legend(fontsize=7)
    for name in ("FIT block", "dense attention"):
        axes[1].loglog(timing["N"], timing[name], marker="o", label=f"{name} (slope {slopes[name]:.2f})")
    axes[1].set_xlabel("N (tokens)")
    axes[1].set_ylabel("fwd + bwd seconds, one layer")
    axes[1].set_title("time against N (FIT: groups of N^(1/3))", fontsize=9)
    axes[1].grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    ctx.save_plot(fig, "fit.png")


def run(ctx):
    """Train the three arms on distant_xor, time the FIT block against dense attention; record accuracies, slopes."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget
    task = create_task("distant_xor", seq_len=b["seq_len"], **TASK, seed=ctx.seed)
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=b["lr"], warmup_steps=min(30, b["steps"] // 5),
                      eval_every=b["eval_every"], eval_batches=b["eval_batches"], log_every=max(1, b["steps"] // 10),
                      seed=ctx.seed)
    res = train_arms(task, arms(b), cfg, seed=ctx.seed, progress=ctx.progress)
    timing = time_blocks(b["sizes"], b["repeats"])
    slopes = {name: slope(timing["N"], timing[name]) for name in ("FIT block", "dense attention")}
    figures = {ACC_FIT: res.final["FIT"], ACC_FULL: res.final["full attention"], ACC_LOCAL: res.final["local only"],
               SLOPE_FIT: slopes["FIT block"], SLOPE_DENSE: slopes["dense attention"]}
    reach, cost = rule_parts(figures)
    measured = {**figures, "A: FIT reaches like full attention, local at chance": reach,
                "B: FIT scales better": cost, "curves (step, accuracy)": res.curves, "params": res.params,
                "train seconds": res.seconds, "train CPU seconds": res.cpu_seconds,
                "timing (N, seconds)": {k: [round(v, 5) for v in vals] for k, vals in timing.items()},
                "time ratio dense / FIT at the largest N": timing["dense attention"][-1] / timing["FIT block"][-1],
                "steps": b["steps"]}
    _plot(ctx, res.curves, timing, slopes)
    summary = (
        f"distant_xor ({b['seq_len']} tokens, {GROUPS} groups), {b['steps']} steps x {b['batch_size']}: validation "
        f"accuracy FIT {figures[ACC_FIT]:.3f}, full attention {figures[ACC_FULL]:.3f}, local only "
        f"{figures[ACC_LOCAL]:.3f} (chance 0.5). One layer fwd+bwd from N={timing['N'][0]} to {timing['N'][-1]}: "
        f"log-log slope FIT block {slopes['FIT block']:.2f} (paper: 4/3), dense {slopes['dense attention']:.2f} "
        f"(2), dense / FIT {measured['time ratio dense / FIT at the largest N']:.1f}x at N={timing['N'][-1]}. "
        f"Rule: (A) FIT >= full - {MATCH} and local <= {CHANCE_BAND}: {reach}; (B) FIT slope <= {SLOPE_FIT_MAX} and "
        f"dense slope >= FIT's + {SLOPE_GAP}: {cost}; both holds, neither does not, one inconclusive; inconclusive "
        f"if neither FIT nor full attention reached {LEARNED}."
    )
    return ReproOutcome(measured, summary)
