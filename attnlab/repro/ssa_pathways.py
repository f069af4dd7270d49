"""P28 Information Pathways / SSA at CPU scale: subsampled-attention training is cheaper and generalises as well.

Setup: character-level language modelling (``char_lm``, causal ``SequenceModel``,
2 layers). Two arms trained on the same batches for ``S`` steps and then ``F`` more:

* dense: softmax attention throughout (``S + F`` steps);
* SSA: the ``ssa`` mixer (locally biased sampling, rate 4, query blocks of 32: each
  query block keeps its own block and a quarter of the earlier keys, nearer ones
  more often) for ``S`` steps, then ``F`` steps of dense fine-tuning (the SSA
  mixers' rate set to 1), as P28 recommends before dense inference.

Protocol (``attnlab.repro.harness.protocol``): each arm's LR for the ``S`` steps from a sweep
over 1e-3 / 3e-3 / 1e-2 at 150 of the 600 steps on the val split (the dense fine-tune runs at
5e-4 for both), then three seeds. Measured per seed: test loss (nats/char, 8 fixed test batches)
of the dense arm; of the SSA arm with dense attention at inference before and after the
fine-tune; of the SSA self-ensemble (P28: average of the predicted distributions of ``M`` random
sub-networks, ``attnlab.mixers.ssa.subsampled_inference``) before the fine-tune; training step
time of both arms (forward + backward + AdamW on one batch, arms interleaved, median) and the
attention-core MACs per sequence and layer (counted).

Rule (written before the run; seed by seed, 95 % intervals): inconclusive if both arms learned
nothing (loss within 0.35 nats of the uniform ln V) at any LR tried; does not hold if SSA learned
nothing while dense did; otherwise two parts, both needed: SSA's training-step speed over
dense's above 1, and the relative excess loss of the better of the two SSA dense-inference
losses, min(SSA, SSA + fine-tune) / dense - 1, below 0.01 ("equal within 1 %, or lower"). Holds
if both intervals clear their margins, does not hold if either lies on the wrong side, else
inconclusive. The ensemble is reported, not judged (P28 reports it as a further gain).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.repro.harness.arms import mixer_arm
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.plots import plot_bar_panels, plot_curves
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import all_parts, chance_rule, clears
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.repro.harness.timing import task_step_seconds

PAPER = "P28"
CLAIM = ("Stochastically subsampled self-attention (SSA) cuts the cost of attention in training by 4-8x and, as a "
         "regulariser, reaches equal or better generalisation than dense training; an ensemble of subsampled "
         "sub-networks at inference can do better than the dense model.")

RATE, BLOCK, MODE = 4.0, 32, "local"
TOLERANCE = 0.01  # relative: "equal" loss
CHANCE_MARGIN = 0.35  # nats
FINETUNE_LR = 5e-4
QUICK = dict(seq_len=64, dim=32, steps=20, finetune=4, batch=8, eval_batches=2, passes=2, repeats=2,
             protocol=Protocol(lrs=(3e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
FULL = dict(seq_len=512, dim=64, steps=600, finetune=60, batch=16, eval_batches=8, passes=8, repeats=7,
            protocol=Protocol(lrs=(1e-3, 3e-3, 1e-2)))

SPEED = "train step speed SSA / dense"
EXCESS = "test loss: best SSA dense-inference / dense - 1"
FIGURES = (SPEED, EXCESS, AT_CHANCE)
DENSE_LOSS = "test loss dense (after S + F steps)"
SSA_LOSS = "test loss SSA, dense inference (after S steps)"
SSA_TUNED_LOSS = "test loss SSA + dense fine-tune, dense inference"
ENSEMBLE_LOSS = "test loss SSA self-ensemble (before fine-tune)"
DENSE_S_LOSS = "test loss dense (after S steps)"


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], ("dense", "SSA"), counts_against=("SSA",)) \
        or all_parts(clears(figures[SPEED], 1.0), clears(figures[EXCESS], TOLERANCE, above=False))


def attn_macs(n: int, c: int) -> tuple[int, int]:
    """(SSA, dense) causal attention-core MACs per sequence and layer (QK^T + AV over the visible keys)."""
    ssa = sum(2 * c * min(BLOCK, n - start) * (min(BLOCK, n - start) + math.ceil(start / RATE))
              for start in range(0, n, BLOCK))
    return ssa, 2 * c * n * (n + 1) // 2


def _ensemble_loss(model, task, batches: int, batch_size: int, passes: int, seed: int) -> float:
    """Test NLL of the mean predicted distribution over ``passes`` random sub-networks."""
    from attnlab.mixers.ssa import subsampled_inference

    model.eval()
    total = 0.0
    with torch.no_grad(), subsampled_inference(model, seed=seed):
        for i in range(batches):
            batch = task.batch("test", i, batch_size)
            probs = torch.stack([F.softmax(model(batch.inputs), dim=-1) for _ in range(passes)]).mean(0)
            total += float(-probs.gather(-1, batch.targets[..., None]).squeeze(-1).clamp(min=1e-12).log().mean())
    return total / batches


def _set_rate(model, rate: float) -> None:
    from attnlab.mixers.ssa import SubsampledAttention

    for m in model.modules():
        if isinstance(m, SubsampledAttention):
            m.rate = rate


def _seed_figures(dense, ssa, task, ft_task, b, seed: int, progress: bool) -> dict:
    """One seed's losses (test split), after the dense fine-tune of both arms, and its step timing."""
    from attnlab.train import TrainConfig, evaluate, train

    ev = lambda m: evaluate(m, task, batches=b["eval_batches"], batch_size=b["batch"], split="test")["loss"]  # noqa
    ft = TrainConfig(steps=b["finetune"], batch_size=b["batch"], lr=FINETUNE_LR, warmup_steps=1, eval_every=0,
                     eval_batches=b["eval_batches"], log_every=max(b["finetune"], 1), seed=seed)
    m = {DENSE_S_LOSS: ev(dense), SSA_LOSS: ev(ssa),
         ENSEMBLE_LOSS: _ensemble_loss(ssa, task, b["eval_batches"], b["batch"], b["passes"], seed)}
    train(dense, ft_task, ft, progress=progress)
    _set_rate(ssa, 1.0)  # dense fine-tune
    train(ssa, ft_task, ft, progress=progress)
    _set_rate(ssa, RATE)
    m[DENSE_LOSS], m[SSA_TUNED_LOSS] = ev(dense), ev(ssa)
    secs = task_step_seconds({"dense": dense, "SSA": ssa}, task, b["batch"], b["repeats"], batch_index=10_000,
                             optimizer_lr=1e-4)
    return m | {"speed": secs["dense"] / secs["SSA"], "excess": min(m[SSA_LOSS], m[SSA_TUNED_LOSS]) / m[DENSE_LOSS] - 1}


