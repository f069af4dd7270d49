"""Reproduction ``complexformer`` (P18: Shao et al. 2025): complex multi-head attention against RoPE and no positions.

Setting (CPU scale; the paper pre-trains LMs on web text): character-level language modelling (task
``char_lm``, the standard library's sources), 4-layer causal ``SequenceModel``s, d = 64, 4 heads
(8 complex numbers per head), trained alike (steps, batch, seeds, data order; each at its own LR) with

* ``cmha`` — ComplexFormer's complex multi-head attention (mixer ``complex_attention``): its positions are
  the per-pair rotations (m - n) g_k inside the score; no position embedding (``pos="none"``);
* ``rope`` — softmax attention with rotary position embeddings (``pos="rope"``, half-split, base 10000);
* ``nope`` — softmax attention without any position information (``pos="none"``).

The three have the same parameters except CMHA's delta and b (H x d_h/2 each, +64 per layer, 0.06 %).

Protocol (``attnlab.repro.harness.protocol``): each arm at its own LR from a sweep over 1e-3 / 3e-3 / 1e-2
at a quarter of the steps on the val split, then three seeds scored on the test split. Measured: test loss
(nats per character) at the training length N and at 2N (the same models on twice longer windows of the
same seed's test split; nothing positional depends on a table of length N), and the validation curves.

Verdict rule (written before the run; seed by seed, 95 % intervals), on the test loss at the training
length, with ``EPS = 0.01`` nats: (1) CMHA at least as good as RoPE: the interval of loss(CMHA) -
loss(RoPE) lies below +EPS; (2) positions help: the interval of loss(NoPE) - loss(RoPE) lies above
+EPS. Each part holds / does not hold / is inconclusive by ``clears``; both the same -> that verdict,
otherwise inconclusive. Arms at chance (loss within 0.5 nats of ln 98) in every run: all -> inconclusive;
CMHA while another arm learned -> does not hold. The differences at 2N are reported beside it, not judged.
"""
from __future__ import annotations

import math

from attnlab.repro.harness.arms import mixer_arm
from attnlab.repro.harness.plots import plot_curves
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import chance_rule, clears, unanimous
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P18"
CLAIM = (
    "ComplexFormer's complex multi-head attention, in which each head rotates and scales its query-key pairs "
    "in the complex plane with learned per-head semantic and positional angles, models language better "
    "(lower perplexity) than RoPE Transformers, which in turn beat models without positions."
)

