"""Metrics files of a training run: ``metrics.jsonl`` (appended as rows come) and ``metrics.csv``.

Each row is a flat dict with ``split`` = ``"train"`` (a history row: step, loss,
lr, grad_norm, task metrics, z_loss / log_z) or ``"val"`` (an evaluation: step,
loss, task metrics). The CSV holds the same rows with the union of the columns;
it is rewritten whole (runs are small) whenever :meth:`MetricsWriter.write_csv` is called.

Valid line by line after any kill. metrics.csv is written to a temporary file, fsync'ed and
renamed into place, so it is always a complete earlier or later version. metrics.jsonl is
appended one row per ``write(2)`` of the complete line (newline included), never through a
buffer that could flush half a row, and never with a blank line; when a run is resumed the
file is rewritten (atomically) from the checkpoint's rows. A kill can still cut a row that the
kernel was copying across a page boundary (Linux stops a write of a killed process between
pages), so :func:`read_jsonl` drops an unterminated or unparsable *last* line with a warning;
damage anywhere else is an error naming the line.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path

__all__ = ["MetricsWriter", "read_jsonl", "replace_atomically"]


def _json_safe(row: dict) -> dict:
    # JSON has no NaN/inf: a diverged step is written as null and read back as NaN.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def _line(row: dict) -> str:
    return json.dumps(_json_safe(row)) + "\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def replace_atomically(path: Path, write) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync it, rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


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
        path = self.dir / "metrics.jsonl"
        replace_atomically(path, lambda f: f.writelines(_line(r) for r in self.rows))
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)

    def add(self, split: str, row: dict) -> None:
        """Append one row (``split`` "train" or "val") to metrics.jsonl: one complete line in one write."""
        r = {"split": split, **row}
        self.rows.append(r)
        _write_all(self._fd, _line(r).encode())

    def write_csv(self) -> None:
        """(Re)write metrics.csv from all rows so far (atomically), and fsync metrics.jsonl."""
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]

        def write(f):
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(self.rows)

        replace_atomically(self.dir / "metrics.csv", write)
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """Write the CSV and close the JSONL file (a second call does nothing)."""
        if self._fd is None:
            return
        self.write_csv()
        os.close(self._fd)
        self._fd = None


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl (null read back as NaN), tolerating what a kill can leave.

    Blank lines are skipped; a damaged last line (a row cut by a kill: unterminated and not a
    whole JSON object, or unparsable) is dropped with a warning; an unparsable line elsewhere
    raises ValueError naming it.
    """
    path = Path(path)
    lines = [(i, ln) for i, ln in enumerate(path.read_bytes().decode("utf-8", errors="replace").split("\n"), 1)
             if ln.strip()]
    rows = []
    for k, (i, ln) in enumerate(lines):
        try:
            row = json.loads(ln)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            if k == len(lines) - 1:
                warnings.warn(f"{path}: dropped the damaged last line {i} (a row cut by a kill?): {ln[:80]!r} ({e})",
                              stacklevel=2)
                break
            raise ValueError(f"{path}: line {i}: expected a JSON object, received {ln[:80]!r}") from None
        rows.append({key: (math.nan if v is None else v) for key, v in row.items()})
    return rows
