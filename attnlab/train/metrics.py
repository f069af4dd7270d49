"""Metrics files of a training run: ``metrics.jsonl`` (appended as rows come) and ``metrics.csv``.

Each row is a flat dict with ``split`` = ``"train"`` (a history row: step, loss,
lr, grad_norm, task metrics, z_loss / log_z) or ``"val"`` (an evaluation: step,
loss, task metrics). The CSV holds the same rows with the union of the columns;
it is rewritten whole (runs are small) whenever :meth:`MetricsWriter.write_csv` is called.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

__all__ = ["MetricsWriter"]


def _json_safe(row: dict) -> dict:
    # JSON has no NaN/inf: a diverged step is written as null and read back as NaN.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class MetricsWriter:
    """Writes training and evaluation rows into ``out_dir``.

    Args:
        out_dir: folder (created on demand).
        history, evals: rows already done (a resumed run), written first so that
            the files match an uninterrupted run's.
    """

    def __init__(self, out_dir: str | Path, history: list[dict] = (), evals: list[dict] = ()):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = [{"split": "train", **r} for r in history] + [{"split": "val", **r} for r in evals]
        self.rows.sort(key=lambda r: (r["step"], r["split"] != "train"))
        self._jsonl = open(self.dir / "metrics.jsonl", "w")
        for r in self.rows:
            self._jsonl.write(json.dumps(_json_safe(r)) + "\n")
        self._jsonl.flush()

    def add(self, split: str, row: dict) -> None:
        """Append one row (``split`` "train" or "val") to metrics.jsonl."""
        r = {"split": split, **row}
        self.rows.append(r)
        self._jsonl.write(json.dumps(_json_safe(r)) + "\n")
        self._jsonl.flush()

    def write_csv(self) -> None:
        """(Re)write metrics.csv from all rows so far."""
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        tmp = self.dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.dir / "metrics.csv")

    def close(self) -> None:
        """Write the CSV and close the JSONL file."""
        self.write_csv()
        self._jsonl.close()
