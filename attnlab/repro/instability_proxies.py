"""P02 (Wortsman et al., ICLR 2024): small-scale proxies for large-scale training instabilities.

Setting (CPU scale): a pre-LN causal transformer (``attnlab.models.SequenceModel``,
2 layers, d=128, 4 heads) trained on the character-level LM task ``char_lm`` with
P02's optimiser (AdamW, betas (0.9, 0.95), eps 1e-8, grad clip 1, linear warm-up +
cosine, weight decay 1e-4 independent of the LR), over a log-spaced LR grid, for

- ``baseline``: softmax attention (mixer ``"softmax"``);
- ``qk_layernorm``: LayerNorm over each head's d_h on queries and keys (``"softmax_qknorm"``);
(``baseline+z_loss`` and ``qk_layernorm+z_loss``, the output-logit z-loss 1e-4 * log^2 Z, are
defined in CONFIGS; the z-loss arm was dropped from the full run in issue 18 to pay for the
seeds: it was reported, never judged, and showed no effect because nothing diverged.)

The study is itself P02's LR sweep, so the protocol's per-arm LR choice does not apply: every
configuration is measured at every LR of the grid. The protocol's seeds do: the sweep runs for
seeds 0, 1, 2 (initialisation and data), and the figures the rule reads are means over seeds
with 95 % t intervals.

Measured per seed, configuration and LR: the final validation loss, the max |attention logit|
(``attnlab.analysis.max_attention_logit``) and the mean output log Z
(``attnlab.analysis.output_log_z``) of the trained model; per seed and configuration, P02's LR
sensitivity (``attnlab.analysis.lr_sensitivity``, init loss as the cap).

Verdict rule (on the qk-layernorm claim, the one this scale can test; written before the run):
  (i)  ``sens(qk_layernorm) / sens(baseline)`` below 0.7, and
  (ii) ``log10(max_logit(baseline, top LR) / max_logit(qk_layernorm, top LR))`` above 1 (the
       baseline's logits more than 10x larger; the log makes seeds' ratios comparable).
A part holds if its interval lies on the claimed side of its margin and does not hold if it
lies on the other side. Both hold -> holds; both do not -> does not hold at
this scale; anything else -> inconclusive.
Deviations from P02: character-level text instead of C4, 200 steps, SequenceModel's biases kept.
"""
from __future__ import annotations

import math

import torch

from attnlab.repro.harness.arms import Arm
from attnlab.repro.harness.intervals import t_interval
from attnlab.repro.harness.plots import plot_lines, pyplot
from attnlab.repro.harness.rules import clears, unanimous
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
            depth=2, heads=4, configs=("baseline", "qk_layernorm"), seeds=(0, 1, 2))
QUICK = dict(lrs=(3e-3, 3e-2, 3e-1), steps=40, warmup=4, batch_size=16, seq_len=32, dim=64, depth=2, heads=4,
             configs=("baseline", "qk_layernorm"), seeds=(0, 1))
CONFIGS = {  # name -> (mixer, z-loss coefficient)
    "baseline": ("softmax", 0.0),
    "qk_layernorm": ("softmax_qknorm", 0.0),
    "baseline+z_loss": ("softmax", 1e-4),
    "qk_layernorm+z_loss": ("softmax_qknorm", 1e-4),
}
WEIGHT_DECAY = 1e-4  # P02, "independent" of the LR

SENS_RATIO = "sensitivity_ratio_qkln_over_baseline"
LOGIT_RATIO = "log10 max_logit_ratio_baseline_over_qkln_at_top_lr"
FIGURES = (SENS_RATIO, LOGIT_RATIO)


def judge(figures: dict) -> str:
    """(i) and (ii) both hold -> holds; both do not -> does not hold; otherwise inconclusive (NaN: undecided)."""
    return unanimous(clears(figures[SENS_RATIO], SENS_RATIO_MAX, above=False),
                     clears(figures[LOGIT_RATIO], math.log10(LOGIT_RATIO_MIN)))


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


