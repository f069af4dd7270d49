"""P02 (Wortsman et al., ICLR 2024): small-scale proxies for large-scale training instabilities.

Setting (CPU scale): a pre-LN causal transformer (``attnlab.models.SequenceModel``,
2 layers, d=128, 4 heads) trained on the character-level LM task ``char_lm`` with
P02's optimiser (AdamW, betas (0.9, 0.95), eps 1e-8, grad clip 1, linear warm-up +
cosine, weight decay 1e-4 independent of the LR), over a log-spaced LR grid, for

- ``baseline``: softmax attention (mixer ``"softmax"``);
- ``qk_layernorm``: LayerNorm over each head's d_h on queries and keys (``"softmax_qknorm"``);
- ``baseline+z_loss``: baseline plus the output-logit z-loss 1e-4 * log^2 Z (full run only).

(``qk_layernorm+z_loss`` is defined in CONFIGS but left out of the default grid to
keep the full run within 10 minutes on a shared 2-core machine.)

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
Deviations from P02: character-level text instead of C4, 200 steps, one seed,
SequenceModel's biases kept.
"""
from __future__ import annotations

import math

import torch

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.plots import plot_lines, pyplot
from attnlab.repro.harness.rules import two_parts
from attnlab.repro.harness.runner import ReproOutcome
from attnlab.repro.harness.sweep import lr_sweep

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

SENS_RATIO = "sensitivity_ratio_qkln_over_baseline"
LOGIT_RATIO = "max_logit_ratio_baseline_over_qkln_at_top_lr"
FIGURES = (SENS_RATIO, LOGIT_RATIO)


def judge(figures: dict) -> str:
    """(i) and (ii) both -> holds; neither -> does not hold; one -> inconclusive (NaN fails its part)."""
    return two_parts(figures[SENS_RATIO] < SENS_RATIO_MAX, figures[LOGIT_RATIO] > LOGIT_RATIO_MIN)


def make_task(seed: int, seq_len: int):
    """The character-level LM task of the sweep."""
    from attnlab.tasks import create

    return create("char_lm", seed=seed, seq_len=seq_len)


def make_model(mixer: str, vocab_size: int, seq_len: int, dim: int, depth: int, heads: int):
    """The pre-LN causal LM of the sweep with token mixer ``mixer``."""
    from attnlab.models import SequenceModel

    return SequenceModel(vocab_size=vocab_size, dim=dim, depth=depth, num_heads=heads, mixer=mixer, head="lm",
                         max_len=seq_len, causal=True)


