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

import time

import torch

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


def _curve(result, metric):
    """(step, metric) pairs from a TrainResult's evals, whatever container they come in."""
    evals = getattr(result, "evals", None) or []
    items = evals.items() if isinstance(evals, dict) else enumerate(evals)
    pts = []
    for key, ev in items:
        if isinstance(ev, dict) and metric in ev:
            pts.append((int(ev.get("step", key)), float(ev[metric])))
    return pts


def run(ctx: ReproContext) -> ReproOutcome:
    """Train the four models on associative recall and judge (A) and (B); see the module docstring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: a second intra-op thread is slower on the shared 2-core box
    try:
        return _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: ReproContext) -> ReproOutcome:
    from attnlab.models import build_for_task
    from attnlab.train import TrainConfig, train

    task = _make_task(ctx.quick, ctx.seed)
    steps = 60 if ctx.quick else 800
    cfg = TrainConfig(
        steps=steps, batch_size=32 if ctx.quick else 64, lr=3e-3, warmup_steps=min(50, steps // 5),
        eval_every=max(steps // 8, 10), eval_batches=2 if ctx.quick else 4, log_every=max(steps // 10, 1), seed=ctx.seed,
    )
    metric = task.metric
    arms, skipped = _models(ctx.quick)
    acc, curves, secs, cpu, params = {}, {}, {}, {}, {}
    for label, (mixer, mixer_kwargs) in arms.items():
        torch.manual_seed(ctx.seed)
        model = build_for_task(task.spec, mixer=mixer, dim=32 if ctx.quick else 64, depth=2, num_heads=4,
                               mixer_kwargs=mixer_kwargs or None)
        params[label] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(model, task, cfg, progress=ctx.progress)
        secs[label], cpu[label] = round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1)
        acc[label] = float(res.final_eval[metric])
        curves[label] = _curve(res, metric)

    lin, dn, sm = acc["linear_attention"], acc["deltanet"], acc["softmax"]
    hybrids = {k: acc[k] for k in HYBRIDS if k in acc}
    a_ok = dn >= lin + MARGIN_OVER_LINEAR
    b_each = {k: h >= sm - HYBRID_SLACK or (sm - h) <= 0.5 * max(sm - dn, 0.0) for k, h in hybrids.items()}
    b_ok = bool(b_each) and all(b_each.values())
    verdict = HOLDS if a_ok and b_ok else DOES_NOT_HOLD if not (a_ok or b_ok) else INCONCLUSIVE

    plots = []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, pts in curves.items():
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{label} ({acc[label]:.2f})")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title("P12: associative recall, 2 layers")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = ctx.path("deltanet_recall.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        plots.append(str(path))
    except ImportError:
        pass

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
