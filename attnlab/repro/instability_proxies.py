"""P02 (Wortsman et al., ICLR 2024): small-scale proxies for large-scale training instabilities.

Setting (CPU scale): a pre-LN causal transformer (``attnlab.models.SequenceModel``,
2 layers, d=128, 4 heads) trained on the character-level LM task ``char_lm`` with
P02's optimiser (AdamW, betas (0.9, 0.95), eps 1e-8, grad clip 1, linear warm-up +
cosine, weight decay 1e-4 independent of the LR), over a log-spaced LR grid, for

- ``baseline``: softmax attention (mixer ``"softmax"``);
- ``qk_layernorm``: LayerNorm over each head's d_h on queries and keys (``"softmax_qknorm"``);
- ``baseline+z_loss``: baseline plus the output-logit z-loss 1e-4 * log^2 Z (full run only).

(``qk_layernorm+z_loss`` is defined in CONFIGS but left out of the default grid to
keep the full run within 10 minutes on a shared 2-core machine.) The sweep runs
torch on one thread: on a loaded 2-core machine a second intra-op thread made
these small steps several times slower (measured 0.60 vs 0.11 s/step).

Measured per configuration and LR: the final validation loss, the max |attention
logit| (``attnlab.analysis.max_attention_logit``) and the mean output log Z
(``attnlab.analysis.output_log_z``) of the trained model; per configuration, P02's
LR sensitivity (``attnlab.analysis.lr_sensitivity``, init loss as the cap).

Verdict rule (on the qk-layernorm claim, the one this scale can test):
  (i)  ``sens(qk_layernorm) < 0.7 * sens(baseline)``, and
  (ii) ``max_logit(baseline, top LR) > 10 * max_logit(qk_layernorm, top LR)``.
Both -> holds; neither -> does not hold at this scale; one -> inconclusive.
The z-loss part is reported beside it (sensitivity and log Z with vs without
z-loss) and not folded into the verdict: P02 finds output-logit divergence
mainly without weight decay and at larger scale, and our research notes found
no divergence at this size, so the summary says plainly whether any effect shows.
"""
from __future__ import annotations

import inspect
import math
import time

import torch

from attnlab.utils.threads import torch_threads
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ReproContext, ReproOutcome

PAPER = "P02"
CLAIM = (
    "Training instabilities of large Transformers (attention-logit growth, output-logit divergence) "
    "appear in small models at high learning rates; qk-layernorm (and the z-loss) mitigate them and "
    "make the final loss much less sensitive to the learning rate."
)

#: the verdict's thresholds
SENS_RATIO_MAX = 0.7
LOGIT_RATIO_MIN = 10.0

FULL = dict(lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1), steps=200, warmup=20, batch_size=32, seq_len=64, dim=128,
            depth=2, heads=4, configs=("baseline", "qk_layernorm", "baseline+z_loss"))
QUICK = dict(lrs=(3e-3, 3e-2, 3e-1), steps=80, warmup=8, batch_size=16, seq_len=32, dim=64, depth=2, heads=4,
             configs=("baseline", "qk_layernorm"))
CONFIGS = {  # name -> (mixer, z-loss coefficient)
    "baseline": ("softmax", 0.0),
    "qk_layernorm": ("softmax_qknorm", 0.0),
    "baseline+z_loss": ("softmax", 1e-4),
    "qk_layernorm+z_loss": ("softmax_qknorm", 1e-4),
}
WEIGHT_DECAY = 1e-4  # P02, "independent" of the LR


def _make_task(seed: int, seq_len: int):
    from attnlab.tasks import available, create

    if "char_lm" not in available():
        raise RuntimeError("instability_proxies needs the task 'char_lm' (attnlab.tasks), which is not registered")
    params = inspect.signature(available()["char_lm"].__init__).parameters
    return create("char_lm", seed=seed, **({"seq_len": seq_len} if "seq_len" in params else {}))


