"""``attnlab repro`` through the command line: ``--all`` and ``report`` (outputs, resuming, exit codes); one
reproduction's trials on workers (the serial figures and verdict; bad placements refused)."""
from __future__ import annotations

import sys
import time

import pytest

from attnlab.cli import main


def _all(tmp_path, *extra):
    return ["repro", "--all", "--quick", "--only", "random_features", "--out", str(tmp_path), "--no-progress", *extra]


def test_repro_all_writes_the_book_resumes_and_report_rewrites_it(tmp_path, capsys):
    main(_all(tmp_path))
    out = capsys.readouterr().out
    assert "1 ran, 0 kept from an earlier run, 0 failed" in out and (tmp_path / "index.html").exists()
    main(_all(tmp_path))
    assert "0 ran, 1 kept from an earlier run, 0 failed" in capsys.readouterr().out
    (tmp_path / "index.html").unlink()
    main(["report", str(tmp_path), "--out", str(tmp_path / "book.html")])
    assert "verdict book:" in capsys.readouterr().out and "random_features" in (tmp_path / "book.html").read_text()


def test_a_failure_exits_1_and_names_the_reproduction(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(_all(tmp_path, "--timeout", "0.01"))
    assert e.value.code == 1 and "failed: random_features (log:" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["repro", "--all", "--workers", "0", "--no-progress"], "workers: expected an int >= 1"),
    (["repro", "--all", "--only", "nope", "--no-progress"], "slugs: expected slugs among"),
    (["report", "/nonexistent/runs"], "runs_dir: expected a folder of reproduction runs"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["repro", "combiner", "--workers", "0"], "--workers: expected an int >= 1, received 0"),
    (["repro", "combiner", "--address", "localhost:6379"], "--address: expected it only with --executor ray"),
    (["repro", "--all", "--executor", "ray"], "--executor: expected local with --all"),
    (["repro", "combiner", "--timeout", "5"], "--timeout: with one reproduction it bounds the wait for each trial"),
    (["repro", "combiner", "--workers", "2", "--timeout", "0"], "--timeout: expected seconds > 0"),
])
def test_bad_placements_exit_2_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--no-progress"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_without_ray_repro_executor_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit) as e:
        main(["repro", "combiner", "--quick", "--executor", "ray", "--out", str(tmp_path), "--no-progress"])
    assert e.value.code == 2 and 'needs Ray, an optional extra: pip install -e ".[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "result.json").exists()


def test_an_unreachable_ray_address_exits_2_within_seconds(tmp_path, capsys):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]" -c constraints.txt')
    from attnlab.distributed.local_ranks import free_port

    t0 = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(["repro", "combiner", "--quick", "--executor", "ray", "--address", f"127.0.0.1:{free_port()}",
              "--out", str(tmp_path), "--no-progress"])
    assert e.value.code == 2 and "address: expected a reachable Ray cluster" in capsys.readouterr().err
    assert time.monotonic() - t0 < 10 and not (tmp_path / "result.json").exists()


@pytest.mark.slow  # combiner --quick twice, serial and on a pool of two: 40-90 s
def test_a_quick_reproduction_on_two_workers_gives_the_serial_figures_and_verdict(tmp_path, capsys):
    from attnlab.repro import load_result

    main(["repro", "combiner", "--quick", "--out", str(tmp_path / "serial"), "--no-progress"])
    main(["repro", "combiner", "--quick", "--workers", "2", "--out", str(tmp_path / "pool"), "--no-progress"])
    serial, pool = load_result(tmp_path / "serial"), load_result(tmp_path / "pool")
    assert serial.figures == pool.figures and serial.verdict == pool.verdict and serial.verdict_line
    assert serial.measured == pool.measured and serial.per_seed == pool.per_seed
    assert serial.protocol == pool.protocol and serial.summary == pool.summary
    assert not serial.placement and pool.placement["workers"] == 2 and pool.placement["trials_in_workers"] == 16
    assert "trials on 2 local worker(s)" in (tmp_path / "pool" / "report.md").read_text()


@pytest.mark.slow  # combiner --quick serially and on a local Ray instance of 2 CPUs: 60-120 s
def test_a_quick_reproduction_on_ray_gives_the_serial_figures_and_verdict(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]" -c constraints.txt')
    from attnlab.repro import load_result

    main(["repro", "combiner", "--quick", "--out", str(tmp_path / "serial"), "--no-progress"])
    main(["repro", "combiner", "--quick", "--executor", "ray", "--workers", "2", "--out", str(tmp_path / "ray"),
          "--no-progress"])
    serial, on_ray = load_result(tmp_path / "serial"), load_result(tmp_path / "ray")
    assert (serial.figures, serial.measured, serial.per_seed, serial.protocol, serial.verdict) == \
        (on_ray.figures, on_ray.measured, on_ray.per_seed, on_ray.protocol, on_ray.verdict)
    assert on_ray.placement["executor"] == "ray" and on_ray.placement["trials_in_workers"] == 16
    assert "trials as Ray tasks (a local instance)" in (tmp_path / "ray" / "report.md").read_text()