def run(ctx):
    """Train dense and SSA language models under the protocol, fine-tune both densely; record losses and speed."""
    from attnlab import tasks
    from attnlab.train import TrainConfig

    b = ctx.budget
    make_task = lambda seed: tasks.create("char_lm", seq_len=b["seq_len"], seed=seed)  # noqa: E731
    vocab = make_task(0).spec.vocab_size
    template = TrainConfig(steps=b["steps"], batch_size=b["batch"], lr=3e-3, warmup_steps=max(b["steps"] // 10, 1),
                           eval_every=max(b["steps"] // 6, 1), eval_batches=b["eval_batches"],
                           log_every=max(b["steps"] // 5, 1))
    model = dict(dim=b["dim"], depth=2, num_heads=4)
    fair = train_fair([mixer_arm("dense", "softmax", **model),
                       mixer_arm("SSA", "ssa", {"rate": RATE, "mode": MODE, "block": BLOCK}, **model)],
                      make_task, template, b["protocol"], seed=ctx.seed, progress=ctx.progress, name="char_lm",
                      metric="loss", keep_models=True, chance=Chance(math.log(vocab), CHANCE_MARGIN, False))
    per_seed = []
    for i, s in enumerate(b["protocol"].seeds):
        seed = ctx.seed + s
        per_seed.append(_seed_figures(fair.runs["dense"][i].model, fair.runs["SSA"][i].model, make_task(seed),
                                      make_task(seed + 1), b, seed, ctx.progress))  # fresh windows: seed + 1
    col = {k: [r[k] for r in per_seed] for k in per_seed[0]}
    e_macs, d_macs = attn_macs(b["seq_len"], b["dim"])
    m = {SPEED: t_interval(col["speed"]), EXCESS: t_interval(col["excess"]), **at_chance_figure(fair),
         **{k: t_interval(col[k]) for k in (DENSE_S_LOSS, SSA_LOSS, ENSEMBLE_LOSS, DENSE_LOSS, SSA_TUNED_LOSS)},
         "attention MACs per sequence and layer SSA": e_macs, "attention MACs per sequence and layer dense": d_macs,
         "attention MACs ratio dense / SSA": d_macs / e_macs, "steps S, fine-tune F": [b["steps"], b["finetune"]],
         "lr": fair.lr}
    plot_curves(ctx, {k: fair.runs[k][0].curve for k in fair.runs}, "ssa_val_loss.png",
                ylabel="val loss (nats/char, seed 0)", xlabel="step", title="SSA (P28) vs dense training on char_lm")
    plot_bar_panels(ctx, {"test loss": {k.removeprefix("test loss "): m[k].mean for k in m
                                        if k.startswith("test loss ")}},
                    "ssa_pathways.png", ylabel="test loss (nats/char)", zoom=True, panel_width=6)
    summary = (
        f"char_lm, seq {b['seq_len']}, 2-layer width-{b['dim']} causal LM, each arm at its own LR, 95 % intervals over "
        f"seeds {list(b['protocol'].seeds)}. SSA (locally biased, rate {RATE:g}, blocks of {BLOCK}) trains at "
        f"{m[SPEED].text(3)}x the step speed of dense attention ({d_macs / e_macs:.1f}x fewer attention MACs). Test "
        f"loss: dense {m[DENSE_LOSS].text(4)}; SSA with dense inference {m[SSA_LOSS].text(4)}, after a "
        f"{b['finetune']}-step dense fine-tune {m[SSA_TUNED_LOSS].text(4)}; SSA self-ensemble of {b['passes']} "
        f"sub-networks {m[ENSEMBLE_LOSS].text(4)}. Relative excess of the better SSA loss {m[EXCESS].text(3)}. "
        f"Rule: speed ratio above 1 and excess below {TOLERANCE:.0%} hold; either interval on the wrong side does not."
    )
    return ReproOutcome(m, summary, {k: col[k] for k in ("speed", "excess")}, protocol=[fair.record()])
