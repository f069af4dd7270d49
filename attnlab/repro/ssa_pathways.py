"""P28 Information Pathways / SSA at CPU scale: subsampled-attention training is cheaper and generalises as well.

Setup: character-level language modelling (``char_lm``, causal ``SequenceModel``,
2 layers). Two arms trained on the same batches for ``S`` steps and then ``F`` more:

* dense: softmax attention throughout (``S + F`` steps);
* SSA: the ``ssa`` mixer (locally biased sampling, rate 4, query blocks of 32: each
  query block keeps its own block and a quarter of the earlier keys, nearer ones
  more often) for ``S`` steps, then ``F`` steps of dense fine-tuning (the SSA
  mixers' rate set to 1), as P28 recommends before dense inference.

Measured: validation loss (nats/char, 8 fixed val batches) of the dense arm; of the
SSA arm with dense attention at inference before and after the fine-tune; of the SSA
self-ensemble (P28: average of the predicted distributions of ``M`` random
sub-networks, ``attnlab.mixers.ssa.subsampled_inference``) before the fine-tune;
training step time of both arms (forward + backward + AdamW on one batch, arms
interleaved, median) and the attention-core MACs per sequence and layer (counted).

Rule: holds if an SSA training step is faster than a dense one AND the better of the
two SSA dense-inference losses is within 1% of (or below) the dense loss; does not
hold otherwise. The ensemble is reported, not judged (P28 reports it as a further gain).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.plots import plot_bar_panels, plot_curves
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.repro.harness.timing import task_step_seconds

PAPER = "P28"
CLAIM = ("Stochastically subsampled self-attention (SSA) cuts the cost of attention in training by 4-8x and, as a "
         "regulariser, reaches equal or better generalisation than dense training; an ensemble of subsampled "
         "sub-networks at inference can do better than the dense model.")

RATE, BLOCK, MODE = 4.0, 32, "local"
TOLERANCE = 0.01  # relative: "equal" validation loss
QUICK = dict(seq_len=64, dim=32, steps=20, finetune=4, batch=8, eval_batches=2, passes=2, repeats=2)
FULL = dict(seq_len=512, dim=64, steps=600, finetune=60, batch=16, eval_batches=8, passes=8, repeats=7)

DENSE_LOSS = "val loss dense (after S + F steps)"
SSA_LOSS = "val loss SSA, dense inference (after S steps)"
SSA_TUNED_LOSS = "val loss SSA + dense fine-tune, dense inference"
SPEED = "train step speed SSA / dense"
FIGURES = (DENSE_LOSS, SSA_LOSS, SSA_TUNED_LOSS, SPEED)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    best_ssa = min(figures[SSA_LOSS], figures[SSA_TUNED_LOSS])
    ok = figures[SPEED] > 1.0 and best_ssa <= figures[DENSE_LOSS] * (1 + TOLERANCE)
    return HOLDS if ok else DOES_NOT_HOLD


def attn_macs(n: int, c: int) -> tuple[int, int]:
    """(SSA, dense) causal attention-core MACs per sequence and layer (QK^T + AV over the visible keys)."""
    ssa = sum(2 * c * min(BLOCK, n - start) * (min(BLOCK, n - start) + math.ceil(start / RATE))
              for start in range(0, n, BLOCK))
    return ssa, 2 * c * n * (n + 1) // 2


def _ensemble_loss(model, task, batches: int, batch_size: int, passes: int, seed: int) -> float:
    """Validation NLL of the mean predicted distribution over ``passes`` random sub-networks."""
    from attnlab.mixers.ssa import subsampled_inference

    model.eval()
    total = 0.0
    with torch.no_grad(), subsampled_inference(model, seed=seed):
        for i in range(batches):
            batch = task.batch("val", i, batch_size)
            probs = torch.stack([F.softmax(model(batch.inputs), dim=-1) for _ in range(passes)]).mean(0)
            total += float(-probs.gather(-1, batch.targets[..., None]).squeeze(-1).clamp(min=1e-12).log().mean())
    return total / batches


def _set_rate(model, rate: float) -> None:
    from attnlab.mixers.ssa import SubsampledAttention

    for m in model.modules():
        if isinstance(m, SubsampledAttention):
            m.rate = rate


def run(ctx):
    """Train dense and SSA language models, fine-tune both densely; record losses and step speed."""
    from attnlab import tasks
    from attnlab.train import TrainConfig, evaluate, train

    b = ctx.budget
    task = tasks.create("char_lm", seq_len=b["seq_len"], seed=ctx.seed)
    ft_task = tasks.create("char_lm", seq_len=b["seq_len"], seed=ctx.seed + 1)  # fresh windows for the fine-tune
    main = TrainConfig(steps=b["steps"], batch_size=b["batch"], lr=3e-3, warmup_steps=max(b["steps"] // 10, 1),
                       eval_every=0, eval_batches=b["eval_batches"], log_every=max(b["steps"] // 5, 1), seed=ctx.seed)
    ft = TrainConfig(steps=b["finetune"], batch_size=b["batch"], lr=5e-4, warmup_steps=1, eval_every=0,
                     eval_batches=b["eval_batches"], log_every=max(b["finetune"], 1), seed=ctx.seed)
    ev = lambda m: evaluate(m, task, batches=b["eval_batches"], batch_size=b["batch"])["loss"]  # noqa: E731
    model = dict(dim=b["dim"], depth=2, num_heads=4)
    res = train_arms(task, [mixer_arm("dense", "softmax", **model),
                            mixer_arm("SSA", "ssa", {"rate": RATE, "mode": MODE, "block": BLOCK}, **model)], main,
                     seed=ctx.seed, progress=ctx.progress)
    dense, ssa = res.models["dense"], res.models["SSA"]
    ensemble = f"val loss SSA self-ensemble ({b['passes']} passes, before fine-tune)"
    m = {"val loss dense (after S steps)": ev(dense), SSA_LOSS: ev(ssa),
         ensemble: _ensemble_loss(ssa, task, b["eval_batches"], b["batch"], b["passes"], ctx.seed)}
    train(dense, ft_task, ft, progress=ctx.progress)
    _set_rate(ssa, 1.0)  # dense fine-tune
    train(ssa, ft_task, ft, progress=ctx.progress)
    _set_rate(ssa, RATE)
    m[DENSE_LOSS], m[SSA_TUNED_LOSS] = ev(dense), ev(ssa)
    secs = task_step_seconds({"dense": dense, "SSA": ssa}, task, b["batch"], b["repeats"], batch_index=10_000,
                             optimizer_lr=1e-4)
    e_macs, d_macs = attn_macs(b["seq_len"], b["dim"])
    m |= {"train step seconds dense": secs["dense"], "train step seconds SSA": secs["SSA"],
          SPEED: secs["dense"] / secs["SSA"], "attention MACs per sequence and layer SSA": e_macs,
          "attention MACs per sequence and layer dense": d_macs, "attention MACs ratio dense / SSA": d_macs / e_macs,
          "steps S, fine-tune F": [b["steps"], b["finetune"]]}
    plot_curves(ctx, {k: [(row["step"], row["loss"]) for row in r.history] for k, r in res.results.items()},
                "ssa_train_loss.png", ylabel="train loss (nats/char)", xlabel="step",
                title="SSA (P28) vs dense training on char_lm")
    plot_bar_panels(ctx, {"validation loss": {k.removeprefix("val loss "): v for k, v in m.items()
                                              if k.startswith("val loss")}},
                    "ssa_pathways.png", ylabel="val loss (nats/char)", zoom=True, panel_width=6)
    summary = (
        f"char_lm, seq {b['seq_len']}, 2-layer width-{b['dim']} causal LM. SSA (locally biased, rate {RATE:g}, blocks "
        f"of {BLOCK}) trains at {m[SPEED]:.2f}x the step speed of dense attention ({d_macs / e_macs:.1f}x fewer "
        f"attention MACs). Validation loss: dense {m[DENSE_LOSS]:.4f}; SSA with dense inference {m[SSA_LOSS]:.4f}, "
        f"after a {b['finetune']}-step dense fine-tune {m[SSA_TUNED_LOSS]:.4f}; SSA self-ensemble of {b['passes']} "
        f"sub-networks {m[ensemble]:.4f}. Rule: holds if SSA steps are faster and its better dense-inference loss is "
        f"within {TOLERANCE:.0%} of (or below) dense; otherwise does not hold. One seed."
    )
    return ReproOutcome(m, summary)