def _one_seed(p: dict, seed: int, progress: bool) -> tuple[dict, float]:
    """P02's sweep for one seed: per configuration, lists over the LRs (final loss, probes, diverged) and its LR
    sensitivity; and the loss at initialisation."""
    from attnlab.analysis import lr_sensitivity, max_attention_logit, output_log_z
    from attnlab.train import TrainConfig, evaluate

    task = make_task(seed, p["seq_len"])
    probe = task.batch("val", 0, 16).inputs
    shape = (task.spec.vocab_size, p["seq_len"], p["dim"], p["depth"], p["heads"])
    arms = [Arm(n, lambda spec, mixer=CONFIGS[n][0]: make_model(mixer, *shape)) for n in p["configs"]]
    config = lambda name, lr: TrainConfig(  # noqa: E731
        steps=p["steps"], batch_size=p["batch_size"], lr=lr, warmup_steps=p["warmup"], weight_decay=WEIGHT_DECAY,
        wd_mode="independent", z_loss=CONFIGS[name][1], eval_every=0, eval_batches=4,
        log_every=max(p["steps"] // 20, 1), seed=seed)
    torch.manual_seed(seed)
    init_loss = evaluate(make_model("softmax", *shape), task, batches=4, batch_size=p["batch_size"])["loss"]
    results = lr_sweep(arms, task, p["lrs"], config, seed=seed, progress=progress,
                       probes={"max_attention_logit": lambda m: max_attention_logit(m, probe),
                               "log_z": lambda m: output_log_z(m, probe)})
    for r in results.values():
        r["lr_sensitivity"] = lr_sensitivity(dict(zip(p["lrs"], r["final_loss"])), init_loss)
    return results, init_loss


def _record(p: dict, runs: list[dict], init: list[float]) -> dict:
    """The sweep as a protocol record (``FairArms.record()``'s layout): final val loss per LR (mean over seeds,
    diverged runs at the initial loss), the best LR per configuration, the per-seed LR sensitivity."""
    def mean(xs):
        return sum(xs) / len(xs)

    loss = {n: [mean([min(r[n]["final_loss"][j], i0) if math.isfinite(r[n]["final_loss"][j]) else i0
                      for r, i0 in zip(runs, init)]) for j in range(len(p["lrs"]))] for n in p["configs"]}
    return {"name": "char_lm", "hyper": "lr", "metric": "final val loss (mean over seeds)", "grid": list(p["lrs"]),
            "sweep_fraction": 1.0, "steps": p["steps"], "sweep_steps": p["steps"], "seeds": list(p["seeds"]),
            "split": {"sweep": "val", "verdict": "val (the LR sensitivity of the whole sweep)"}, "chance": None,
            "sweep": {n: {"val_loss": v, "val_metric": v, "diverged": [any(r[n]["diverged"][j] for r in runs)
                                                                      for j in range(len(p["lrs"]))]}
                      for n, v in loss.items()},
            "chosen": {n: p["lrs"][v.index(min(v))] for n, v in loss.items()},
            "at_edge": [], "test": {n: [r[n]["lr_sensitivity"] for r in runs] for n in p["configs"]},
            "at_chance": []}


def run(ctx):
    """Sweep LR x {baseline, qk-layernorm} for every seed; record losses, logits, log Z and the ratios' intervals."""
    p = ctx.budget
    runs, init = zip(*(_one_seed(p, ctx.seed + s, ctx.progress) for s in p["seeds"]))
    top = -1
    sens = {n: [r[n]["lr_sensitivity"] for r in runs] for n in p["configs"]}
    ratios = [ratio(r["qk_layernorm"]["lr_sensitivity"], r["baseline"]["lr_sensitivity"]) for r in runs]
    logits = [ratio(r["baseline"]["max_attention_logit"][top], r["qk_layernorm"]["max_attention_logit"][top])
              for r in runs]
    m = {SENS_RATIO: t_interval(ratios),
         LOGIT_RATIO: t_interval([math.log10(x) if x > 0 else math.nan for x in logits]),
         "lrs": list(p["lrs"]), "init_loss (per seed)": list(init), "steps": p["steps"],
         "model": f"pre-LN SequenceModel dim={p['dim']} depth={p['depth']} heads={p['heads']}, seq {p['seq_len']}, "
                  f"batch {p['batch_size']}",
         **{f"lr_sensitivity[{n}]": t_interval(v) for n, v in sens.items()},
         "max_logit_ratio at the top LR (per seed)": logits}
    for key in ("final_loss", "max_attention_logit", "log_z", "diverged"):
        m |= {f"{key}[{n}] (seed {ctx.seed + p['seeds'][0]})": runs[0][n][key] for n in p["configs"]}
    mean_results = {n: {k: [sum(r[n][k][j] for r in runs) / len(runs) for j in range(len(p["lrs"]))]
                        for k in ("final_loss", "max_attention_logit", "log_z")} for n in p["configs"]}
    _plot(ctx, list(p["lrs"]), mean_results, sum(init) / len(init))
    summary = (
        f"{len(p['configs'])} configurations x {len(p['lrs'])} peak LRs ({p['lrs'][0]:g}..{p['lrs'][top]:g}), "
        f"{p['steps']} steps each on char_lm ({m['model']}), seeds {list(p['seeds'])} (95 % t intervals). LR "
        f"sensitivity: baseline {m['lr_sensitivity[baseline]'].text(3)}, qk-layernorm "
        f"{m['lr_sensitivity[qk_layernorm]'].text(3)} (ratio {m[SENS_RATIO].text(3)}; rule below {SENS_RATIO_MAX}). "
        f"Max attention logit at LR {p['lrs'][top]:g}, baseline over qk-layernorm: log10 ratio "
        f"{m[LOGIT_RATIO].text(3)} "
        f"(rule above {math.log10(LOGIT_RATIO_MIN):g}). Any baseline run diverged: "
        f"{any(any(r['baseline']['diverged']) for r in runs)}."
    )
    return ReproOutcome(m, summary, {"sensitivity ratio": ratios, "max-logit ratio": logits},
                        protocol=[_record(p, list(runs), list(init))])
