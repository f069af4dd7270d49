"""Reproduction ``deltanet`` (P12: Yang et al., NeurIPS 2024) on associative recall.

Setting (CPU scale, from the research notes): multi-query associative recall (task
``associative_recall``), 2-layer causal ``SequenceModel``s, d = 64, 4 heads, trained
identically (same steps, batch, LR, seed) with these token mixers:

* ``linear_attention`` — plain linear attention (elu+1, normalised), the same
  d_h x d_h state per head as DeltaNet;
* ``deltanet`` — the delta rule (P12 layer);
* ``deltanet,softmax`` — the hybrid: DeltaNet layer then a global softmax layer (P12 Sec. 5);
* ``deltanet,sliding_window`` — the other P12 hybrid: DeltaNet and sliding-window attention
  layers alternating (window 16 tokens, a quarter of the sequence, so that the window alone
  cannot reach the key-value pairs; 8 in the quick run's half-length sequences);
* ``softmax`` — softmax attention, the upper reference.

Protocol (``attnlab.repro.harness.protocol``): each arm at its own LR from a sweep over
1e-3 / 3e-3 / 1e-2 at the full 800 steps on the val split, then three seeds (each its own
initialisation and data). The sweep runs at the full budget because recall is learned late: in the
campaign run with the sweep at 200 steps (2026-12-05) no arm had left chance by step 200, the
lowest loss there picked 1e-2 for softmax, and softmax then stayed at chance for all 800 steps on
every seed (before the protocol it solved the task at 3e-3), so part (B) compared the hybrids with
a baseline that never had a fair chance. Measured: recall accuracy on test batches after training (means over
seeds with 95 % t intervals), and its curve over training (seed 0; plot ``deltanet_recall.png``).

Verdict rule (written before the run): if every arm learned nothing at any LR tried (recall
within 5 points of 1 / num_pairs, guessing among the context's values), inconclusive; if
DeltaNet or a hybrid learned nothing while another arm did, does not hold. Otherwise two parts,
seed by seed: (A) DeltaNet's accuracy minus linear attention's above 0.10; (B) for every hybrid,
its shortfall = (softmax - hybrid) - max(0.05, half of (softmax - DeltaNet)) below 0 (it is within
0.05 of softmax, or closes at least half of DeltaNet's gap to it). A part holds if its
interval(s) clear the margin and does not hold if an interval lies on the wrong side; (A) and (B)
both hold -> holds; both do not -> does not hold at this scale; anything else -> inconclusive.
"""
from __future__ import annotations

from attnlab.repro.harness.arms import mixer_arm
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.plots import plot_curves
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import all_parts, chance_rule, clears, unanimous
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P12"
CLAIM = (
    "DeltaNet (the delta rule, parallelised over sequence length) recalls associations far better than "
    "linear attention with the same state size, and hybrids with a few softmax/sliding-window layers "
    "close the remaining gap to (or beat) softmax Transformers."
)

