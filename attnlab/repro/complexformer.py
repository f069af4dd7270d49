"""Reproduction ``complexformer`` (P18: Shao et al. 2025): complex multi-head attention against RoPE and no positions.

Setting (CPU scale; the paper pre-trains LMs on web text): character-level language modelling (task
``char_lm``, the standard library's sources), 4-layer causal ``SequenceModel``s, d = 64, 4 heads
(8 complex numbers per head), trained identically (same steps, batch, LR, seed, data order) with

* ``cmha`` — ComplexFormer's complex multi-head attention (mixer ``complex_attention``): its positions are
  the per-pair rotations (m - n) g_k inside the score; no position embedding (``pos="none"``);
* ``rope`` — softmax attention with rotary position embeddings (``pos="rope"``, half-split, base 10000);
* ``nope`` — softmax attention without any position information (``pos="none"``).

The three have the same parameters except CMHA's delta and b (H x d_h/2 each, +64 per layer, 0.06 %).
Measured: validation loss (nats per character) at the training length N and at 2N (the same models on
twice longer windows; nothing positional depends on a table of length N), and the loss curves.

Verdict rule (written before the run), on the validation loss at the training length, with
``EPS = 0.01`` nats: (1) CMHA <= RoPE + EPS (CMHA at least as good as RoPE); (2) RoPE < NoPE - EPS
(positions help). Both -> holds; neither -> does not hold at this scale; one -> inconclusive. Guard:
when RoPE's loss is not below ln(98) - 0.5 (nothing learned), inconclusive. The losses at 2N are
reported beside it with the same two comparisons, not judged.
"""
from __future__ import annotations

import math

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.plots import plot_curves
from attnlab.repro.harness.rules import INCONCLUSIVE, two_parts
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P18"
CLAIM = (
    "ComplexFormer's complex multi-head attention, in which each head rotates and scales its query-key pairs "
    "in the complex plane with learned per-head semantic and positional angles, models language better "
    "(lower perplexity) than RoPE Transformers, which in turn beat models without positions."
)

QUICK = dict(seq_len=32, dim=32, depth=2, heads=2, steps=25, batch_size=8, eval_batches=2, lr=3e-3)
FULL = dict(seq_len=128, dim=64, depth=4, heads=4, steps=800, batch_size=32, eval_batches=8, lr=3e-3)

#: the rule's tolerance (nats per character)
EPS = 0.01
#: the guard: RoPE's loss must be below ln(98) - this to count as learned
LEARNED_MARGIN = 0.5
VOCAB = 98

LOSS = "val loss at N (nats): {}"  # per arm
LOSS_2N = "val loss at 2N (nats): {}"
ARMS = ("cmha", "rope", "nope")
FIGURES = tuple(LOSS.format(a) for a in ARMS)


def arms(b: dict) -> list:
    """The three arms as data (what a sweep can vary): name, mixer, position scheme."""
    model = dict(dim=b["dim"], depth=b["depth"], num_heads=b["heads"], max_len=2 * b["seq_len"])
    return [mixer_arm("cmha", "complex_attention", pos="none", **model),
            mixer_arm("rope", "softmax", pos="rope", **model),
            mixer_arm("nope", "softmax", pos="none", **model)]


def rule_parts(figures: dict) -> tuple[bool, bool]:
    """(1: CMHA <= RoPE + EPS, 2: RoPE < NoPE - EPS) at the training length."""
    cmha, rope, nope = (figures[LOSS.format(a)] for a in ARMS)
    return cmha <= rope + EPS, rope < nope - EPS


def judge(figures: dict) -> str:
    """Both parts -> holds; neither -> does not hold; one -> inconclusive; nothing learned -> inconclusive."""
    if not figures[LOSS.format("rope")] < math.log(VOCAB) - LEARNED_MARGIN:
        return INCONCLUSIVE
    return two_parts(*rule_parts(figures))


def run(ctx):
    """Train the three arms on char_lm; evaluate each at N and 2N."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig, evaluate

    b = ctx.budget
    task = create_task("char_lm", seq_len=b["seq_len"], seed=ctx.seed)
    long_task = create_task("char_lm", seq_len=2 * b["seq_len"], seed=ctx.seed)
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=b["lr"], warmup_steps=max(b["steps"] // 20, 1),
                      eval_every=max(b["steps"] // 5, 5), eval_batches=b["eval_batches"],
                      log_every=max(b["steps"] // 10, 1), seed=ctx.seed)
    res = train_arms(task, arms(b), cfg, seed=ctx.seed, progress=ctx.progress, metric="loss")
    figures, at_2n = {}, {}
    for name in ARMS:
        figures[LOSS.format(name)] = res.final[name]
        at_2n[name] = evaluate(res.models[name], long_task, batches=b["eval_batches"],
                               batch_size=max(b["batch_size"] // 2, 1))["loss"]
    plot_curves(ctx, res.curves, "complexformer_loss.png", final=res.final, ylabel="validation loss (nats / char)",
                title=f"P18: char LM, {b['depth']} layers, d={b['dim']}, N={b['seq_len']}", digits=3)
    part1, part2 = rule_parts(figures)
    l2 = {LOSS_2N.format(a): v for a, v in at_2n.items()}
    measured = {**figures, **l2, "params": res.params, "curves": res.curves, "train_seconds": res.seconds,
                "train_cpu_seconds": res.cpu_seconds, "steps": b["steps"],
                "part1_cmha_at_least_rope": part1, "part2_rope_beats_nope": part2,
                "at_2n_cmha_at_least_rope": at_2n["cmha"] <= at_2n["rope"] + EPS,
                "at_2n_rope_beats_nope": at_2n["rope"] < at_2n["nope"] - EPS}
    f = {a: figures[LOSS.format(a)] for a in ARMS}
    summary = (
        f"Validation loss at N={b['seq_len']} after {b['steps']} steps: CMHA {f['cmha']:.4f}, RoPE {f['rope']:.4f}, "
        f"NoPE {f['nope']:.4f} nats/char; at 2N: CMHA {at_2n['cmha']:.4f}, RoPE {at_2n['rope']:.4f}, NoPE "
        f"{at_2n['nope']:.4f}. (1) CMHA <= RoPE + {EPS}: {part1}; (2) RoPE < NoPE - {EPS}: {part2}. "
        f"{b['depth']} layers, d={b['dim']}, one seed, one LR ({b['lr']}) for every arm: far below the paper's scale."
    )
    return ReproOutcome(measured, summary)
