"""The attnlab command: listing, bad arguments, train / resume, bench and compare end to end (smoke sizes)."""
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


def _train_args(out, steps, *extra):
    return ["train", "--task", "associative_recall", "--task-arg", "seq_len=16", "--task-arg", "num_pairs=2",
            "--task-arg", "vocab_size=16", "--dim", "16", "--depth", "1", "--heads", "2", "--steps", str(steps),
            "--batch-size", "8", "--warmup", "2", "--eval-every", "0", "--ckpt-every", "3", "--no-progress",
            "--out", str(out), *extra]


def _final(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def test_train_then_resume_through_the_cli_equals_one_run(tmp_path, capsys):
    """A run that lost its last checkpoint (as if killed after the step-3 save) resumes to the same end."""
    import shutil

    main(_train_args(tmp_path / "whole", 6))
    whole = _final(capsys)
    main(_train_args(tmp_path / "killed", 6))
    capsys.readouterr()
    ckpts = sorted((tmp_path / "killed" / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_00000003", "step_00000006"]
    shutil.rmtree(ckpts[-1])
    main(_train_args(tmp_path / "killed", 6, "--resume"))
    resumed = _final(capsys)
    assert resumed["steps"] == whole["steps"] == 6
    assert resumed["final_eval"] == whole["final_eval"]
    rows = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if "time" not in k} for r in rs]  # noqa: E731
    assert strip(rows(tmp_path / "killed")) == strip(rows(tmp_path / "whole"))


def test_train_a_named_design_on_an_image_task(tmp_path, capsys):
    main(["train", "--task", "digits", "--task-arg", "img_size=16", "--model", "activator_tiny", "--steps", "2",
          "--batch-size", "4", "--warmup", "1", "--eval-every", "0", "--ckpt-every", "0", "--no-progress",
          "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "model activator_tiny" in out and '"steps": 2' in out
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "associative_recall", "--model", "activator_tiny", "--no-progress",
              "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--model: expected an image task" in capsys.readouterr().err


def test_compare_through_the_cli_overrides_mixers_and_tasks(tmp_path, capsys):
    main(["compare", "--suite", "smoke", "--mixers", " identity;", "--tasks", "associative_recall",
          "--steps-scale", "0.1", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "attnlab compare — suite smoke" in out and "overall ranking" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["mixer"] for r in data["records"]] == ["identity"]
    assert all(r["status"] == "ok" and r["curve"][-1][0] == 2 for r in data["records"])  # 20 steps * 0.1
    with pytest.raises(SystemExit) as e:
        main(["compare", "--suite", "nope", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "suite: expected one of" in capsys.readouterr().err


def test_train_with_sequence_parallel_in_one_process_is_the_plain_run(tmp_path, capsys, monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    base = ["train", "--task", "associative_recall", "--steps", "3", "--batch-size", "4", "--warmup", "1",
            "--eval-every", "0", "--ckpt-every", "0", "--no-progress", "--dim", "16", "--heads", "2"]
    main(base + ["--out", str(tmp_path / "plain")])
    plain = _final(capsys)
    main(base + ["--sequence-parallel", "hybrid", "--out", str(tmp_path / "sp")])
    assert _final(capsys)["final_eval"] == plain["final_eval"] and "world_size" not in plain
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "digits", "--sequence-parallel", "ring", "--no-progress", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--sequence-parallel: expected a sequence task" in capsys.readouterr().err


def test_compare_with_ray_and_an_unreachable_address_exits_2_within_seconds(tmp_path, capsys):
    import time

    from attnlab.distributed.local_ranks import free_port

    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]" -c constraints.txt')
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(["compare", "--suite", "smoke", "--executor", "ray", "--address", f"127.0.0.1:{free_port()}",
              "--no-progress", "--out", str(tmp_path)])
    assert e.value.code == 2 and time.monotonic() - t0 < 10
    assert "address: expected a reachable Ray cluster" in capsys.readouterr().err
