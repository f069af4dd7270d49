"""Reproduction ``deltanet`` (P12: Yang et al., NeurIPS 2024) on associative recall.

Setting (CPU scale, from the research notes): multi-query associative recall (task
``associative_recall``), 2-layer causal ``SequenceModel``s, d = 64, 4 heads, trained
identically (same steps, batch, LR, seed) with these token mixers:

* ``linear_attention`` — plain linear attention (elu+1, normalised), the same
  d_h x d_h state per head as DeltaNet;
* ``deltanet`` — the delta rule (P12 layer);
* ``deltanet,softmax`` — the hybrid: DeltaNet layer then a global softmax layer (P12 Sec. 5);
* ``deltanet,sliding_window`` — the other P12 hybrid: DeltaNet and sliding-window attention
  layers alternating (window ``SWA_WINDOW`` = 16 tokens, a quarter of the sequence, so that
  the window alone cannot reach the key-value pairs); included when the ``sliding_window``
  mixer is registered, otherwise skipped with the reason in ``measured["skipped"]``;
* ``softmax`` — softmax attention, the upper reference.

Measured: the task metric (recall accuracy) on validation batches after training,
and its curve over training (plot ``deltanet_recall.png``).

Verdict rule: (A) DeltaNet beats linear attention by at least 0.10 accuracy, and
(B) every hybrid closes the gap to softmax: acc(hybrid) >= acc(softmax) - 0.05, or its
gap is at most half of DeltaNet's gap. Both -> holds; neither -> does not hold at
this scale; one -> inconclusive.
"""
from __future__ import annotations

from attnlab.utils.threads import single_threaded
from attnlab.repro._sequence_arms import plot_curves, train_arms
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P12"
CLAIM = (
    "DeltaNet (the delta rule, parallelised over sequence length) recalls associations far better than "
    "linear attention with the same state size, and hybrids with a few softmax/sliding-window layers "
    "close the remaining gap to (or beat) softmax Transformers."
)

#: window of the sliding-window layers of the second hybrid (the recall sequence is 64 tokens)
SWA_WINDOW = 16

MODELS = {
    "linear_attention": ("linear_attention", {}),
    "deltanet": ("deltanet", {}),
    "hybrid deltanet+softmax": ("deltanet,softmax", {}),
    "hybrid deltanet+sliding window": ("deltanet,sliding_window", {"sliding_window": {"window": SWA_WINDOW}}),
    "softmax": ("softmax", {}),
}
HYBRIDS = ("hybrid deltanet+softmax", "hybrid deltanet+sliding window")

#: thresholds of the verdict rule
MARGIN_OVER_LINEAR = 0.10
HYBRID_SLACK = 0.05


def _make_task(quick: bool, seed: int):
    from attnlab.tasks import create as create_task

    return create_task("associative_recall", vocab_size=64 if quick else 128, seq_len=32 if quick else 64,
                       num_pairs=4 if quick else 8, seed=seed)


def _models(quick: bool) -> tuple[dict, dict]:
    """The arms that can run here and the ones skipped (with the reason)."""
    import attnlab.mixers as mixers

    names = {i.name for i in mixers.available()}
    arms, skipped = {}, {}
    for label, (mixer, kw) in MODELS.items():
        missing = [m for m in mixer.split(",") if m not in names]
        if missing:
            skipped[label] = f"mixer(s) {missing} not registered"
            continue
        if quick and "sliding_window" in kw:
            kw = {"sliding_window": {"window": SWA_WINDOW // 2}}  # quick sequences are half as long
        arms[label] = (mixer, kw)
    return arms, skipped


@single_threaded
def run(ctx: ReproContext) -> ReproOutcome:
    """Train the models on associative recall and judge (A) and (B); see the module docstring."""
    from attnlab.train import TrainConfig

    task = _make_task(ctx.quick, ctx.seed)
    steps = 60 if ctx.quick else 800
    cfg = TrainConfig(
        steps=steps, batch_size=32 if ctx.quick else 64, lr=3e-3, warmup_steps=min(50, steps // 5),
        eval_every=max(steps // 8, 10), eval_batches=2 if ctx.quick else 4, log_every=max(steps // 10, 1), seed=ctx.seed,
    )
    metric = task.metric
    arms, skipped = _models(ctx.quick)
    res = train_arms(task, arms, cfg, ctx, dim=32 if ctx.quick else 64, depth=2, num_heads=4)
    acc, curves, secs, cpu, params = res.final, res.curves, res.seconds, res.cpu_seconds, res.params

    lin, dn, sm = acc["linear_attention"], acc["deltanet"], acc["softmax"]
    hybrids = {k: acc[k] for k in HYBRIDS if k in acc}
    a_ok = dn >= lin + MARGIN_OVER_LINEAR
    b_each = {k: h >= sm - HYBRID_SLACK or (sm - h) <= 0.5 * max(sm - dn, 0.0) for k, h in hybrids.items()}
    b_ok = bool(b_each) and all(b_each.values())
    verdict = HOLDS if a_ok and b_ok else DOES_NOT_HOLD if not (a_ok or b_ok) else INCONCLUSIVE

    plots = plot_curves(ctx, res, ylabel=f"validation {metric}", title="P12: associative recall, 2 layers",
                        filename="deltanet_recall.png")

    measured = {
        "metric": metric,
        "final": {k: round(v, 4) for k, v in acc.items()},
        "curves": {k: v for k, v in curves.items()},
        "params": params,
        "train_seconds": secs,
        "train_cpu_seconds": cpu,
        "steps": steps,
        "skipped": skipped,
        "A_deltanet_beats_linear": a_ok,
        "B_hybrid_closes_gap": b_each,
    }
    hyb_txt = ", ".join(f"{k.removeprefix('hybrid ')} {v:.3f}" for k, v in hybrids.items())
    summary = (
        f"{metric} after {steps} steps: linear attention {lin:.3f}, DeltaNet {dn:.3f}, hybrids {hyb_txt}, "
        f"softmax {sm:.3f}. (A) DeltaNet >= linear + {MARGIN_OVER_LINEAR}: {a_ok}; (B) every hybrid within "
        f"{HYBRID_SLACK} of softmax or half of DeltaNet's gap: {b_ok}. 2 layers, d={'32' if ctx.quick else '64'}: "
        "far below the paper's 1.3B scale." + (f" Skipped: {skipped}." if skipped else "")
    )
    return ReproOutcome(measured=measured, verdict=verdict, summary=summary, plots=plots)