QUICK = dict(seq_len=32, dim=32, depth=2, heads=2, steps=20, batch_size=8, eval_batches=2,
             protocol=Protocol(lrs=(3e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
FULL = dict(seq_len=128, dim=64, depth=4, heads=4, steps=300, batch_size=32, eval_batches=8,
            protocol=Protocol(lrs=(1e-3, 3e-3, 1e-2)))

#: the rule's tolerance (nats per character)
EPS = 0.01
#: an arm whose test loss stays above ln(98) - this in every run learned nothing
CHANCE_MARGIN = 0.5
ARMS = ("cmha", "rope", "nope")

CMHA_VS_ROPE = "test loss at N: cmha - rope (nats)"
NOPE_VS_ROPE = "test loss at N: nope - rope (nats)"
AT_2N = "test loss at 2N: {} - rope (nats)"  # cmha, nope; reported, not judged
LOSS_2N = "loss at 2N"  # per seed run, in Trial.measured
FIGURES = (CMHA_VS_ROPE, NOPE_VS_ROPE, AT_CHANCE)
HEADLINE = CMHA_VS_ROPE


def arms(b: dict) -> list:
    """The three arms as data (what the protocol sweeps): name, mixer, position scheme."""
    model = dict(dim=b["dim"], depth=b["depth"], num_heads=b["heads"], max_len=2 * b["seq_len"])
    return [mixer_arm("cmha", "complex_attention", pos="none", **model),
            mixer_arm("rope", "softmax", pos="rope", **model),
            mixer_arm("nope", "softmax", pos="none", **model)]


def rule_parts(figures: dict) -> tuple[str, str]:
    """(1: CMHA - RoPE below +EPS, 2: NoPE - RoPE above +EPS), each a verdict on its interval."""
    return clears(figures[CMHA_VS_ROPE], EPS, above=False), clears(figures[NOPE_VS_ROPE], EPS)


def judge(figures: dict) -> str:
    """The chance rule, then both parts agree -> their verdict; otherwise inconclusive (module docstring)."""
    return chance_rule(figures[AT_CHANCE], ARMS, counts_against=("cmha",)) or unanimous(*rule_parts(figures))


def _loss_at_2n(b: dict):
    """``measure(model, task, split)`` of the protocol's trials: the loss on windows of 2N of the seed's split (seed
    runs only; the sweep does not need it)."""
    from attnlab.tasks import create as create_task
    from attnlab.train import evaluate

    long_tasks: dict = {}

    def measure(model, task, split):
        if split != "test":
            return {}
        if task.seed not in long_tasks:
            long_tasks[task.seed] = create_task("char_lm", seq_len=2 * b["seq_len"], seed=task.seed)
        ev = evaluate(model, long_tasks[task.seed], batches=b["eval_batches"], batch_size=max(b["batch_size"] // 2, 1),
                      split=split)
        return {LOSS_2N: float(ev["loss"])}

    return measure


def run(ctx):
    """Train the three arms on char_lm under the protocol; evaluate each seed's model at N and 2N."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget
    steps = b["steps"]

    def make_task(seed: int):
        return create_task("char_lm", seq_len=b["seq_len"], seed=seed)

    vocab = make_task(ctx.seed).spec.vocab_size
    template = TrainConfig(steps=steps, batch_size=b["batch_size"], lr=3e-3, warmup_steps=max(steps // 20, 1),
                           eval_every=max(steps // 5, 5), eval_batches=b["eval_batches"],
                           log_every=max(steps // 10, 1))
    fair = train_fair(arms(b), make_task, template, b["protocol"], seed=ctx.seed, progress=ctx.progress,
                      name="char_lm", metric="loss", measure=_loss_at_2n(b),
                      chance=Chance(math.log(vocab), CHANCE_MARGIN, higher_is_better=False))
    figures = {CMHA_VS_ROPE: fair.difference("cmha", "rope"), NOPE_VS_ROPE: fair.difference("nope", "rope"),
               **at_chance_figure(fair)}
    at_n = {a: fair.interval(a) for a in ARMS}
    at_2n = {a: fair.interval(a, LOSS_2N) for a in ARMS}
    diff_2n = {AT_2N.format(a): fair.difference(a, "rope", LOSS_2N) for a in ("cmha", "nope")}
    plot_curves(ctx, {a: fair.runs[a][0].curve for a in ARMS}, "complexformer_loss.png",
                final={a: fair.runs[a][0].metric for a in ARMS}, ylabel="validation loss (nats / char), seed 0",
                title=f"P18: char LM, {b['depth']} layers, d={b['dim']}, N={b['seq_len']}", digits=3)
    part1, part2 = rule_parts(figures)
    params = {a: sum(p.numel() for p in arm.build(make_task(ctx.seed).spec).parameters())
              for a, arm in zip(ARMS, arms(b))}
    measured = {**figures, **{f"test loss at N: {a}": iv for a, iv in at_n.items()},
                **{f"test loss at 2N: {a}": iv for a, iv in at_2n.items()}, **diff_2n, "params": params,
                "lr": fair.lr, "part1_cmha_at_least_rope": part1, "part2_rope_beats_nope": part2,
                "settings": b}
    summary = (
        f"Test loss (nats/char) at N={b['seq_len']} after {steps} steps, each arm at its own LR ({fair.lr}), 95 % "
        f"intervals over seeds {list(b['protocol'].seeds)}: "
        + ", ".join(f"{a} {iv.text(4)}" for a, iv in at_n.items())
        + "; at 2N: " + ", ".join(f"{a} {iv.text(4)}" for a, iv in at_2n.items())
        + f". (1) CMHA - RoPE {figures[CMHA_VS_ROPE].text(3)} below +{EPS}: {part1}; (2) NoPE - RoPE "
        f"{figures[NOPE_VS_ROPE].text(3)} above +{EPS}: {part2}. At 2N: CMHA - RoPE "
        f"{diff_2n[AT_2N.format('cmha')].text(3)}, NoPE - RoPE {diff_2n[AT_2N.format('nope')].text(3)}. "
        f"{b['depth']} layers, d={b['dim']}, char-level stdlib text: far below the paper's scale."
    )
    return ReproOutcome(measured, summary, {f"test loss at N: {a}": fair.values(a) for a in ARMS},
                        protocol=[fair.record()])
