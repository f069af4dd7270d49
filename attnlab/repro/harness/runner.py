"""The runner behind ``attnlab repro <slug>``: one place for what every reproduction shares.

A reproduction is a module registered in :data:`attnlab.repro.REPROS` that defines

    PAPER = "P13"                                  # id from PAPERS.md
    CLAIM = "the paper's key finding, as the paper states it"
    QUICK, FULL = ..., ...                         # budgets; run() gets one as ctx.budget
    MARGIN = "shapes: crossvit - best ViT (points)"    # the names of the figures the rule reads,
    FIGURES = (MARGIN, ...)                        #   defined once, used to write and to read
    def judge(figures) -> str: ...                 # the rule: a pure function of those figures
    def run(ctx: ReproContext) -> ReproOutcome: ...    # measures; sets measured[MARGIN] = ...
    HEADLINE = MARGIN                              # optional: the figure the verdict table shows (default FIGURES[0])

:func:`run_repro` owns the rest: it picks the budget (``--quick`` or full), pins torch's
thread count, times the run (wall and CPU), hands ``run`` a context that saves plots, takes the
figures named in ``FIGURES`` from what ``run`` measured, asks ``judge`` for the verdict (a module
never states its verdict itself), draws the protocol's LR sweeps (``ReproOutcome.protocol``, see
:mod:`~attnlab.repro.harness.protocol`), and writes ``result.json`` and ``report.md``. Figures may be
:class:`~attnlab.repro.harness.intervals.Interval` s (means over seeds with 95 % intervals); the verdict
line names the arms listed under the ``AT_CHANCE`` figures ("<arm> did not learn the task at any LR tried").
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnlab.repro.harness.fanout import trials_on
from attnlab.repro.harness.intervals import Interval, revive
from attnlab.repro.harness.plots import plot_sweeps, save_figure
from attnlab.repro.harness.protocol import AT_CHANCE, BLIND_SWEEP_NOTE, NOT_LEARNED, blind_arms
from attnlab.repro.harness.rules import QUICK_NOTE, VERDICTS
from attnlab.utils.names import lookup
from attnlab.utils.threads import torch_threads

__all__ = ["ReproContext", "ReproOutcome", "ReproResult", "run_repro", "load_module", "load_result", "figures_of",
           "format_value", "protocol_markdown", "REQUIRED", "SCHEMA"]

#: What a reproduction module must define.
REQUIRED = ("PAPER", "CLAIM", "QUICK", "FULL", "FIGURES", "judge", "run")
#: Version of the result.json layout (2: figures, per_seed, cpu_seconds, threads, budget added; 3: figures may be
#: intervals, the protocol's records, the headline figure, the load average around the run).
SCHEMA = 3


@dataclass
class ReproContext:
    """What ``run`` is given: quick or full, the budget for it, the output folder, the seed, progress bars on/off.

    ``plots`` collects the paths written through :meth:`save_plot`, in order.
    """

    quick: bool
    out_dir: Path
    budget: Any = None
    seed: int = 0
    progress: bool = True
    plots: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A file path inside the output folder (created on demand)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def save_plot(self, fig, name: str, *, dpi: int = 100) -> str:
        """Save matplotlib figure ``fig`` as ``name`` in the output folder, close it, record it; returns the path."""
        path = save_figure(fig, self.path(name), dpi=dpi)
        self.plots.append(path)
        return path


@dataclass
class ReproOutcome:
    """What ``run`` returns.

    Attributes:
        measured: every figure measured (name -> number, bool, list or small table), JSON-able; holds the
            figures the rule reads under the names in the module's ``FIGURES``.
        summary: a few sentences: what was run, what was measured, how it compares with the claim,
            and anything that differs from the paper's setup.
        per_seed: for entries of ``measured`` that are means over seeds, the value of each seed
            (name -> list, in seed order).
        protocol: the records of the comparisons run under the protocol (``FairArms.record()``, one per
            comparison): LR sweeps, chosen LRs, per-seed test figures, arms at chance.
    """

    measured: dict
    summary: str
    per_seed: dict = field(default_factory=dict)
    protocol: list = field(default_factory=list)


@dataclass
class ReproResult:
    """A finished reproduction: the claim, the figures, the verdict the rule gave, what else was measured.

    ``seconds`` / ``cpu_seconds`` are the run's wall and CPU time (``cpu_seconds`` counts every
    thread); ``threads`` is the torch thread count it ran with; ``budget`` the budget it used;
    ``protocol`` the protocol's records; ``headline`` the figure a verdict table shows; ``load`` the
    machine's one-minute load average at the start and at the end of the run; ``placement`` where its trials
    ran when not here (:meth:`~attnlab.repro.harness.fanout.TrialSession.describe`; empty: the serial run).
    """

    slug: str
    paper: str
    claim: str
    quick: bool
    verdict: str
    figures: dict
    measured: dict
    summary: str
    plots: list[str]
    seconds: float
    cpu_seconds: float
    threads: int
    seed: int
    budget: Any = None
    per_seed: dict = field(default_factory=dict)
    protocol: list = field(default_factory=list)
    headline: str = ""
    load: list = field(default_factory=list)
    placement: dict = field(default_factory=dict)
    schema: int = SCHEMA

    @property
    def not_learned(self) -> list[str]:
        """The arms of the ``AT_CHANCE`` figures, each with its comparison when there are several."""
        out = []
        for key, names in self.figures.items():
            if key == AT_CHANCE:
                out += list(names)
            elif key.startswith(AT_CHANCE + ": "):
                out += [f"{n} ({key.removeprefix(AT_CHANCE + ': ')})" for n in names]
        return out

    @property
    def verdict_line(self) -> str:
        """The verdict as shown to a reader: the arms that learned nothing are named; a quick run's says it is a
        smoke test."""
        line = self.verdict
        if self.not_learned:
            line += f"; {', '.join(self.not_learned)} {NOT_LEARNED}"
        return f"{line} ({QUICK_NOTE})" if self.quick else line

    def to_markdown(self) -> str:
        """A short Markdown report: claim, verdict, the figures the rule read, everything measured, plots."""
        lines = [f"# `{self.slug}` ({self.paper}){' — ' + QUICK_NOTE if self.quick else ''}", "",
                 f"**Claim.** {self.claim}", "", f"**Verdict: {self.verdict_line}.** {self.summary}", "",
                 "| figure the rule reads | value |", "|---|---|"]
        lines += [f"| {k} | {format_value(v)} |" for k, v in self.figures.items()]
        lines += ["", "| measured | value |", "|---|---|"]
        lines += [f"| {k} | {format_value(v)} |" for k, v in self.measured.items() if k not in self.figures]
        for rec in self.protocol:
            lines += ["", *protocol_markdown(rec)]
        load = f", load {self.load[0]:.1f} -> {self.load[1]:.1f}" if len(self.load) == 2 else ""
        where = ""
        if self.placement:
            p = self.placement
            where = (f", trials on {p['workers']} local worker(s)" if p["executor"] == "local" else
                     f", trials as Ray tasks ({p['address'] or 'a local instance'})")
        lines += ["", f"Ran in {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU, {self.threads} torch "
                  f"thread(s), seed {self.seed}{load}{where}."]
        lines += [f"![plot]({Path(p).name})" for p in self.plots]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """The result as indented JSON (what ``result.json`` holds)."""
        return json.dumps(_jsonable(self), indent=2, default=float)


def protocol_markdown(rec: dict) -> list[str]:
    """Markdown lines for one protocol record: the sweep (val loss per swept value), the chosen value, the per-seed
    test metric, the arms at chance."""
    hyper, grid = rec.get("hyper", "lr"), rec["grid"]
    frac = f", {rec['sweep_steps']} of {rec['steps']} steps" if rec.get("steps") else ""
    lines = [f"**Protocol: {rec['name']}.** {hyper} swept over {[float(f'{g:.3g}') for g in grid]} on the val split"
             f"{frac} (final val loss picks); then seeds {rec['seeds']} at the chosen {hyper}, {rec['metric']} on the "
             "test split.", "",
             f"| arm | val loss at each {hyper} | chosen {hyper} | test {rec['metric']} per seed |",
             "|---|---|---|---|"]
    for arm, chosen in rec["chosen"].items():
        sweep = rec["sweep"].get(arm, {}).get("val_loss")
        lines.append(f"| {arm} | {format_value(sweep) if sweep else '-'} | {chosen:.3g} | "
                     f"{format_value(rec['test'][arm])} |")
    if rec.get("at_chance"):
        lines.append(f"\nAt chance at every {hyper} tried: {', '.join(rec['at_chance'])}.")
    if rec.get("at_edge"):
        lines.append(f"\nChosen {hyper} at an edge of the grid: {', '.join(rec['at_edge'])}.")
    blind = blind_arms(rec)
    if blind:
        lines.append(f"\n{BLIND_SWEEP_NOTE.format(hyper=hyper)} {', '.join(blind)}.")
    return lines


def format_value(v) -> str:
    """A measured value as report text: intervals as ``mean [low, high] (n=...)``, floats to 4 significant digits,
    short number lists inline, else JSON."""
    if isinstance(v, Interval):
        return v.text()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(format_value(float(x)) for x in v) + "]"
    return json.dumps(_jsonable(v), default=str) if isinstance(v, (dict, list)) else str(v)


def _jsonable(v):
    if isinstance(v, Interval):
        return v.to_dict()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def load_module(slug: str):
    """Import the reproduction module for ``slug`` and check it defines :data:`REQUIRED`.

    KeyError listing the slugs (and close matches) if ``slug`` is unknown; TypeError naming what is missing.
    """
    from attnlab.repro import REPROS

    mod = importlib.import_module(lookup(REPROS, slug, "reproduction", arg="slug"))
    missing = [name for name in REQUIRED if not hasattr(mod, name)]
    if missing:
        raise TypeError(f"{mod.__name__}: expected a reproduction module defining {list(REQUIRED)}, missing {missing}")
    return mod


def figures_of(mod, measured: dict) -> dict:
    """The figures ``mod``'s rule reads (its ``FIGURES``), taken from ``measured``; KeyError naming any missing."""
    missing = [k for k in mod.FIGURES if k not in measured]
    if missing:
        raise KeyError(f"{mod.__name__}.run: expected the figures {list(mod.FIGURES)} in measured, missing {missing}")
    return {k: measured[k] for k in mod.FIGURES}


