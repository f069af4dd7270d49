"""Reproduction ``mamba_ssm`` (P23, the SSM survey; the claim is Mamba's, Gu & Dao 2023, Table 1).

Claim: selection (input-dependent Delta, B, C) lets an SSM solve *selective copying*
(data tokens at random positions among noise must be output in order), which a
time-invariant SSM or long convolution cannot do with the same architecture.

Setting (CPU scale): task ``selective_copying`` (vocab 10: 8 data tokens + noise +
marker; 8 tokens to copy; sequence 64, i.e. 56 context positions + 8 markers), 2-layer
causal ``SequenceModel``s (d = 64, the Mamba paper's selective-copying models have 2
layers too), trained alike (steps, batch, seeds; each at its own LR) with the token mixers:

* ``mamba`` — the Mamba block with the selective scan (S6);
* ``s4d`` — the same block with a time-invariant diagonal SSM (S4D-real, FFT kernel):
  the paper's "Mamba architecture with S4" row;
* ``hyena`` — Hyena (long implicit convolution with data-dependent gating).

Protocol (``attnlab.repro.harness.protocol``): each arm at its own LR from a sweep over
1e-3 / 3e-3 / 1e-2 at 200 of the 800 steps on the val split, then three seeds. Measured: copy
accuracy on test batches after training (means over seeds with 95 % t intervals), and its
curve (seed 0; plot ``mamba_selective_copy.png``).

Verdict rule (written before the run): inconclusive if all three learned nothing at any LR tried
(copy accuracy within 5 points of chance, 1/8); does not hold if Mamba learned nothing while an
LTI model did; otherwise two parts, both needed, seed by seed: Mamba's accuracy above 0.90
(solved) and Mamba minus the better LTI model (by mean) above 0.20. Holds if both intervals
clear their margins, does not hold if either lies on the wrong side, else inconclusive.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import mixer_arm
from attnlab.repro.harness.plots import plot_curves
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import all_parts, chance_rule, clears
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P23"
CLAIM = (
    "A selective SSM (Mamba's S6: input-dependent Delta, B, C) solves selective copying, which a "
    "time-invariant SSM (S4D) or a long convolution (Hyena) in the same architecture does not."
)

QUICK = dict(steps=30, batch_size=16, eval_batches=2, dim=32, seq_len=32, num_tokens=4,
             protocol=Protocol(lrs=(3e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
FULL = dict(steps=800, batch_size=64, eval_batches=4, dim=64, seq_len=64, num_tokens=8,
            protocol=Protocol(lrs=(1e-3, 3e-3, 1e-2)))
MODELS = {"mamba (S6, selective)": "mamba", "s4d (LTI SSM)": "s4d", "hyena (long conv)": "hyena"}
MAMBA_ARM, LTI_ARMS = "mamba (S6, selective)", ("s4d (LTI SSM)", "hyena (long conv)")

#: margins of the verdict rule
SOLVED = 0.90
MARGIN = 0.20
CHANCE_MARGIN = 0.05

MAMBA = "copy accuracy: mamba (S6, selective)"
OVER_LTI = "copy accuracy: mamba - best LTI"
FIGURES = (MAMBA, OVER_LTI, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], MODELS, counts_against=(MAMBA_ARM,)) \
        or all_parts(clears(figures[MAMBA], SOLVED), clears(figures[OVER_LTI], MARGIN))


def run(ctx):
    """Train the three models on selective copying under the protocol; record Mamba's accuracy and margin."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget

    def make_task(seed: int):
        return create_task("selective_copying", vocab_size=10, seq_len=b["seq_len"], num_tokens=b["num_tokens"],
                           seed=seed)

    template = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=3e-3, warmup_steps=min(30, b["steps"] // 5),
                           eval_every=max(b["steps"] // 6, 10), eval_batches=b["eval_batches"],
                           log_every=max(b["steps"] // 10, 1))
    arms = [mixer_arm(label, mixer, dim=b["dim"], depth=2) for label, mixer in MODELS.items()]
    chance = 1 / (10 - 2)
    fair = train_fair(arms, make_task, template, b["protocol"], seed=ctx.seed, progress=ctx.progress,
                      name="selective_copying", chance=Chance(chance, CHANCE_MARGIN))
    best_lti = fair.best(LTI_ARMS)
    figures = {MAMBA: fair.interval(MAMBA_ARM), OVER_LTI: fair.difference(MAMBA_ARM, best_lti),
               **at_chance_figure(fair)}
    plot_curves(ctx, {a: fair.runs[a][0].curve for a in MODELS}, "mamba_selective_copy.png",
                final={a: fair.runs[a][0].metric for a in MODELS}, ylabel="validation copy accuracy (seed 0)",
                chance=chance, title="Selective copying: selective vs time-invariant")
    measured = {**{f"copy accuracy: {a}": fair.interval(a) for a in MODELS}, **figures, "best LTI": best_lti,
                "lr": fair.lr, "steps": b["steps"]}
    accs = ", ".join(f"{a} {fair.interval(a).text(3)}" for a in MODELS)
    summary = (
        f"Test copy accuracy after {b['steps']} steps, each arm at its own LR (95 % intervals over seeds "
        f"{list(b['protocol'].seeds)}; chance {chance:.3f}): {accs}; Mamba - {best_lti} {figures[OVER_LTI].text(3)}. "
        f"Rule: Mamba above {SOLVED} and above the best LTI + {MARGIN}. 2 layers, d={b['dim']}, sequence "
        f"{b['seq_len']}: far shorter than the paper's 4096."
    )
    return ReproOutcome(measured, summary, {f"copy accuracy: {a}": fair.values(a) for a in MODELS},
                        protocol=[fair.record()])
