"""The reproduction harness: what every ``attnlab repro <slug>`` shares, so each slug's module holds only its paper.

- :mod:`~attnlab.repro.harness.runner` — ``run_repro``: budget, threads, wall/CPU time, plots, verdict
  from the module's rule, the protocol's LR-sweep plot, ``result.json`` and ``report.md``;
- :mod:`~attnlab.repro.harness.protocol` — the protocol (issue 18): each arm at its own LR from a sweep on val at
  a fraction of the budget, then seeds on test; arms at chance;
- :mod:`~attnlab.repro.harness.fanout` — the protocol's trials on a local pool or on Ray (``repro <slug> --workers N``,
  ``--executor ray``), the serial run's results;
- :mod:`~attnlab.repro.harness.intervals` — means over seeds with 95 % t intervals;
- :mod:`~attnlab.repro.harness.rules` — the verdicts and the rule shapes (an interval against a margin, parts,
  what arms at chance decide; the older band, two parts and learned guard);
- :mod:`~attnlab.repro.harness.arms` — arms as data and the loop that trains them on a task;
- :mod:`~attnlab.repro.harness.vision` — designs against parameter-matched ViTs on ``shapes``/``digits``;
- :mod:`~attnlab.repro.harness.dense` — an efficient mixer against dense attention in one ViT;
- :mod:`~attnlab.repro.harness.sweep` — learning-rate sweeps (P02's tool);
- :mod:`~attnlab.repro.harness.distill` — teacher weights into students with another attention;
- :mod:`~attnlab.repro.harness.timing` — interleaved training-step timing on task batches;
- :mod:`~attnlab.repro.harness.plots` — matplotlib (Agg) and the plots several reproductions draw.
"""
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, QUICK_NOTE, VERDICTS
from attnlab.repro.harness.runner import ReproContext, ReproOutcome, ReproResult, load_result, run_repro

__all__ = ["run_repro", "load_result", "ReproContext", "ReproOutcome", "ReproResult", "HOLDS", "DOES_NOT_HOLD",
           "INCONCLUSIVE", "VERDICTS", "QUICK_NOTE"]
