"""P17 "What Matters in Transformers? Not All Attention is Needed" at CPU scale: which modules can be dropped.

Setup: an 8-layer pre-norm character LM (``char_lm``, softmax attention, width 128, 4 heads, GELU MLP)
trained from scratch. Module importance (1 - token-mean cosine similarity of the residual stream
around each attention module, MLP and block; ``attnlab.analysis.redundancy``) is measured with one
calibration pass over training-split windows the model did not train on; the evaluation reads
validation windows. Then a quarter of the layers (L/4 = 2) is dropped, each arm from the same
trained model (a dropped module adds nothing to the residual stream):

* attention by score: the L/4 attention modules of lowest importance (P17's Attention Drop);
* attention at random: L/4 attention modules drawn uniformly (mean over ``random_draws`` draws);
* MLP by score, block by score (P17's MLP Drop and Block Drop), and MLP at random for context.

Measured: the perplexity increase dPPL (per character, validation) of each arm; the loss increase of
dropping each attention module and each MLP alone; the Spearman correlation between a module's
similarity score (cos, what the official code ranks by; importance = 1 - cos) and that loss increase
over the 2L attention and MLP modules (per kind too, reported).

Deviations from the paper: a small model trained for minutes on Python sources instead of
Llama/Mistral models on C4; perplexity instead of downstream benchmarks; one-shot drops (the
scores are not recomputed after each drop, as in the paper's one-shot setting).

Rule (written before the run): the ordering part holds if dPPL(attention by score) <
dPPL(attention at random) < dPPL(MLP by score); the ranking part holds if Spearman(similarity,
single-drop loss increase) <= -0.5 over the attention and MLP modules. Both -> holds, neither ->
does not hold, one -> inconclusive; inconclusive too if the model did not learn the task (validation
loss not below 3.0 nats/char; a unigram model of the corpus scores 3.13).
"""
from __future__ import annotations

import math

import torch

from attnlab.repro.harness.arms import mixer_arm, train_arms
from attnlab.repro.harness.plots import plot_bar_panels, pyplot
from attnlab.repro.harness.rules import guard_learned, two_parts
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P17"
CLAIM = ("Attention layers are highly redundant: dropping the attention modules whose output changes the residual "
         "stream least (by cosine similarity) costs far less than dropping MLPs or whole blocks, and less than "
         "dropping attention modules at random; the similarity score predicts which modules matter.")

QUICK = dict(seq_len=32, dim=32, depth=4, heads=2, steps=30, batch=8, lr=3e-3, calib_batches=2, eval_batches=2,
             random_draws=4)
FULL = dict(seq_len=128, dim=128, depth=8, heads=4, steps=400, batch=32, lr=3e-3, calib_batches=8, eval_batches=8,
            random_draws=20)
RANK_MAX = -0.5           # Spearman(similarity, loss increase) must be at most this
LEARNED_NATS = 3.0        # validation loss below this: the model learned more than character frequencies