def _make_model(mixer: str, vocab_size: int, seq_len: int, dim: int, depth: int, heads: int):
    from attnlab.models import SequenceModel

    return SequenceModel(vocab_size=vocab_size, dim=dim, depth=depth, num_heads=heads, mixer=mixer, head="lm",
                         max_len=seq_len, causal=True)


def decide(measured: dict) -> str:
    """The verdict from the measured figures, by the rule in the module docstring."""
    sens_ok = measured["sensitivity_ratio_qkln_over_baseline"] < SENS_RATIO_MAX
    logit_ok = measured["max_logit_ratio_baseline_over_qkln_at_top_lr"] > LOGIT_RATIO_MIN
    if sens_ok and logit_ok:
        return HOLDS
    if not sens_ok and not logit_ok:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if b == 0:
        return math.inf if a > 0 else 1.0
    return a / b


def _plot(path, lrs, results: dict, init_loss: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, r in results.items():
        style = "--" if "z_loss" in name else "-"
        axes[0].plot(lrs, [min(v, init_loss) if math.isfinite(v) else init_loss for v in r["final_loss"]], style, marker="o", label=name)
        axes[1].plot(lrs, r["max_attention_logit"], style, marker="o", label=name)
        axes[2].plot(lrs, r["log_z"], style, marker="o", label=name)
    axes[0].axhline(init_loss, color="grey", lw=0.8, ls=":", label="loss at init")
    for ax, title, ylabel in zip(
        axes,
        ("final val loss vs LR", "max |attention logit| vs LR", "output log Z vs LR"),
        ("final loss (capped at init; diverged = init)", "max |q.k|/sqrt(d_h)", "mean logsumexp(logits)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("P02 instability proxies: pre-LN transformer on char_lm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep(p: dict, task, fresh, probe, init_loss: float, ctx: ReproContext) -> dict[str, dict]:
    """Train every (configuration, LR); per configuration the lists over LRs and the LR sensitivity."""
    from attnlab.analysis import lr_sensitivity, max_attention_logit, output_log_z
    from attnlab.train import TrainConfig, train

    results: dict[str, dict] = {}
    for name in p["configs"]:
        mixer, zcoef = CONFIGS[name]
        r = {"final_loss": [], "max_attention_logit": [], "log_z": [], "diverged": []}
        for lr in p["lrs"]:
            model = fresh(mixer)
            cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=lr, warmup_steps=p["warmup"],
                              weight_decay=WEIGHT_DECAY, wd_mode="independent", z_loss=zcoef,
                              eval_every=0, eval_batches=4, log_every=max(p["steps"] // 20, 1), seed=ctx.seed)
            res = train(model, task, cfg, progress=ctx.progress)
            # P02 counts a diverged run as the loss at init; lr_sensitivity does that for NaN.
            r["final_loss"].append(math.nan if res.diverged else float(res.final_eval["loss"]))
            r["max_attention_logit"].append(float(max_attention_logit(model, probe)))
            r["log_z"].append(float(output_log_z(model, probe)))
            r["diverged"].append(bool(res.diverged))
        r["lr_sensitivity"] = lr_sensitivity(dict(zip(p["lrs"], r["final_loss"])), init_loss)
        results[name] = r
    return results


def run(ctx: ReproContext) -> ReproOutcome:
    """Sweep LR x {baseline, qk-layernorm} (x z-loss); measure losses, logits, sensitivity; decide."""
    from attnlab.train import evaluate

    p = QUICK if ctx.quick else FULL
    task = _make_task(ctx.seed, p["seq_len"])
    vocab = task.spec.vocab_size
    probe = task.batch("val", 0, 16).inputs
    t_start = time.perf_counter()

    def fresh(mixer):
        torch.manual_seed(ctx.seed)  # same initial weights for every LR of a configuration
        return _make_model(mixer, vocab, p["seq_len"], p["dim"], p["depth"], p["heads"])

    with torch_threads(1):  # small steps: a second intra-op thread is slower on the shared 2-core box
        init_loss = evaluate(fresh("softmax"), task, batches=4, batch_size=p["batch_size"])["loss"]
        results = _sweep(p, task, fresh, probe, init_loss, ctx)
    seconds = time.perf_counter() - t_start

    base, qk = results["baseline"], results["qk_layernorm"]
    top = -1
    measured = {
        "lrs": list(p["lrs"]),
        "init_loss": init_loss,
        "steps": p["steps"],
        "model": f"pre-LN SequenceModel dim={p['dim']} depth={p['depth']} heads={p['heads']}, seq {p['seq_len']}, batch {p['batch_size']}",
        **{f"final_loss[{n}]": r["final_loss"] for n, r in results.items()},
        **{f"max_attention_logit[{n}]": r["max_attention_logit"] for n, r in results.items()},
        **{f"log_z[{n}]": r["log_z"] for n, r in results.items()},
        **{f"diverged[{n}]": r["diverged"] for n, r in results.items()},
        **{f"lr_sensitivity[{n}]": r["lr_sensitivity"] for n, r in results.items()},
        "sensitivity_ratio_qkln_over_baseline": _ratio(qk["lr_sensitivity"], base["lr_sensitivity"]),
        "max_logit_ratio_baseline_over_qkln_at_top_lr": _ratio(base["max_attention_logit"][top], qk["max_attention_logit"][top]),
        "sweep_seconds": seconds,
    }
    if "baseline+z_loss" in results:
        bz = results["baseline+z_loss"]
        measured["sensitivity_ratio_zloss_over_baseline"] = _ratio(bz["lr_sensitivity"], base["lr_sensitivity"])
        measured["log_z_at_top_lr[baseline, baseline+z_loss]"] = [base["log_z"][top], bz["log_z"][top]]
    verdict = decide(measured)

    plot = ctx.path("lr_sweep.png")
    _plot(plot, list(p["lrs"]), results, init_loss)

    lr_top = p["lrs"][top]
    summary = (
        f"{len(p['configs'])} configurations x {len(p['lrs'])} peak LRs ({p['lrs'][0]:g}..{lr_top:g}), {p['steps']} steps each "
        f"on char_lm ({measured['model']}). LR sensitivity: baseline {base['lr_sensitivity']:.3f}, qk-layernorm "
        f"{qk['lr_sensitivity']:.3f} (ratio {measured['sensitivity_ratio_qkln_over_baseline']:.2f}; rule < {SENS_RATIO_MAX}). "
        f"Max attention logit at LR {lr_top:g}: baseline {base['max_attention_logit'][top]:.3g}, qk-layernorm "
        f"{qk['max_attention_logit'][top]:.3g} (ratio {measured['max_logit_ratio_baseline_over_qkln_at_top_lr']:.3g}; "
        f"rule > {LOGIT_RATIO_MIN:g})."
    )
    if "baseline+z_loss" in results:
        bz = results["baseline+z_loss"]
        zr = measured["sensitivity_ratio_zloss_over_baseline"]
        effect = "a lower" if zr < SENS_RATIO_MAX else "no clearly lower"
        summary += (
            f" z-loss (1e-4): baseline+z-loss sensitivity {bz['lr_sensitivity']:.3f} (ratio {zr:.2f} to baseline: {effect} "
            f"sensitivity); output log Z at the top LR {base['log_z'][top]:.2f} without vs {bz['log_z'][top]:.2f} with z-loss. "
            "Output-logit divergence, which the z-loss targets, "
            + ("did occur in the baseline" if any(base["diverged"]) else "did not occur (no baseline run diverged)")
            + " at this scale."
        )
    if ctx.quick:
        summary += " Quick mode: tiny model and 3 LRs, a smoke test of the pipeline, not evidence."
    summary += (" Deviations from P02: character-level text instead of C4, "
                f"{p['steps']} steps, one seed, SequenceModel's biases kept.")
    return ReproOutcome(measured=measured, verdict=verdict, summary=summary, plots=[str(plot)])
