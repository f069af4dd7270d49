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

import functools
import math
import time

import torch
import torch.nn.functional as F

from attnlab.utils.threads import torch_threads
from attnlab.utils.timing import interleaved_median_seconds
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, ReproContext, ReproOutcome

PAPER = "P28"
CLAIM = ("Stochastically subsampled self-attention (SSA) cuts the cost of attention in training by 4-8x and, as a "
         "regulariser, reaches equal or better generalisation than dense training; an ensemble of subsampled "
         "sub-networks at inference can do better than the dense model.")

RATE, BLOCK, MODE = 4.0, 32, "local"
TOLERANCE = 0.01  # relative: "equal" validation loss


def _setup(quick: bool) -> dict:
    if quick:
        return dict(seq_len=64, dim=32, steps=20, finetune=4, batch=8, eval_batches=2, passes=2, repeats=2)
    return dict(seq_len=512, dim=64, steps=600, finetune=60, batch=16, eval_batches=8, passes=8, repeats=7)


def attn_macs(n: int, c: int) -> tuple[int, int]:
    """(SSA, dense) causal attention-core MACs per sequence and layer (QK^T + AV over the visible keys)."""
    dense = 2 * c * n * (n + 1) // 2
    ssa = 0
    for start in range(0, n, BLOCK):
        keys = min(BLOCK, n - start) + math.ceil(start / RATE)
        ssa += 2 * c * min(BLOCK, n - start) * keys
    return ssa, dense


def _loss_with_ensemble(model, task, batches: int, batch_size: int, passes: int, seed: int) -> float:
    """Validation NLL of the mean predicted distribution over ``passes`` random sub-networks."""
    from attnlab.mixers.ssa import subsampled_inference

    model.eval()
    total = 0.0
    with torch.no_grad(), subsampled_inference(model, seed=seed):
        for i in range(batches):
            batch = task.batch("val", i, batch_size)
            probs = torch.stack([F.softmax(model(batch.inputs), dim=-1) for _ in range(passes)]).mean(0)
            p = probs.gather(-1, batch.targets[..., None]).squeeze(-1)
            total += float(-p.clamp(min=1e-12).log().mean())
    return total / batches


def _step_seconds(models: dict, task, batch_size: int, repeats: int) -> dict:
    """Median seconds of one training step (forward, backward, AdamW) per model, interleaved."""
    batch = task.batch("train", 10_000, batch_size)

    def step(model, opt):
        model.train()
        opt.zero_grad(set_to_none=True)
        task.loss(model(batch.inputs), batch)[0].backward()
        opt.step()

    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    return interleaved_median_seconds({k: functools.partial(step, m, opts[k]) for k, m in models.items()}, repeats)


def run(ctx: ReproContext) -> ReproOutcome:
    """Train dense and SSA language models; judge step cost and validation loss (see the module docstring)."""
    t0, c0 = time.perf_counter(), time.process_time()
    with torch_threads(1):  # small steps: a second intra-op thread is slower on the shared 2-core box
        return _run(ctx, t0, c0)


