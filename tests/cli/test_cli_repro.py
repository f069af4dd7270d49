"""``attnlab repro --all`` and ``attnlab report`` through the command line: outputs, resuming, exit codes."""
from __future__ import annotations

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
