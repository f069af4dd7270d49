"""Reproduction ``deconstructing_attention`` (P08: Xue, Moosavi, Aletras 2025): which principles of attention a
language model needs, on a task that needs copying.

Setting (CPU scale; the paper pre-trains 70M-1.7B Qwen2.5-style LMs on SlimPajama): task ``bigram_copy``
(vocabulary 16, N = 64: a bigram chain of random length 16-31, a separator, then the chain repeated, so
predicting the copy needs looking back a sequence-dependent distance), 4-layer causal ``SequenceModel``s,
d = 64, 4 heads, learned absolute positions, all arms trained alike (steps, batch, LR, seed, data order):

* ``standard`` — softmax attention in every layer;
* ``no mixing`` — P08's gated MLP in place of attention (``gated_mlp``, attention's parameter count);
* uniform variants, in every layer: ``rnd_emb_qk`` and ``fixed_seq_qk`` (Q, K from a fixed random / token
  sequence run through the network: input-independent maps), ``static_emb_qk`` (Q, K from the layer-0
  embeddings), ``taylor_attention`` (P08's Approximate), ``self_gated_attention`` (P08's Non-approximate);
* hybrid variants: the same mixer in layers 1 and 3 of the paper's numbering (0-based 0 and 2), standard
  attention in layers 2 and 4 (0-based 1 and 3), the paper's main hybrid;
* ``standard layers alone`` — a 2-layer softmax model: the hybrids with their variant layers removed (the
  paper's SKIP ablation, trained as such), to see what the variant layers add.

The fixed text of ``fixed_seq_qk`` is one training-distribution sequence (batch 10^6 of the train split),
as the paper's is the first 2048 tokens of FineWeb. Measured on validation batches: the loss on the copy
half and on the chain half (nats), copy accuracy, and the chain's true conditional entropy H.

Verdict rule (written before the run), on the copy-half loss: (A) mixing is indispensable: no mixing's copy
loss >= 0.9 H while standard attention's is <= 0.5 H; (B) the input-independent variants alone are
clearly worse: uniform ``rnd_emb_qk`` and ``fixed_seq_qk`` both >= standard + 0.3 nats; (C) in a hybrid
they come close: hybrid ``rnd_emb_qk`` and ``fixed_seq_qk`` both <= standard + 0.1 nats. Standard not
below 0.5 H -> inconclusive (nothing to compare against). Otherwise A, B and C -> holds; A fails, or B and C
both fail -> does not hold at this scale; else inconclusive. The other variants are reported, not judged.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.plots import plot_bar_panels
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P08"
CLAIM = (
    "Mixing information across positions is indispensable (without it a language model collapses), while the "
    "exact mathematical form and the sequence dependency of attention can be relaxed, especially when only "
    "some layers keep standard attention: variants that fail alone come close to standard attention in a hybrid."
)

QUICK = dict(vocab=12, seq_len=32, dim=32, depth=2, heads=2, steps=12, batch_size=8, eval_batches=1, lr=3e-3)
FULL = dict(vocab=16, seq_len=64, dim=64, depth=4, heads=4, steps=600, batch_size=32, eval_batches=8, lr=3e-3)

VARIANTS = ("rnd_emb_qk", "fixed_seq_qk", "static_emb_qk", "taylor_attention", "self_gated_attention")
INPUT_INDEPENDENT = ("rnd_emb_qk", "fixed_seq_qk")
#: the rule's thresholds (fractions of the chain's entropy H; nats)
NO_MIX_FRACTION, LEARNED_FRACTION, ALONE_MARGIN, HYBRID_SLACK = 0.9, 0.5, 0.3, 0.1

COPY = "copy loss (nats): {}"  # per arm
ENTROPY = "bigram entropy H (nats)"
STANDARD, NO_MIX = COPY.format("standard"), COPY.format("no mixing")
UNIFORM = {v: COPY.format(f"uniform {v}") for v in INPUT_INDEPENDENT}
HYBRID = {v: COPY.format(f"hybrid {v}") for v in INPUT_INDEPENDENT}
FIGURES = (ENTROPY, STANDARD, NO_MIX, *UNIFORM.values(), *HYBRID.values())


def arms(b: dict, fixed_sequence) -> list:
    """Every arm as data: name, mixer pattern (a list of (name, kwargs) per layer cycled over the depth)."""
    model = dict(dim=b["dim"], num_heads=b["heads"], fixed_sequence=fixed_sequence)
    out = [mixer_arm("standard", "softmax", depth=b["depth"], **model),
           mixer_arm("no mixing", "gated_mlp", depth=b["depth"], **model)]
    out += [mixer_arm(f"uniform {v}", v, depth=b["depth"], **model) for v in VARIANTS]
    out += [mixer_arm(f"hybrid {v}", f"{v},softmax", depth=b["depth"], **model) for v in VARIANTS]
    out.append(mixer_arm("standard layers alone", "softmax", depth=b["depth"] // 2, **model))
    return out


def rule_parts(figures: dict) -> tuple[bool, bool, bool, bool]:
    """(standard learned to copy, A: no mixing cannot, B: input-independent variants alone clearly worse,
    C: in a hybrid they come close)."""
    h, std = figures[ENTROPY], figures[STANDARD]
    learned = std <= LEARNED_FRACTION * h
    a = figures[NO_MIX] >= NO_MIX_FRACTION * h
    b = all(figures[k] >= std + ALONE_MARGIN for k in UNIFORM.values())
    c = all(figures[k] <= std + HYBRID_SLACK for k in HYBRID.values())
    return learned, a, b, c


def judge(figures: dict) -> str:
    """Standard did not learn -> inconclusive; A, B, C -> holds; not A, or neither B nor C -> does not hold;
    otherwise inconclusive (module docstring)."""
    learned, a, b, c = rule_parts(figures)
    if not learned:
        return INCONCLUSIVE
    if a and b and c:
        return HOLDS
    if not a or not (b or c):
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def run(ctx):
    """Train every arm on bigram_copy; measure the copy and chain losses."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget
    task = create_task("bigram_copy", vocab_size=b["vocab"], seq_len=b["seq_len"], seed=ctx.seed)
    fixed = task.batch("train", 10**6, 1).inputs[0]
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=b["lr"], warmup_steps=max(b["steps"] // 20, 1),
                      eval_every=max(b["steps"] // 4, 4), eval_batches=b["eval_batches"],
                      log_every=max(b["steps"] // 10, 1), seed=ctx.seed)
    res = train_arms(task, arms(b, fixed), cfg, seed=ctx.seed, progress=ctx.progress, metric="copy_loss")
    evals = {name: r.final_eval for name, r in res.results.items()}
    h = task.bigram_entropy
    figures = {ENTROPY: h, **{COPY.format(name): ev["copy_loss"] for name, ev in evals.items()}}
    learned, a, bb, c = rule_parts(figures)
    table = {name: {k: round(ev[k], 4) for k in ("copy_loss", "bigram_loss", "copy_accuracy", "loss")}
             for name, ev in evals.items()}
    plot_bar_panels(ctx, {"copy half: loss (nats)": {n: e["copy_loss"] for n, e in evals.items()},
                          "chain half: loss (nats)": {n: e["bigram_loss"] for n, e in evals.items()}},
                    "deconstructing_attention.png", ylabel="validation loss (nats)", hline=h,
                    hline_label="chain entropy H", suptitle="P08: bigram + copy, who can copy?", rotation=60)
    measured = {**figures, "table": table, "params": res.params, "curves": res.curves, "train_seconds": res.seconds,
                "train_cpu_seconds": res.cpu_seconds, "steps": b["steps"], "standard_learned": learned,
                "A_no_mixing_cannot_copy": a, "B_input_independent_alone_worse": bb, "C_hybrids_come_close": c}
    std = figures[STANDARD]
    uni = ", ".join(f"{v} {figures[UNIFORM[v]]:.3f}" for v in INPUT_INDEPENDENT)
    hyb = ", ".join(f"{v} {figures[HYBRID[v]]:.3f}" for v in INPUT_INDEPENDENT)
    summary = (
        f"Copy-half loss after {b['steps']} steps (chain entropy H = {h:.3f} nats): standard {std:.3f}, no mixing "
        f"{figures[NO_MIX]:.3f}; alone {uni}; in a hybrid {hyb}; the hybrid's standard layers alone "
        f"{evals['standard layers alone']['copy_loss']:.3f}. (A) no mixing >= {NO_MIX_FRACTION} H: {a}; (B) "
        f"input-independent alone >= standard + {ALONE_MARGIN}: {bb}; (C) hybrids <= standard + {HYBRID_SLACK}: {c}. "
        f"{b['depth']} layers, d={b['dim']}, one seed, one LR for every arm."
    )
    return ReproOutcome(measured, summary)