def run_repro(slug: str, *, quick: bool = False, out_dir: str | Path | None = None, seed: int = 0,
              progress: bool = True, threads: int | None = 1, workers: int = 1, executor: str = "local",
              address: str | None = None, timeout: float | None = None) -> ReproResult:
    """Run reproduction ``slug``; write result.json, report.md and the plots into ``out_dir``; return the result.

    ``out_dir`` defaults to ``runs/repro/<slug>[-quick]``. ``threads``: torch intra-op threads for the run
    (default 1: faster for these small models on a shared machine; None or 0 keeps torch's setting).
    ``executor`` / ``workers`` / ``address`` / ``timeout``: where the trials of its protocol comparisons run
    (:func:`~attnlab.repro.harness.fanout.trials_on`; default: here, one after the other), each on ``threads``
    threads (1 when None or 0); the figures are the serial run's. ``cpu_seconds`` then adds the workers' trials.
    """
    mod = load_module(slug)
    out = Path(out_dir) if out_dir is not None else Path("runs") / "repro" / (slug + ("-quick" if quick else ""))
    ctx = ReproContext(quick=quick, out_dir=out, budget=mod.QUICK if quick else mod.FULL, seed=seed, progress=progress)
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch_threads(threads or None), trials_on(executor, workers, address, threads=threads or 1,
                                                   timeout=timeout) as placement:
        used_threads = torch.get_num_threads()
        outcome = mod.run(ctx)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0 + placement.cpu_seconds
    if not isinstance(outcome, ReproOutcome):
        raise TypeError(f"{mod.__name__}.run: expected a ReproOutcome, received {type(outcome).__name__}")
    figures = figures_of(mod, outcome.measured)
    verdict = mod.judge(figures)
    if verdict not in VERDICTS:
        raise ValueError(f"{mod.__name__}.judge: expected one of {VERDICTS}, received {verdict!r}")
    protocol = _jsonable(outcome.protocol)
    plot_sweeps(ctx, protocol)
    headline = getattr(mod, "HEADLINE", mod.FIGURES[0])
    if headline not in figures:
        raise KeyError(f"{mod.__name__}.HEADLINE: expected one of its FIGURES {list(mod.FIGURES)}, "
                       f"received {headline!r}")
    result = ReproResult(slug=slug, paper=mod.PAPER, claim=mod.CLAIM, quick=quick, verdict=verdict, figures=figures,
                         measured=outcome.measured, summary=outcome.summary, plots=list(ctx.plots), seconds=seconds,
                         cpu_seconds=cpu_seconds, threads=used_threads, seed=seed, budget=_jsonable(ctx.budget),
                         per_seed=outcome.per_seed, protocol=protocol, headline=headline,
                         load=[round(load0, 2), round(os.getloadavg()[0], 2)],
                         placement=placement.describe() if (executor, workers) != ("local", 1) else {})
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(result.to_json())
    (out / "report.md").write_text(result.to_markdown())
    return result


def load_result(path: str | Path) -> ReproResult:
    """A :class:`ReproResult` read back from a ``result.json`` (or the folder holding one)."""
    path = Path(path)
    data = json.loads((path / "result.json" if path.is_dir() else path).read_text())
    for key in ("figures", "measured", "per_seed"):
        data[key] = revive(data.get(key, {}))
    return ReproResult(**data)
