"""The runner: bad sizes fail loudly, failures are rows (and a non-zero exit), outputs state their setting."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from attnlab.bench.report import rows_to_markdown, setting_line
from attnlab.bench.runner import BenchRow, measure_impls, run_bench
from attnlab.bench.thunks import Impls
from attnlab.cli import main


@pytest.mark.parametrize("sizes", ["0", "-5", "0,-5", "64,1.5", "abc", "64,,128"])
def test_bench_with_bad_sizes_exits_2_with_one_line_naming_sizes(sizes, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "attention", "--sizes", sizes, "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnlab bench: --sizes: expected") and "\n" not in err


def test_a_non_square_size_for_a_grid_case_is_refused_before_any_run(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "na2d", "--sizes", "1024,1000", "--no-progress"])
    assert e.value.code == 2
    assert "--sizes: expected positive square numbers" in capsys.readouterr().err


def test_run_bench_refuses_bad_arguments_before_spawning():
    with pytest.raises(ValueError, match="sizes: expected"):
        run_bench("attention", sizes=[0], progress=False)
    with pytest.raises(ValueError, match="repeats"):
        run_bench("attention", sizes=[8], repeats=0, progress=False)
    with pytest.raises(ValueError, match="params: expected keys"):
        run_bench("attention", sizes=[8], params={"windw": 3}, progress=False)


def test_worker_rows_state_threads_and_params_and_the_table_states_the_setting(tmp_path):
    rows = run_bench("attention", sizes=[16], repeats=1, params={"heads": 2, "head_dim": 8}, threads=1, progress=False)
    assert {r.impl for r in rows} == {"attnlab", "reference"}
    assert all(r.status == "ok" and r.threads == 1 and r.params["heads"] == 2 for r in rows)
    md = rows_to_markdown(rows, "reference")
    assert md.splitlines()[0] == "attention: B=1, H=2, D=8, causal=False; float32; fwdbwd; torch threads 1"
    assert "| 16 | attnlab | fwdbwd | float32 | 1 |" in md


def test_a_failing_impl_is_an_error_row_and_the_others_are_still_timed():
    impls = Impls("fwd")
    x = torch.ones(3)
    impls.add("good", lambda: x * 2, [x])
    impls.add("bad", lambda: torch.ones(2) @ torch.ones(3), [x])
    impls.skip("absent", "not installed")
    res = measure_impls(impls, ["good", "bad", "absent", "unknown"], repeats=2)
    assert res["good"][2] == "ok" and res["good"][0] > 0
    assert res["bad"][2].startswith("error:") and res["bad"][0] is None
    assert res["absent"][2] == "skipped: not installed"
    assert res["unknown"][2] == "skipped: not available here"


def test_a_failure_in_the_timed_rounds_is_charged_to_the_impl_that_failed():
    impls = Impls("fwd")
    x = torch.ones(3)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 1:  # the warm-up passes, the first timed call fails
            raise RuntimeError("out of luck\nsecond line")
        return x

    impls.add("good", lambda: x * 2, [x])
    impls.add("flaky", flaky, [x])
    res = measure_impls(impls, ["good", "flaky"], repeats=3)
    assert res["flaky"] == (None, None, "error: out of luck")
    assert res["good"] == (None, None, "error: not timed: flaky failed in the timed rounds")


def test_failed_measurements_make_the_command_exit_1(tmp_path):
    """An error row is still written to the table, but the command does not report success."""
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "bench", "attention", "--sizes", "16", "--repeats", "1",
         "--param", "heads=2", "--param", "head_dim=8", "--param", "batch=-1",
         "--no-progress", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert rows and rows[0]["status"].startswith("error")
    assert proc.returncode == 1 and "1 of 1 measurements failed" in proc.stderr


def test_setting_line_lists_distinct_settings():
    rows = [BenchRow("c", "a", 8, "fwd", "float32", 1.0, 1.0, "ok", 1, {"batch": 2, "heads": 4, "head_dim": 16,
                                                                          "threads": 1, "window": 3}),
            BenchRow("c", "b", 8, "fwd", "float32", 1.0, 1.0, "ok", 2, {})]
    assert setting_line(rows) == "c: B=2, H=4, D=16, window=3; float32; fwd; torch threads 1/2"


def test_several_dtypes_run_side_by_side_in_one_worker():
    """``dtype="float32,bfloat16,autocast"``: one worker sets the case up per dtype, suffixes the later impls, runs
    autocast calls with fp32 inputs, and the table adds each twin's ratio to its first-dtype impl."""
    rows = run_bench("attention", sizes=[16], repeats=1, params={"heads": 2, "head_dim": 8}, threads=1,
                     dtype="float32,bfloat16,autocast", progress=False)
    by = {r.impl: r for r in rows}
    assert set(by) == {f"{i}{s}" for i in ("attnlab", "reference") for s in ("", "@bfloat16", "@autocast")}
    assert all(r.status == "ok" for r in rows)
    assert by["attnlab"].dtype == "float32" and by["attnlab@bfloat16"].dtype == "bfloat16"
    assert by["attnlab@autocast"].dtype == "autocast"
    md = rows_to_markdown(rows, "reference")
    line = next(ln for ln in md.splitlines() if "| attnlab@bfloat16 |" in ln)
    ratio = by["attnlab@bfloat16"].seconds / by["attnlab"].seconds
    assert line.endswith(f" {ratio:.3g} |") and "time / same impl, first dtype" in md
    with pytest.raises(ValueError, match="dtype: expected distinct names among"):
        run_bench("attention", sizes=[8], dtype="float32,float16", progress=False)


def test_impls_with_several_dtypes_select_the_named_impls_and_their_twins():
    rows = run_bench("attention", sizes=[16], repeats=1, params={"heads": 2, "head_dim": 8}, threads=1,
                     dtype="float32,bfloat16", impls=["attnlab"], progress=False)
    assert [(r.impl, r.status) for r in rows] == [("attnlab", "ok"), ("attnlab@bfloat16", "ok")]


def test_an_autocast_thunk_runs_its_forward_under_autocast_only():
    from attnlab.bench.thunks import Thunk, autocast_thunk

    seen = []
    x = torch.randn(4, 4, requires_grad=True)
    t = autocast_thunk(Thunk(lambda: seen.append(torch.is_autocast_enabled("cpu")) or (x @ x), [x], "fwdbwd"))
    out = t.outputs()
    assert seen == [True] and out[0].dtype == torch.bfloat16 and x.grad.dtype == torch.float32


@pytest.mark.parametrize("args,flag", [(["--repeats", "0"], "--repeats"), (["--threads", "0"], "--threads"),
                                       (["--param", "windw=3"], "--param")])
def test_other_bad_bench_arguments_exit_2_naming_the_flag(args, flag, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "attention", "--sizes", "8", "--no-progress", *args])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"attnlab bench: {flag}: expected")
