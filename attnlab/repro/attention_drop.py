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

Protocol (issue 18): the LM's LR is the best of 1e-3 / 3e-3 / 1e-2 by validation loss after a quarter
of the steps (seed + 1000); then three models (seeds 0, 1, 2: initialisation and data) train at it for
the full budget, and every drop is measured on **test** windows of each; the judged figures are means
over the three models with 95 % t intervals (differences taken model by model). The model is at
chance if its loss stays above 3.0 nats/char (a unigram model of the corpus scores 3.13) at every LR
and seed: then nothing can be said (inconclusive).

Rule (written before the run; interval form of the rule issue 12 stated): the ordering part holds if
the intervals of dPPL(attention at random) - dPPL(attention by score) and of dPPL(MLP by score) -
dPPL(attention at random) both lie above 0, does not hold if either lies below 0, else inconclusive;
the ranking part holds if the interval of Spearman(similarity, single-drop loss increase) over the
attention and MLP modules lies below -0.5, does not hold if above, else inconclusive. Both hold ->
holds, both do not -> does not hold, otherwise inconclusive; inconclusive if the LM is at chance.
"""
from __future__ import annotations

import torch

from attnlab.repro.harness.arms import mixer_arm
from attnlab.repro.harness.intervals import paired, t_interval
from attnlab.repro.harness.plots import plot_bar_panels, pyplot
from attnlab.repro.harness.protocol import AT_CHANCE, Chance, Protocol, at_chance_figure, train_fair
from attnlab.repro.harness.rules import all_parts, chance_rule, clears, unanimous
from attnlab.repro.harness.runner import ReproOutcome

PAPER = "P17"
CLAIM = ("Attention layers are highly redundant: dropping the attention modules whose output changes the residual "
         "stream least (by cosine similarity) costs far less than dropping MLPs or whole blocks, and less than "
         "dropping attention modules at random; the similarity score predicts which modules matter.")

QUICK = dict(seq_len=32, dim=32, depth=4, heads=2, steps=30, batch=8, calib_batches=2, eval_batches=2,
             random_draws=4, protocol=Protocol(lrs=(3e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5))
FULL = dict(seq_len=128, dim=128, depth=8, heads=4, steps=400, batch=32, calib_batches=8, eval_batches=8,
            random_draws=20, protocol=Protocol(lrs=(1e-3, 3e-3, 1e-2)))
RANK_MAX = -0.5           # Spearman(similarity, loss increase) must lie below this
UNIGRAM_NATS, LEARNED_NATS = 3.13, 3.0   # loss above 3.0 nats/char: no more than character frequencies learned

ATTN = "dPPL attention by score"
RANDOM = "dPPL attention at random (mean over draws)"
MLP = "dPPL MLP by score"
BELOW_RANDOM = "dPPL: attention at random - attention by score"
BELOW_MLP = "dPPL: MLP by score - attention at random"
RANK = "Spearman(similarity, single-drop loss increase), attention + MLP"
FIGURES = (BELOW_RANDOM, BELOW_MLP, RANK, AT_CHANCE)


def judge(figures: dict) -> str:
    """The rule of the module docstring, on the intervals named in ``FIGURES`` (a NaN interval is undecided)."""
    chance = chance_rule(figures[AT_CHANCE], ["lm"])
    if chance:
        return chance
    order = all_parts(clears(figures[BELOW_RANDOM], 0.0), clears(figures[BELOW_MLP], 0.0))
    return unanimous(order, clears(figures[RANK], RANK_MAX, above=False))


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


def _drop_study(model, task, b, seed: int) -> dict:
    """One trained model: module scores on training windows it did not train on, then every drop on test windows."""
    from attnlab.analysis.drop_study import single_drop_nll
    from attnlab.analysis.lm_eval import perplexity
    from attnlab.analysis.module_drop import drop_modules
    from attnlab.analysis.redundancy import choose_drops, random_drops, redundancy_scores

    model.eval()
    calib = [task.batch("train", 1_000_000 + i, b["batch"]).inputs for i in range(b["calib_batches"])]
    evals = [task.batch("test", i, b["batch"]).inputs for i in range(b["eval_batches"])]
    depth, n = b["depth"], max(b["depth"] // 4, 1)
    scores = redundancy_scores(model, calib)
    base = perplexity(model, evals)

    def dppl(plan) -> float:
        with drop_modules(model, plan):
            return perplexity(model, evals) - base

    g = torch.Generator().manual_seed(seed)
    draws = {kind: [dppl(random_drops(depth, n, kind, generator=g)) for _ in range(b["random_draws"])]
             for kind in ("attn", "mlp")}
    plans = {kind: choose_drops(scores, n, kind) for kind in ("attn", "mlp", "block")}
    single = single_drop_nll(model, evals, depth=depth)
    similarity = {"attn": (1 - scores.attn).tolist(), "mlp": (1 - scores.mlp).tolist()}
    return dict(model=model, evals=evals, scores=scores, base=base, plans=plans, single=single, similarity=similarity,
                draws=draws, n=n, attn=dppl(plans["attn"]), random=sum(draws["attn"]) / len(draws["attn"]),
                mlp=dppl(plans["mlp"]), block=dppl(plans["block"]), mlp_random=sum(draws["mlp"]) / len(draws["mlp"]),
                rank=_spearman(similarity["attn"] + similarity["mlp"], single["attn"] + single["mlp"]),
                rank_attn=_spearman(similarity["attn"], single["attn"]),
                rank_mlp=_spearman(similarity["mlp"], single["mlp"]))


def run(ctx):
    """Train the LM under the protocol; on each seed's model score the modules, drop L/4 by each strategy, measure
    dPPL on test windows and the single-drop losses."""
    from attnlab import tasks
    from attnlab.analysis.drop_study import drop_curve, plot_drop_study
    from attnlab.train import TrainConfig

    b = ctx.budget

    def make_task(seed: int):
        return tasks.create("char_lm", seq_len=b["seq_len"], seed=seed)

    template = TrainConfig(steps=b["steps"], batch_size=b["batch"], lr=3e-3, warmup_steps=max(b["steps"] // 10, 1),
                           eval_every=0, eval_batches=b["eval_batches"], log_every=max(b["steps"] // 10, 1))
    arm = mixer_arm("lm", "softmax", dim=b["dim"], depth=b["depth"], num_heads=b["heads"])
    fair = train_fair([arm], make_task, template, b["protocol"], seed=ctx.seed, progress=ctx.progress, name="char_lm",
                      metric="loss", keep_models=True,
                      chance=Chance(UNIGRAM_NATS, UNIGRAM_NATS - LEARNED_NATS, higher_is_better=False))
    studies = [_drop_study(t.model, make_task(t.seed), b, t.seed) for t in fair.runs["lm"]]
    col = lambda key: [st[key] for st in studies]  # noqa: E731
    depth, n, first = b["depth"], studies[0]["n"], studies[0]
    m = {
        BELOW_RANDOM: paired(col("random"), col("attn")), BELOW_MLP: paired(col("mlp"), col("random")),
        RANK: t_interval(col("rank")), **at_chance_figure(fair),
        ATTN: t_interval(col("attn")), RANDOM: t_interval(col("random")), MLP: t_interval(col("mlp")),
        "dPPL block by score": t_interval(col("block")),
        "dPPL MLP at random (mean over draws)": t_interval(col("mlp_random")),
        "test loss of the full model (nats/char)": fair.interval("lm"),
        "perplexity of the full model (per char, test)": t_interval(col("base")),
        "LR chosen for the LM": fair.lr["lm"],
        "modules dropped (L/4 of each kind)": n,
        "seed 0: attention dropped by score": list(first["plans"]["attn"].attn),
        "seed 0: MLPs dropped by score": list(first["plans"]["mlp"].mlp),
        "seed 0: blocks dropped by score": list(first["plans"]["block"].attn),
        "seed 0: importance of attention modules (1 - cos)": first["scores"].attn.tolist(),
        "seed 0: importance of MLPs (1 - cos)": first["scores"].mlp.tolist(),
        "seed 0: importance of blocks (1 - cos)": first["scores"].block.tolist(),
        "seed 0: single-drop loss increase, attention (nats)": first["single"]["attn"],
        "seed 0: single-drop loss increase, MLP (nats)": first["single"]["mlp"],
        "Spearman(similarity, loss increase), attention only": t_interval(col("rank_attn")),
        "Spearman(similarity, loss increase), MLP only": t_interval(col("rank_mlp")),
        "calibration tokens (per model)": first["scores"].tokens,
        "evaluation windows (per model)": len(first["evals"]) * b["batch"],
    }
    plot_drop_study(first["scores"], drop_curve(first["model"], first["scores"], depth // 2, "attn", first["evals"]),
                    "attn", ctx.path("attention_drop_scores.png"))
    ctx.plots.append(str(ctx.path("attention_drop_scores.png")))
    plot_bar_panels(ctx, {f"dPPL after dropping {n} of {depth} (mean over {len(studies)} models)": {
        "attention by score": m[ATTN].mean, "attention at random": m[RANDOM].mean, "MLP by score": m[MLP].mean,
        "MLP at random": m["dPPL MLP at random (mean over draws)"].mean, "block by score": m["dPPL block by score"].mean}},
        "attention_drop.png", ylabel="perplexity increase (per char)", panel_width=6)
    _scatter(ctx, first["similarity"], {"attn": first["single"]["attn"], "mlp": first["single"]["mlp"]})
    summary = (
        f"{depth}-layer width-{b['dim']} char LM at LR {fair.lr['lm']:g} (swept), {b['steps']} steps, "
        f"{len(studies)} seeds (test loss {m['test loss of the full model (nats/char)'].text(3)} nats/char). Dropping "
        f"{n} of {depth}, test dPPL: attention by score {m[ATTN].text(3)}, attention at random {m[RANDOM].text(3)} "
        f"(mean of {b['random_draws']} draws), MLP by score {m[MLP].text(3)}, block by score "
        f"{m['dPPL block by score'].text(3)}. Random - by score {m[BELOW_RANDOM].text(3)}; MLP - random "
        f"{m[BELOW_MLP].text(3)}. Spearman(similarity, loss increase when dropped alone) {m[RANK].text(3)} over the "
        f"{2 * depth} attention and MLP modules (attention only "
        f"{m['Spearman(similarity, loss increase), attention only'].text(3)}, MLP only "
        f"{m['Spearman(similarity, loss increase), MLP only'].text(3)})."
    )
    return ReproOutcome(m, summary, {k: list(m[k].values) for k in (ATTN, RANDOM, MLP, RANK)},
                        protocol=[fair.record()])
