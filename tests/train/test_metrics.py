"""MetricsWriter: metrics.jsonl appended row by row (NaN as null), one whole line per write; metrics.csv the same
rows with all columns, replaced atomically; read_jsonl tolerates a row cut by a kill at the end, and only there."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import warnings

import pytest

from attnlab.train.metrics import MetricsWriter, read_jsonl


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


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


def test_each_row_is_one_complete_line_in_one_write(tmp_path, monkeypatch):
    import attnlab.train.metrics as metrics_mod

    writes = []
    real = os.write
    monkeypatch.setattr(metrics_mod.os, "write", lambda fd, data: writes.append(bytes(data)) or real(fd, data))
    w = MetricsWriter(tmp_path, history=[{"step": 1, "loss": 2.0}])
    w.add("train", {"step": 2, "loss": 1.0, "note": "x" * 20000})  # longer than any buffer
    w.add("val", {"step": 2, "loss": 1.5})
    assert len(writes) == 2 and all(b.endswith(b"\n") and b.count(b"\n") == 1 for b in writes)
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 2]
    w.close()
    w.close()  # idempotent
    assert not list(tmp_path.glob("*.tmp"))  # the CSV went through a temporary file renamed into place


@pytest.mark.parametrize("tail, kept", [
    ('{"split": "train", "step": 3, "lo', [1, 2]),      # unterminated: cut by a kill
    ('{"split": "train", "step": 3}', [1, 2, 3]),       # complete but unterminated: kept
    ('{"split": "train", "step": 3, "lo\n', [1, 2]),    # terminated but cut
    ("\n\n", [1, 2]),                                  # blank lines
])
def test_the_reader_tolerates_what_a_kill_leaves_at_the_end(tmp_path, tail, kept):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"split": "train", "step": 1, "loss": null}\n{"split": "train", "step": 2, "loss": 1.0}\n' + tail)
    damaged = kept != [1, 2, 3] and tail.strip()
    with (pytest.warns(UserWarning, match="dropped the damaged last line 3") if damaged else _no_warning()):
        rows = read_jsonl(path)
    assert [r["step"] for r in rows] == kept and math.isnan(rows[0]["loss"])  # null read back as NaN


def test_damage_before_the_last_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2: expected a JSON object, received"):
        read_jsonl(path)


def test_reopening_for_a_resumed_run_rewrites_the_file_without_the_torn_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"split": "train", "step": 1}\n{"split": "train", "step": 2}\n{"split": "tr')
    w = MetricsWriter(tmp_path, history=[{"step": 1}, {"step": 2}])
    w.add("train", {"step": 3})
    assert path.read_text() == "".join(f'{{"split": "train", "step": {i}}}\n' for i in (1, 2, 3))
    w.close()
