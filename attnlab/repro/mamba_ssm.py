"""Reproduction ``mamba_ssm`` (P23, the SSM survey; the claim is Mamba's, Gu & Dao 2023, Table 1).

Claim: selection (input-dependent Delta, B, C) lets an SSM solve *selective copying*
(data tokens at random positions among noise must be output in order), which a
time-invariant SSM or long convolution cannot do with the same architecture.

Setting (CPU scale): task ``selective_copying`` (vocab 10: 8 data tokens + noise +
marker; 8 tokens to copy; sequence 64, i.e. 56 context positions + 8 markers), 2-layer
causal ``SequenceModel``s (d = 64, the Mamba paper's selective-copying models have 2
layers too), trained identically (steps, batch, LR, seed) with the token mixers:

* ``mamba`` — the Mamba block with the selective scan (S6);
* ``s4d`` — the same block with a time-invariant diagonal SSM (S4D-real, FFT kernel):
  the paper's "Mamba architecture with S4" row;
* ``hyena`` — Hyena (long implicit convolution with data-dependent gating).

Measured: copy accuracy on validation batches after training, and its curve
(plot ``mamba_selective_copy.png``).

Verdict rule: holds if acc(mamba) >= 0.90 and acc(mamba) >= max(acc(s4d), acc(hyena)) + 0.20;
does not hold if acc(mamba) <= max(acc(s4d), acc(hyena)) + 0.05; inconclusive otherwise.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.plots import plot_curves
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P23"
CLAIM = (
    "A selective SSM (Mamba's S6: input-dependent Delta, B, C) solves selective copying, which a "
    "time-invariant SSM (S4D) or a long convolution (Hyena) in the same architecture does not."
)

QUICK = dict(steps=40, batch_size=32, eval_batches=2, dim=32, seq_len=32, num_tokens=4)
FULL = dict(steps=800, batch_size=64, eval_batches=4, dim=64, seq_len=64, num_tokens=8)
MODELS = {"mamba (S6, selective)": "mamba", "s4d (LTI SSM)": "s4d", "hyena (long conv)": "hyena"}

#: thresholds of the verdict rule
SOLVED = 0.90
MARGIN = 0.20
NO_GAP = 0.05

ACCURACY = "copy accuracy: {}"  # per arm
MAMBA, S4D, HYENA = (ACCURACY.format(label) for label in MODELS)
FIGURES = (MAMBA, S4D, HYENA)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    sel, best_other = figures[MAMBA], max(figures[S4D], figures[HYENA])
    if sel >= SOLVED and sel >= best_other + MARGIN:
        return HOLDS
    if sel <= best_other + NO_GAP:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def run(ctx):
    """Train the three models on selective copying; record each one's final copy accuracy."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget
    task = create_task("selective_copying", vocab_size=10, seq_len=b["seq_len"], num_tokens=b["num_tokens"],
                       seed=ctx.seed)
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=3e-3, warmup_steps=min(30, b["steps"] // 5),
                      eval_every=max(b["steps"] // 6, 10), eval_batches=b["eval_batches"],
                      log_every=max(b["steps"] // 10, 1), seed=ctx.seed)
    arms = [mixer_arm(label, mixer, dim=b["dim"], depth=2) for label, mixer in MODELS.items()]
    res = train_arms(task, arms, cfg, seed=ctx.seed, progress=ctx.progress)
    chance = 1 / (task.vocab_size - 2)
    plot_curves(ctx, res.curves, "mamba_selective_copy.png", final=res.final, ylabel="validation copy accuracy",
                chance=chance, title="Selective copying: selective vs time-invariant")
    figures = {ACCURACY.format(k): v for k, v in res.final.items()}
    measured = {"metric": task.metric, "final": {k: round(v, 4) for k, v in res.final.items()}, "curves": res.curves,
                "params": res.params, "train_seconds": res.seconds, "train_cpu_seconds": res.cpu_seconds,
                "steps": b["steps"], **figures}
    summary = (
        f"copy accuracy after {b['steps']} steps: Mamba (S6) {figures[MAMBA]:.3f}, S4D (LTI) {figures[S4D]:.3f}, "
        f"Hyena {figures[HYENA]:.3f} (chance {chance:.3f}). Rule: S6 >= {SOLVED} and >= best LTI + {MARGIN}. "
        f"2 layers, d={b['dim']}, sequence {task.seq_len}: far shorter than the paper's 4096."
    )
    return ReproOutcome(measured, summary)
