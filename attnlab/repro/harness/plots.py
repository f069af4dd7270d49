"""Plots of the reproductions: the matplotlib backend is chosen here, once, and figures are saved here.

Every function draws with the non-interactive Agg backend (no display on a server or in CI).
The drawing helpers cover the plots several reproductions share (curves over training steps,
lines over a swept value, bar panels); a plot that only one paper needs is drawn in its module
and saved through ``ctx.save_plot``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["pyplot", "save_figure", "plot_curves", "plot_lines", "plot_bar_panels", "plot_sweeps"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, *, dpi: int = 100) -> str:
    """Lay out ``fig``, write it to ``path`` at ``dpi`` and close it; returns the path as a string."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return str(path)


def plot_curves(ctx, curves: Mapping[str, Sequence[tuple[float, float]]], name: str, *, ylabel: str, title: str,
                final: Mapping[str, float] | None = None, chance: float | None = None, digits: int = 2,
                xlabel: str = "training step", logy: bool = False, figsize=(5, 3.5), dpi: int = 120) -> str:
    """One line per arm of (step, value) points, the arm's ``final`` value in its legend; saved as ``name``."""
    fig, ax = pyplot().subplots(figsize=figsize)
    for label, pts in curves.items():
        if pts:
            tag = f" ({final[label]:.{digits}f})" if final is not None else ""
            ax.plot(*zip(*pts), marker="o" if len(pts) < 40 else None, ms=3, label=label + tag)
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ctx.save_plot(fig, name, dpi=dpi)


def plot_lines(ax, series: Mapping[str, Mapping[float, float]], *, xlabel: str, ylabel: str, title: str = "",
               logx: bool = True, logy: bool = False, base: int = 10) -> None:
    """On axes ``ax``: one line per series of {x: y} points (e.g. loss against LR, error against sample size)."""
    for label, pts in series.items():
        ax.plot(list(pts), list(pts.values()), marker="o", label=label)
    if logx:
        ax.set_xscale("log", base=base)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot_bar_panels(ctx, panels: Mapping[str, Mapping[str, float]], name: str, *, ylabel: str,
                    errors: Mapping[str, Mapping[str, float]] | None = None,
                    hline: float | Mapping[str, float] | None = None,
                    hline_label: str = "", suptitle: str = "", colors=None, rotation: int = 30,
                    panel_width: float = 4.5, zoom: bool = False, dpi: int = 100) -> str:
    """One bar chart per panel (title -> {bar label: value}), side by side; saved as ``name``.

    ``errors`` gives error bars per panel and label; ``hline`` draws a reference line (e.g. chance) in
    every panel, or in the panels a mapping names; ``colors`` is a colour per bar or a function of the
    value; ``zoom`` narrows the value axis to the bars' range (for values close together, e.g. losses).
    """
    fig, axes = pyplot().subplots(1, len(panels), figsize=(panel_width * len(panels), 3.3), squeeze=False)
    for ax, (title, bars) in zip(axes[0], panels.items()):
        labels = list(bars)
        vals = [bars[k] for k in labels]
        err = [errors[title][k] for k in labels] if errors else None
        color = [colors(v) for v in vals] if callable(colors) else (colors or "tab:blue")
        ax.bar(range(len(labels)), vals, yerr=err, color=color)
        if zoom:
            ax.set_ylim(min(vals) * 0.97, max(vals) * 1.01)
        line = hline.get(title) if isinstance(hline, Mapping) else hline
        if line is not None:
            ax.axhline(line, color="k", ls=":", lw=1, label=hline_label or None)
            if hline_label:
                ax.legend(fontsize=7)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=rotation, ha="right" if rotation else "center", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return ctx.save_plot(fig, name, dpi=dpi)


def plot_sweeps(ctx, records, name: str = "lr_sweeps.png", *, dpi: int = 100) -> str | None:
    """The protocol's sweeps (records of ``FairArms.record()``): per comparison, the final validation loss and the
    validation metric of every arm against the swept value, the chosen value starred; saved as ``name``.

    None (nothing drawn) when no record has a sweep.
    """
    records = [r for r in records if r.get("sweep")]
    if not records:
        return None
    fig, axes = pyplot().subplots(len(records), 2, figsize=(10, 3.2 * len(records)), squeeze=False)
    for (ax_loss, ax_metric), rec in zip(axes, records):
        grid = rec["grid"]
        for i, (arm, sw) in enumerate(rec["sweep"].items()):
            color = f"C{i % 10}"
            chosen = grid.index(rec["chosen"][arm]) if rec["chosen"].get(arm) in grid else None
            for ax, ys in ((ax_loss, sw["val_loss"]), (ax_metric, sw["val_metric"])):
                ax.plot(grid, ys, marker="o", ms=3, color=color, label=arm)
                if chosen is not None:
                    ax.plot([grid[chosen]], [ys[chosen]], marker="*", ms=12, color=color, ls="none")
        chance = rec.get("chance")
        if chance:
            ax_metric.axhline(chance["level"], color="grey", lw=0.8, ls="--", label="chance")
        hyper = rec.get("hyper", "lr")
        steps = f"{rec['sweep_steps']} of {rec['steps']} steps, " if rec.get("steps") else ""
        for ax, what in ((ax_loss, "final val loss"), (ax_metric, f"val {rec['metric']}")):
            ax.set_xscale("log")
            ax.set_xlabel(hyper)
            ax.set_ylabel(what)
            ax.set_title(f"{rec['name']}: {what} ({steps}* = chosen)", fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
        ax_loss.legend(fontsize=7)
    return ctx.save_plot(fig, name, dpi=dpi)
