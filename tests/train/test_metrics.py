"""MetricsWriter: metrics.jsonl appended row by row (NaN as null), metrics.csv the same rows with all columns."""
from __future__ import annotations

import csv
import json
import math

from attnlab.train.metrics import MetricsWriter


def test_rows_reach_both_files_in_step_order(tmp_path):
    # A resumed run: earlier rows are written first, train before val at the same step.
    w = MetricsWriter(tmp_path / "run", history=[{"step": 2, "loss": 1.5}, {"step": 1, "loss": 2.0}],
                      evals=[{"step": 2, "loss": 1.4, "acc": 0.5}])
    w.add("train", {"step": 3, "loss": math.nan, "grad_norm": math.inf})
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["split"], x["step"]) for x in lines] == [("train", 1), ("train", 2), ("val", 2), ("train", 3)]
    assert lines[-1]["loss"] is None and lines[-1]["grad_norm"] is None  # JSON has no NaN / inf
    assert not (tmp_path / "run" / "metrics.csv").exists()  # written on demand
    w.close()
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["split", "step", "loss", "acc", "grad_norm"]  # union of the columns, first-seen order
    assert [(r["split"], r["step"], r["acc"]) for r in rows] == [("train", "1", ""), ("train", "2", ""),
                                                                 ("val", "2", "0.5"), ("train", "3", "")]
    assert rows[-1]["loss"] == "nan"