def ratio(a: float, b: float) -> float:
    """a / b, NaN if either is NaN; inf (a > 0) or 1 (a == 0) when b is 0."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if b == 0:
        return math.inf if a > 0 else 1.0
    return a / b


def _plot(ctx, lrs, results: dict, init_loss: float) -> None:
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4.2))
    capped = {n: dict(zip(lrs, [min(v, init_loss) if math.isfinite(v) else init_loss for v in r["final_loss"]]))
              for n, r in results.items()}
    plot_lines(axes[0], capped, xlabel="peak learning rate", ylabel="final loss (capped at init; diverged = init)",
               title="final val loss vs LR")
    axes[0].axhline(init_loss, color="grey", lw=0.8, ls=":")
    plot_lines(axes[1], {n: dict(zip(lrs, r["max_attention_logit"])) for n, r in results.items()}, logy=True,
               xlabel="peak learning rate", ylabel="max |q.k|/sqrt(d_h)", title="max |attention logit| vs LR")
    plot_lines(axes[2], {n: dict(zip(lrs, r["log_z"])) for n, r in results.items()}, xlabel="peak learning rate",
               ylabel="mean logsumexp(logits)", title="output log Z vs LR")
    fig.suptitle("P02 instability proxies: pre-LN transformer on char_lm")
    ctx.save_plot(fig, "lr_sweep.png", dpi=110)


def run(ctx):
    """Sweep LR x {baseline, qk-layernorm} (x z-loss); record losses, logits, log Z and the sensitivity ratios."""
    from attnlab.analysis import lr_sensitivity, max_attention_logit, output_log_z
    from attnlab.train import TrainConfig, evaluate

    p = ctx.budget
    task = make_task(ctx.seed, p["seq_len"])
    probe = task.batch("val", 0, 16).inputs
    shape = (task.spec.vocab_size, p["seq_len"], p["dim"], p["depth"], p["heads"])
    arms = [Arm(n, lambda spec, mixer=CONFIGS[n][0]: make_model(mixer, *shape)) for n in p["configs"]]
    config = lambda name, lr: TrainConfig(  # noqa: E731
        steps=p["steps"], batch_size=p["batch_size"], lr=lr, warmup_steps=p["warmup"], weight_decay=WEIGHT_DECAY,
        wd_mode="independent", z_loss=CONFIGS[name][1], eval_every=0, eval_batches=4,
        log_every=max(p["steps"] // 20, 1), seed=ctx.seed)
    torch.manual_seed(ctx.seed)
    init_loss = evaluate(make_model("softmax", *shape), task, batches=4, batch_size=p["batch_size"])["loss"]
    results = lr_sweep(arms, task, p["lrs"], config, seed=ctx.seed, progress=ctx.progress,
                       probes={"max_attention_logit": lambda m: max_attention_logit(m, probe),
                               "log_z": lambda m: output_log_z(m, probe)})
    for r in results.values():
        r["lr_sensitivity"] = lr_sensitivity(dict(zip(p["lrs"], r["final_loss"])), init_loss)
    base, qk, top = results["baseline"], results["qk_layernorm"], -1
    m = {"lrs": list(p["lrs"]), "init_loss": init_loss, "steps": p["steps"],
         "model": f"pre-LN SequenceModel dim={p['dim']} depth={p['depth']} heads={p['heads']}, seq {p['seq_len']}, "
                  f"batch {p['batch_size']}"}
    for key in ("final_loss", "max_attention_logit", "log_z", "diverged", "lr_sensitivity"):
        m |= {f"{key}[{n}]": r[key] for n, r in results.items()}
    m[SENS_RATIO] = ratio(qk["lr_sensitivity"], base["lr_sensitivity"])
    m[LOGIT_RATIO] = ratio(base["max_attention_logit"][top], qk["max_attention_logit"][top])
    _plot(ctx, list(p["lrs"]), results, init_loss)
    summary = (
        f"{len(p['configs'])} configurations x {len(p['lrs'])} peak LRs ({p['lrs'][0]:g}..{p['lrs'][top]:g}), "
        f"{p['steps']} steps each on char_lm ({m['model']}). LR sensitivity: baseline {base['lr_sensitivity']:.3f}, "
        f"qk-layernorm {qk['lr_sensitivity']:.3f} (ratio {m[SENS_RATIO]:.2f}; rule < {SENS_RATIO_MAX}). Max attention "
        f"logit at LR {p['lrs'][top]:g}: baseline {base['max_attention_logit'][top]:.3g}, qk-layernorm "
        f"{qk['max_attention_logit'][top]:.3g} (ratio {m[LOGIT_RATIO]:.3g}; rule > {LOGIT_RATIO_MIN:g})."
    )
    if "baseline+z_loss" in results:
        bz = results["baseline+z_loss"]
        m["sensitivity_ratio_zloss_over_baseline"] = zr = ratio(bz["lr_sensitivity"], base["lr_sensitivity"])
        m["log_z_at_top_lr[baseline, baseline+z_loss]"] = [base["log_z"][top], bz["log_z"][top]]
        summary += (
            f" z-loss (1e-4): baseline+z-loss sensitivity {bz['lr_sensitivity']:.3f} (ratio {zr:.2f} to baseline: "
            f"{'a lower' if zr < SENS_RATIO_MAX else 'no clearly lower'} sensitivity); output log Z at the top LR "
            f"{base['log_z'][top]:.2f} without vs {bz['log_z'][top]:.2f} with z-loss. Output-logit divergence, which "
            "the z-loss targets, " + ("did occur in the baseline" if any(base["diverged"]) else
                                      "did not occur (no baseline run diverged)") + " at this scale."
        )
    return ReproOutcome(m, summary)
