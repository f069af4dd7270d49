"""The attnlab command: listing, bad arguments, bench and compare end to end (smoke sizes)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnlab.cli import main


def test_list_mixers_prints_registered_names_and_param_counts(capsys):
    main(["list", "mixers"])
    out = capsys.readouterr().out
    assert "softmax_qknorm" in out and "identity" in out
    assert "16,512" in out  # softmax_qknorm at dim 64: 3*64*64 + 64*64 + 64 + 2*2*16


def test_unknown_names_exit_2_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "no_such_case"])
    assert e.value.code == 2
    assert "case: expected one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["repro", "no_such_slug"])
    assert "slug: expected one of" in capsys.readouterr().err


def test_bench_runs_each_size_in_a_subprocess_and_writes_outputs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "bench", "attention", "--sizes", "64,128", "--repeats", "1",
         "--param", "heads=2", "--param", "head_dim=16", "--no-progress", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert {(r["n"], r["impl"]) for r in rows} == {(64, "attnlab"), (64, "reference"), (128, "attnlab"), (128, "reference")}
    assert all(r["status"] == "ok" and r["seconds"] > 0 for r in rows)
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "time / reference" in (tmp_path / "bench.md").read_text()