QUICK = dict(steps=30, batch_size=16, eval_batches=2, dim=32, vocab_size=64, seq_len=32, num_pairs=4, window=8,
             protocol=Protocol(lrs=(3e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
FULL = dict(steps=800, batch_size=64, eval_batches=4, dim=64, vocab_size=128, seq_len=64, num_pairs=8, window=16,
            protocol=Protocol(lrs=(1e-3, 3e-3, 1e-2), sweep_fraction=1.0))

#: margins of the verdict rule
MARGIN_OVER_LINEAR = 0.10
HYBRID_SLACK = 0.05
CHANCE_MARGIN = 0.05

ARMS = ("linear_attention", "deltanet", "hybrid deltanet+softmax", "hybrid deltanet+sliding window", "softmax")
HYBRIDS = ARMS[2:4]
OVER_LINEAR = "recall accuracy: deltanet - linear_attention"
SHORTFALL = "hybrid shortfall beyond its allowance: {}"  # per hybrid
FIGURES = (OVER_LINEAR, *(SHORTFALL.format(h) for h in HYBRIDS), AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES``."""
    return chance_rule(figures[AT_CHANCE], ARMS, counts_against=("deltanet", *HYBRIDS)) or unanimous(
        clears(figures[OVER_LINEAR], MARGIN_OVER_LINEAR),
        all_parts(*(clears(figures[SHORTFALL.format(h)], 0.0, above=False) for h in HYBRIDS)))


def shortfall(hybrid: float, deltanet: float, softmax: float) -> float:
    """How far a hybrid falls short of closing the gap to softmax: (softmax - hybrid) minus its allowance, the
    larger of HYBRID_SLACK and half of DeltaNet's gap to softmax (<= 0: it closes the gap)."""
    return (softmax - hybrid) - max(HYBRID_SLACK, 0.5 * max(softmax - deltanet, 0.0))


def run(ctx):
    """Train the five models on associative recall under the protocol; record the figures of (A) and (B)."""
    from attnlab.tasks import create as create_task
    from attnlab.train import TrainConfig

    b = ctx.budget

    def make_task(seed: int):
        return create_task("associative_recall", vocab_size=b["vocab_size"], seq_len=b["seq_len"],
                           num_pairs=b["num_pairs"], seed=seed)

    template = TrainConfig(steps=b["steps"], batch_size=b["batch_size"], lr=3e-3, warmup_steps=min(50, b["steps"] // 5),
                           eval_every=max(b["steps"] // 8, 10), eval_batches=b["eval_batches"],
                           log_every=max(b["steps"] // 10, 1))
    model = dict(dim=b["dim"], depth=2, num_heads=4)
    arms = [mixer_arm("linear_attention", "linear_attention", **model), mixer_arm("deltanet", "deltanet", **model),
            mixer_arm(HYBRIDS[0], "deltanet,softmax", **model),
            mixer_arm(HYBRIDS[1], "deltanet,sliding_window", {"sliding_window": {"window": b["window"]}}, **model),
            mixer_arm("softmax", "softmax", **model)]
    fair = train_fair(arms, make_task, template, b["protocol"], seed=ctx.seed, progress=ctx.progress,
                      name="associative_recall", chance=Chance(1 / b["num_pairs"], CHANCE_MARGIN))
    acc = {a: fair.values(a) for a in ARMS}
    figures = {OVER_LINEAR: fair.difference("deltanet", "linear_attention"), **at_chance_figure(fair),
               **{SHORTFALL.format(h): t_interval([shortfall(*x) for x in zip(acc[h], acc["deltanet"], acc["softmax"])])
                  for h in HYBRIDS}}
    plot_curves(ctx, {a: fair.runs[a][0].curve for a in ARMS}, "deltanet_recall.png",
                final={a: fair.runs[a][0].metric for a in ARMS}, ylabel="validation accuracy (seed 0)",
                title="P12: associative recall, 2 layers")
    measured = {**{f"recall accuracy: {a}": fair.interval(a) for a in ARMS}, **figures,
                "lr": fair.lr, "steps": b["steps"]}
    accs = ", ".join(f"{a} {fair.interval(a).text(3)}" for a in ARMS)
    summary = (
        f"Test recall accuracy after {b['steps']} steps, each arm at its own LR (95 % intervals over seeds "
        f"{list(b['protocol'].seeds)}): {accs}. (A) DeltaNet - linear {figures[OVER_LINEAR].text(3)} (margin "
        f"{MARGIN_OVER_LINEAR}); (B) hybrid shortfalls "
        + ", ".join(f"{h.removeprefix('hybrid ')} {figures[SHORTFALL.format(h)].text(3)}" for h in HYBRIDS)
        + f" (margin 0). 2 layers, d={b['dim']}: far below the paper's 1.3B scale."
    )
    return ReproOutcome(measured, summary, {f"recall accuracy: {a}": acc[a] for a in ARMS}, protocol=[fair.record()])
