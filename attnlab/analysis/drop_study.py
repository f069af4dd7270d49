"""What dropping modules costs (P17): perplexity as modules are dropped in score order, and single-module drops.

Shared by ``attnlab analyze drop`` and the ``attention_drop`` reproduction:

- :func:`drop_curve`: perplexity with the k least important modules of a target dropped, k = 0..n
  (``choose_drops(scores, k, target)`` for each k: nested sets for attn / mlp / block / joint; for
  ``consecutive`` the best run of k blocks, which need not contain the run of k - 1);
- :func:`single_drop_nll`: the increase in next-token loss when one module alone is dropped, for every
  attention module and MLP (what the importance score is meant to predict);
- :func:`plot_drop_study`: importance per block and the perplexity curve, one figure.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from attnlab.analysis.lm_eval import next_token_nll, perplexity
from attnlab.analysis.module_drop import DropPlan, drop_modules
from attnlab.analysis.redundancy import RedundancyScores, choose_drops

__all__ = ["DropStep", "drop_curve", "single_drop_nll", "plot_drop_study"]


@dataclass
class DropStep:
    """k modules dropped: the plan and the perplexity it gives on the evaluation batches."""

    k: int
    plan: DropPlan
    perplexity: float


def drop_curve(model: nn.Module, scores: RedundancyScores, n: int, target: str,
               eval_batches: Sequence[object]) -> list[DropStep]:
    """Perplexity on ``eval_batches`` with ``choose_drops(scores, k, target)`` applied, for k = 0 .. n.

    The model is restored after each step (the scores are not recomputed between steps, as in P17's
    one-shot drop).
    """
    choose_drops(scores, n, target)  # validates n and target before any evaluation
    steps = []
    for k in range(n + 1):
        plan = choose_drops(scores, k, target)
        with drop_modules(model, plan):
            steps.append(DropStep(k, plan, perplexity(model, eval_batches)))
    return steps


def single_drop_nll(model: nn.Module, eval_batches: Sequence[object], *, depth: int,
                    has_mlp: bool = True) -> dict[str, list[float]]:
    """Next-token loss increase (nats) from dropping each module alone: ``{"attn": [L], "mlp": [L]}``.

    ``base`` is the loss of the intact model (under key ``"base"``, a one-element list).
    """
    base = next_token_nll(model, eval_batches)[0]
    out = {"base": [base], "attn": [], "mlp": []}
    for i in range(depth):
        for kind in ("attn", "mlp") if has_mlp else ("attn",):
            with drop_modules(model, DropPlan(**{kind: (i,)})):
                out[kind].append(next_token_nll(model, eval_batches)[0] - base)
    return out


def plot_drop_study(scores: RedundancyScores, curve: list[DropStep], target: str, path) -> str:
    """Two panels: importance per block (attention, MLP, block) and perplexity against modules dropped; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    idx = list(range(scores.depth))
    width = 0.28
    ax0.bar([i - width for i in idx], scores.attn.tolist(), width, label="attention")
    if scores.mlp is not None:
        ax0.bar(idx, scores.mlp.tolist(), width, label="MLP")
    ax0.bar([i + width for i in idx], scores.block.tolist(), width, label="block")
    ax0.set_xticks(idx)
    ax0.set_xlabel("block")
    ax0.set_ylabel("importance (1 - cos)")
    ax0.set_yscale("log")
    ax0.set_title(f"module importance ({scores.family}, {scores.tokens} tokens)", fontsize=9)
    ax0.legend(fontsize=7)
    ax1.plot([s.k for s in curve], [s.perplexity for s in curve], marker="o")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_xlabel(f"modules dropped ({target}, least important first)")
    ax1.set_ylabel("perplexity")
    ax1.set_title("perplexity after each drop", fontsize=9)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
