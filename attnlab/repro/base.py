"""The reproduction framework behind ``attnlab repro <slug>``.

Each reproduction is a module under ``attnlab.repro`` that defines

    PAPER = "P02"                       # id from PAPERS.md
    CLAIM = "one sentence: the paper's key finding, as the paper states it"
    def run(ctx: ReproContext) -> ReproOutcome: ...

``run`` trains / measures at CPU scale (``ctx.quick`` selects a < 1 minute
smoke-size version), writes its plot(s) into ``ctx.out_dir`` and returns the
measured figures with a verdict decided from them by a rule stated in the
module (never hard-coded). :func:`run_repro` times it, writes ``result.json``
and ``report.md`` and returns a :class:`ReproResult`.
"""
from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "VERDICTS", "ReproContext", "ReproOutcome", "ReproResult", "run_repro"]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold at this scale"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)


@dataclass
class ReproContext:
    """What a reproduction is given: quick mode, output folder, seed, progress bars on/off."""

    quick: bool
    out_dir: Path
    seed: int = 0
    progress: bool = True

    def path(self, name: str) -> Path:
        """A file path inside the output folder (created on demand)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name


@dataclass
class ReproOutcome:
    """What ``run`` returns.

    Attributes:
        measured: the figures measured (name -> number or small table), JSON-able.
        verdict: one of :data:`VERDICTS`, decided from ``measured``.
        summary: a few sentences: what was run, what was measured, how it compares
            with the claim, and anything that differs from the paper's setup.
        plots: paths of the plots written.
    """

    measured: dict
    verdict: str
    summary: str
    plots: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, received {self.verdict!r}")


@dataclass
class ReproResult:
    """A finished reproduction: the claim, what was measured, the verdict."""

    slug: str
    paper: str
    claim: str
    quick: bool
    seconds: float
    measured: dict
    verdict: str
    summary: str
    plots: list[str]

    def to_markdown(self) -> str:
        """A short Markdown report."""
        lines = [
            f"# `{self.slug}` ({self.paper}){' — quick mode' if self.quick else ''}",
            "",
            f"**Claim.** {self.claim}",
            "",
            f"**Verdict: {self.verdict}.** {self.summary}",
            "",
            "| measured | value |",
            "|---|---|",
        ]
        for k, v in self.measured.items():
            lines.append(f"| {k} | {_fmt(v)} |")
        lines += ["", f"Ran in {self.seconds:.1f} s."]
        lines += [f"![plot]({Path(p).name})" for p in self.plots]
        return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
        return "[" + ", ".join(_fmt(float(x)) for x in v) + "]"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


def load_module(slug: str):
    """Import the reproduction module for ``slug`` (KeyError listing the slugs if unknown)."""
    from attnlab.repro import REPROS

    if slug not in REPROS:
        import difflib

        close = difflib.get_close_matches(str(slug), list(REPROS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"slug: expected one of {sorted(REPROS)}, received {slug!r}{hint}")
    return importlib.import_module(REPROS[slug])


def run_repro(slug: str, *, quick: bool = False, out_dir: str | Path | None = None, seed: int = 0, progress: bool = True) -> ReproResult:
    """Run reproduction ``slug``; writes result.json, report.md and plots into ``out_dir``.

    ``out_dir`` defaults to ``runs/repro/<slug>[-quick]``.
    """
    mod = load_module(slug)
    out = Path(out_dir) if out_dir is not None else Path("runs") / "repro" / (slug + ("-quick" if quick else ""))
    ctx = ReproContext(quick=quick, out_dir=out, seed=seed, progress=progress)
    t0 = time.perf_counter()
    outcome = mod.run(ctx)
    if not isinstance(outcome, ReproOutcome):
        raise TypeError(f"{mod.__name__}.run: expected a ReproOutcome, received {type(outcome).__name__}")
    result = ReproResult(
        slug=slug,
        paper=mod.PAPER,
        claim=mod.CLAIM,
        quick=quick,
        seconds=time.perf_counter() - t0,
        measured=outcome.measured,
        verdict=outcome.verdict,
        summary=outcome.summary,
        plots=[str(p) for p in outcome.plots],
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(asdict(result), indent=2, default=float))
    (out / "report.md").write_text(result.to_markdown())
    return result
