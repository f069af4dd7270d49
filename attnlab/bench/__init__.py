"""Benchmarks (``attnlab bench``): time and peak memory of each fast op against its reference and peers.

Layout:

* :mod:`attnlab.bench.registry`: :func:`register_case`, :func:`get_case`, :func:`available_cases`;
  each case names the ops it times and the tests that prove them correct;
* :mod:`attnlab.bench.thunks`: :class:`Impls` / :class:`Thunk`, what a case's setup returns;
* :mod:`attnlab.bench.inputs`: input builders shared by the case modules;
* :mod:`attnlab.bench.runner`: one subprocess per N, warm-up and peak memory per impl, then
  round-robin timing (``run_bench``); :mod:`attnlab.bench.report`: table, JSON, plot;
* one module of cases per ops family: ``attention``, ``linear``, ``local``, ``routed``, ``sparse``, ``dense``
  (the dense-prediction papers: k-means cross-attention, FIT);
  ``vision`` (attnlab vs timm training throughput, ``python -m attnlab.bench.vision``);
  ``linear_tables`` (the tables of benchmarks/linear.md, ``python -m attnlab.bench.linear_tables``).

Names are imported lazily, so that ``python -m attnlab.bench.<module>`` runs each module once.
"""
from __future__ import annotations

import importlib

__all__ = ["BenchCase", "BenchRow", "Impls", "Thunk", "available_cases", "get_case", "register_case", "rows_to_markdown",
           "run_bench", "validate_sizes", "write_outputs"]

_HOME = {
    "BenchCase": "registry", "available_cases": "registry", "get_case": "registry", "register_case": "registry",
    "validate_sizes": "registry", "Impls": "thunks", "Thunk": "thunks", "BenchRow": "runner", "run_bench": "runner",
    "rows_to_markdown": "report", "write_outputs": "report",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"attnlab.bench.{_HOME[name]}"), name)
    raise AttributeError(f"module 'attnlab.bench' has no attribute {name!r}")