ATTN = "dPPL attention by score"
RANDOM = "dPPL attention at random (mean over draws)"
MLP = "dPPL MLP by score"
RANK = "Spearman(similarity, single-drop loss increase), attention + MLP"
BASE_LOSS = "validation loss of the full model (nats/char)"
FIGURES = (ATTN, RANDOM, MLP, RANK, BASE_LOSS)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the figures named in ``FIGURES`` (NaN fails each comparison)."""
    order = figures[ATTN] < figures[RANDOM] < figures[MLP]
    rank = figures[RANK] <= RANK_MAX
    return guard_learned(figures[BASE_LOSS] < LEARNED_NATS, two_parts(order, rank))


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _scatter(ctx, similarity: dict, increase: dict) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for kind, marker in (("attn", "o"), ("mlp", "s")):
        ax.scatter(similarity[kind], increase[kind], marker=marker, label="attention" if kind == "attn" else "MLP")
        for i, (x, y) in enumerate(zip(similarity[kind], increase[kind])):
            ax.annotate(str(i), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("similarity cos(h, h + module): higher = more redundant", fontsize=8)
    ax.set_ylabel("loss increase when dropped alone (nats)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=7)
    ax.set_title("does the score predict the cost of a drop?", fontsize=9)
    return ctx.save_plot(fig, "attention_drop_scatter.png")


def run(ctx):
    """Train the LM, score its modules, drop L/4 by each strategy, measure dPPL and the single-drop losses."""
    from attnlab import tasks
    from attnlab.analysis.drop_study import drop_curve, plot_drop_study, single_drop_nll
    from attnlab.analysis.lm_eval import perplexity
    from attnlab.analysis.module_drop import drop_modules
    from attnlab.analysis.redundancy import choose_drops, random_drops, redundancy_scores
    from attnlab.train import TrainConfig

    b = ctx.budget
    task = tasks.create("char_lm", seq_len=b["seq_len"], seed=ctx.seed)
    cfg = TrainConfig(steps=b["steps"], batch_size=b["batch"], lr=b["lr"], warmup_steps=max(b["steps"] // 10, 1),
                      eval_every=0, eval_batches=b["eval_batches"], log_every=max(b["steps"] // 10, 1), seed=ctx.seed)
    arm = mixer_arm("lm", "softmax", dim=b["dim"], depth=b["depth"], num_heads=b["heads"])
    trained = train_arms(task, [arm], cfg, seed=ctx.seed, progress=ctx.progress)
    model = trained.models["lm"].eval()
    calib = [task.batch("train", 1_000_000 + i, b["batch"]).inputs for i in range(b["calib_batches"])]
    evals = [task.batch("val", i, b["batch"]).inputs for i in range(b["eval_batches"])]
    depth, n = b["depth"], max(b["depth"] // 4, 1)
    scores = redundancy_scores(model, calib)
    base = perplexity(model, evals)

    def dppl(plan) -> float:
        with drop_modules(model, plan):
            return perplexity(model, evals) - base

    g = torch.Generator().manual_seed(ctx.seed)
    draws = {kind: [dppl(random_drops(depth, n, kind, generator=g)) for _ in range(b["random_draws"])]
             for kind in ("attn", "mlp")}
    plans = {kind: choose_drops(scores, n, kind) for kind in ("attn", "mlp", "block")}
    single = single_drop_nll(model, evals, depth=depth)
    similarity = {"attn": (1 - scores.attn).tolist(), "mlp": (1 - scores.mlp).tolist()}
    m = {
        ATTN: dppl(plans["attn"]), RANDOM: sum(draws["attn"]) / len(draws["attn"]), MLP: dppl(plans["mlp"]),
        RANK: _spearman(similarity["attn"] + similarity["mlp"], single["attn"] + single["mlp"]),
        BASE_LOSS: math.log(base),
        "dPPL block by score": dppl(plans["block"]),
        "dPPL MLP at random (mean over draws)": sum(draws["mlp"]) / len(draws["mlp"]),
        "dPPL attention at random, min / max over draws": [min(draws["attn"]), max(draws["attn"])],
        "perplexity of the full model (per char)": base,
        "modules dropped (L/4 of each kind)": n,
        "attention dropped by score": list(plans["attn"].attn), "MLPs dropped by score": list(plans["mlp"].mlp),
        "blocks dropped by score": list(plans["block"].attn),
        "importance of attention modules (1 - cos)": scores.attn.tolist(),
        "importance of MLPs (1 - cos)": scores.mlp.tolist(), "importance of blocks (1 - cos)": scores.block.tolist(),
        "single-drop loss increase, attention (nats)": single["attn"],
        "single-drop loss increase, MLP (nats)": single["mlp"],
        "Spearman(similarity, loss increase), attention only": _spearman(similarity["attn"], single["attn"]),
        "Spearman(similarity, loss increase), MLP only": _spearman(similarity["mlp"], single["mlp"]),
        "calibration tokens": scores.tokens, "evaluation windows": len(evals) * b["batch"],
        "training: steps, final train loss": [b["steps"], trained.results["lm"].history[-1]["loss"]],
    }
    plot_drop_study(scores, drop_curve(model, scores, depth // 2, "attn", evals), "attn",
                    ctx.path("attention_drop_scores.png"))
    ctx.plots.append(str(ctx.path("attention_drop_scores.png")))
    plot_bar_panels(ctx, {f"dPPL after dropping {n} of {depth}": {
        "attention by score": m[ATTN], "attention at random": m[RANDOM], "MLP by score": m[MLP],
        "MLP at random": m["dPPL MLP at random (mean over draws)"], "block by score": m["dPPL block by score"]}},
        "attention_drop.png", ylabel="perplexity increase (per char)", panel_width=6)
    _scatter(ctx, similarity, {"attn": single["attn"], "mlp": single["mlp"]})
    order = "holds" if m[ATTN] < m[RANDOM] < m[MLP] else "does not hold"
    summary = (
        f"{depth}-layer width-{b['dim']} char LM, {b['steps']} steps (validation loss {m[BASE_LOSS]:.3f} nats/char, "
        f"perplexity {base:.3f}). Dropping {n} of {depth}: attention by score dPPL {m[ATTN]:+.4f}, attention at random "
        f"{m[RANDOM]:+.4f} (mean of {b['random_draws']} draws), MLP by score {m[MLP]:+.4f}, block by score "
        f"{m['dPPL block by score']:+.4f}; the ordering attention-by-score < random attention < MLP {order}. "
        f"Spearman(similarity, loss increase when dropped alone) = {m[RANK]:.3f} over the {2 * depth} attention and "
        f"MLP modules ({m['Spearman(similarity, loss increase), attention only']:.3f} attention only, "
        f"{m['Spearman(similarity, loss increase), MLP only']:.3f} MLP only). One training seed."
    )
    return ReproOutcome(m, summary)