def _run(ctx: ReproContext, t0: float, c0: float) -> ReproOutcome:
    from attnlab import tasks
    from attnlab.mixers.ssa import SubsampledAttention
    from attnlab.models import build_for_task
    from attnlab.train import TrainConfig, evaluate, train

    cfg = _setup(ctx.quick)
    task = tasks.create("char_lm", seq_len=cfg["seq_len"], seed=ctx.seed)
    ft_task = tasks.create("char_lm", seq_len=cfg["seq_len"], seed=ctx.seed + 1)  # fresh windows for the fine-tune
    main = TrainConfig(steps=cfg["steps"], batch_size=cfg["batch"], lr=3e-3, warmup_steps=max(cfg["steps"] // 10, 1),
                       eval_every=0, eval_batches=cfg["eval_batches"], log_every=max(cfg["steps"] // 5, 1),
                       seed=ctx.seed)
    ft = TrainConfig(steps=cfg["finetune"], batch_size=cfg["batch"], lr=5e-4, warmup_steps=1, eval_every=0,
                     eval_batches=cfg["eval_batches"], log_every=max(cfg["finetune"], 1), seed=ctx.seed)
    kw = dict(dim=cfg["dim"], depth=2, num_heads=4)
    ssa_kw = {"rate": RATE, "mode": MODE, "block": BLOCK}
    ev = lambda m: evaluate(m, task, batches=cfg["eval_batches"], batch_size=cfg["batch"])["loss"]  # noqa: E731

    torch.manual_seed(ctx.seed)
    dense = build_for_task(task.spec, mixer="softmax", **kw)
    torch.manual_seed(ctx.seed)
    ssa = build_for_task(task.spec, mixer="ssa", mixer_kwargs=ssa_kw, **kw)
    curves = {}
    res = train(dense, task, main, progress=ctx.progress)
    curves["dense"] = [(r["step"], r["loss"]) for r in res.history]
    dense_main = ev(dense)
    train(dense, ft_task, ft, progress=ctx.progress)
    dense_loss = ev(dense)
    res = train(ssa, task, main, progress=ctx.progress)
    curves["SSA"] = [(r["step"], r["loss"]) for r in res.history]
    ssa_dense_inf = ev(ssa)
    ensemble = _loss_with_ensemble(ssa, task, cfg["eval_batches"], cfg["batch"], cfg["passes"], ctx.seed)
    for m in ssa.modules():
        if isinstance(m, SubsampledAttention):
            m.rate = 1.0  # dense fine-tune
    train(ssa, ft_task, ft, progress=ctx.progress)
    ssa_ft = ev(ssa)
    for m in ssa.modules():
        if isinstance(m, SubsampledAttention):
            m.rate = RATE

    secs = _step_seconds({"dense": dense, "SSA": ssa}, task, cfg["batch"], cfg["repeats"])
    e_macs, d_macs = attn_macs(cfg["seq_len"], cfg["dim"])
    speed = secs["dense"] / secs["SSA"]
    best_ssa = min(ssa_dense_inf, ssa_ft)
    equal_or_better = best_ssa <= dense_loss * (1 + TOLERANCE)
    verdict = HOLDS if (speed > 1.0 and equal_or_better) else DOES_NOT_HOLD
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    measured = {
        "val loss dense (after S + F steps)": dense_loss,
        "val loss dense (after S steps)": dense_main,
        "val loss SSA, dense inference (after S steps)": ssa_dense_inf,
        "val loss SSA + dense fine-tune, dense inference": ssa_ft,
        f"val loss SSA self-ensemble ({cfg['passes']} passes, before fine-tune)": ensemble,
        "train step seconds dense": secs["dense"],
        "train step seconds SSA": secs["SSA"],
        "train step speed SSA / dense": speed,
        "attention MACs per sequence and layer SSA": e_macs,
        "attention MACs per sequence and layer dense": d_macs,
        "attention MACs ratio dense / SSA": d_macs / e_macs,
        "steps S, fine-tune F": [cfg["steps"], cfg["finetune"]],
        "wall seconds": round(wall, 1),
        "cpu seconds": round(cpu, 1),
    }
    plots = [p for p in [_plot(curves, measured, ctx.path("ssa_pathways.png"))] if p]
    summary = (
        f"char_lm, seq {cfg['seq_len']}, 2-layer width-{cfg['dim']} causal LM. SSA (locally biased, rate {RATE:g}, "
        f"blocks of {BLOCK}) trains at {speed:.2f}x the step speed of dense attention ({d_macs / e_macs:.1f}x fewer "
        f"attention MACs). Validation loss: dense {dense_loss:.4f}; SSA with dense inference {ssa_dense_inf:.4f}, "
        f"after a {cfg['finetune']}-step dense fine-tune {ssa_ft:.4f}; SSA self-ensemble of {cfg['passes']} "
        f"sub-networks {ensemble:.4f}. Rule: holds if SSA steps are faster and its better dense-inference loss is "
        f"within {TOLERANCE:.0%} of (or below) dense; otherwise does not hold. One seed; wall {wall:.0f} s, "
        f"CPU {cpu:.0f} s."
    )
    return ReproOutcome(measured, verdict, summary, plots)


def _plot(curves: dict, measured: dict, path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, pts in curves.items():
        if pts:
            a.plot(*zip(*pts), label=label)
    a.set_xlabel("step")
    a.set_ylabel("train loss (nats/char)")
    a.legend()
    keys = [k for k in measured if k.startswith("val loss")]
    b.barh(range(len(keys)), [measured[k] for k in keys], color="tab:blue")
    b.set_yticks(range(len(keys)))
    b.set_yticklabels([k.replace("val loss ", "") for k in keys], fontsize=7)
    lo = min(measured[k] for k in keys)
    b.set_xlim(lo * 0.97, max(measured[k] for k in keys) * 1.01)
    b.set_xlabel("val loss (nats/char)")
    fig.suptitle("SSA (P28) vs dense training on char_lm", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
