"""The attnlab command: listing, bad arguments, train / resume, bench and compare end to end (smoke sizes);
exit codes (2 for bad input with one line on stderr, 1 when part of the work failed, 130 after Ctrl-C), the
run-folder lock and Ctrl-C through the real command, the quick-run note in the terminal."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

import attnlab.repro as repro
from attnlab.cli import main
from attnlab.repro.harness.rules import HOLDS, QUICK_NOTE
from attnlab.repro.harness.runner import ReproOutcome


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
    final = json.loads(out[out.index("{"):])
    assert final["images_per_second"] > 0 and "tokens_per_second" not in final  # an image model counts images
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "associative_recall", "--model", "activator_tiny", "--no-progress",
              "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--model: expected an image task" in capsys.readouterr().err


def test_train_a_named_video_design_on_a_video_task(tmp_path, capsys):
    main(["train", "--task", "moving_shapes_prediction", "--task-arg", "img_size=16", "--model", "forward_vad_tiny",
          "--model-arg", "widths=[4,8,8]", "--model-arg", "num_heads=2", "--model-arg", "depth=1", "--steps", "2",
          "--batch-size", "2", "--warmup", "1", "--eval-every", "0", "--ckpt-every", "0", "--no-progress",
          "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "model forward_vad_tiny" in out and '"steps": 2' in out and '"ssim"' in out
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "moving_shapes_prediction", "--mixer", "softmax", "--no-progress",
              "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "spec: expected a token, vector or image task" in capsys.readouterr().err
    main(["train", "--task", "moving_shapes_zvos", "--task-arg", "img_size=16", "--task-arg", "object_size=[3,5]",
          "--model", "isomer_tiny", "--steps",
          "1", "--batch-size", "2", "--warmup", "1", "--eval-every", "0", "--ckpt-every", "0", "--no-progress",
          "--out", str(tmp_path / "zvos")])
    assert '"J"' in capsys.readouterr().out  # frame + flow channels reach the two-stream segmenter


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


def test_precision_flags_reach_the_run(tmp_path, capsys):
    """``train --precision bf16`` records it in the run's checkpoint and resumes only as bf16; ``compare --precision
    bf16`` trains every run so and says so in its table and results; a bad value exits 2 naming the flag."""
    from attnlab.train import load_latest

    main(_train_args(tmp_path / "bf16", 3, "--precision", "bf16"))
    assert _final(capsys)["steps"] == 3
    assert load_latest(tmp_path / "bf16" / "checkpoints").state["config"]["precision"] == "bf16"
    with pytest.raises(SystemExit) as e:
        main(_train_args(tmp_path / "bf16", 6, "--resume"))
    assert e.value.code == 2 and "precision='fp32' (checkpoint: 'bf16')" in capsys.readouterr().err
    main(["compare", "--suite", "smoke", "--mixers", "identity", "--steps-scale", "0.1", "--precision", "bf16",
          "--no-progress", "--out", str(tmp_path / "cmp")])
    assert "suite smoke, bf16" in capsys.readouterr().out
    data = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert data["precision"] == "bf16" and data["records"][0]["status"] == "ok"
    with pytest.raises(SystemExit) as e:
        main(["compare", "--precision", "fp16", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--precision" in capsys.readouterr().err


def _exit(argv, capsys) -> tuple[int, str]:
    """Run ``attnlab argv`` in-process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, capsys.readouterr().err


def _tiny_train(out, *extra):
    return _train_args(out, 4, *extra)


@pytest.mark.parametrize("argv, message", [
    (["compare", "--steps-scale", "0"], "steps_scale: expected a finite number > 0, received 0.0"),
    (["compare", "--steps-scale", "-1"], "steps_scale: expected a finite number > 0, received -1.0"),
    (["compare", "--mixers", "softmx"], "received 'softmx' (did you mean softmax, softmax_qknorm?)"),
    (["compare", "--mixers", "softmax;model:convit"], "received 'convit' (did you mean convit_tiny, convit_small?)"),
    (["compare", "--tasks", "assoc"], "received 'assoc' (did you mean associative_recall?)"),
    (["compare", "--suite", "smok"], "received 'smok' (did you mean smoke?)"),
    (["compare", "--threads", "-2"], "--threads: expected a positive int, or 0 for torch's default, received -2"),
    (["train", "--task", "assoc"], "task name: expected one of"),
    (["train", "--mixer", "deltanet,sofmax"], "received 'sofmax' (did you mean softmax"),
    (["train", "--task", "digits", "--model", "convit"], "(did you mean convit_tiny, convit_small?)"),
    (["train", "--steps", "20", "--warmup", "30"], "warmup_steps: expected at most steps=20"),
    (["train", "--resume", "--overwrite"], "--overwrite: expected it without --resume"),
    (["train", "--threads", "-1"], "--threads: expected a positive int"),
    (["bench", "attention", "--sizes", "0,-5"], "--sizes: expected"),
    (["bench", "attention", "--sizes", "a,b"], "--sizes: expected comma-separated positive integers, received 'a,b'"),
    (["bench", "attn"], "case: expected one of"),
    (["repro", "dinatt"], "slug: expected one of"),
    (["train", "--task-arg", "seq_lenn=8"], "received unknown ['seq_lenn'] (did you mean seq_len for seq_lenn?)"),
    (["train", "--mixer", "sliding_window", "--mixer-arg", "windw=3"], "(did you mean window for windw?)"),
    (["bench", "attention", "--param", "head=2"], "(did you mean heads for head?)"),
])
def test_bad_input_exits_2_with_one_line_naming_the_argument(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repository
    code, err = _exit(argv, capsys)
    assert code == 2 and message in err and err.startswith(f"attnlab {argv[0]}: ")
    assert err.count("\n") == 1, err  # one line, no traceback
    assert not any(tmp_path.iterdir())  # refused before anything was made


def test_bench_sizes_are_validated_and_suggested_close_matches(capsys):
    code, err = _exit(["bench", "attention", "--sizes", "0,-5"], capsys)
    assert code == 2 and "0" in err and "-5" in err
    code, err = _exit(["bench", "attn"], capsys)
    assert "(did you mean attention" in err


def test_filesystem_problems_are_one_line_errors_naming_the_path(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv in (_tiny_train(a_file), ["compare", "--suite", "smoke", "--out", str(a_file)],
                 ["bench", "attention", "--sizes", "8", "--out", str(a_file)]):
        code, err = _exit(argv, capsys)
        assert code == 2 and err == f"attnlab {argv[0]}: --out: expected a folder, received {a_file}, which is a file\n"
    code, err = _exit(_tiny_train(a_file / "below"), capsys)
    assert code == 2 and f"--out: expected a folder that can be created, received {a_file / 'below'} (" in err


def test_a_read_only_mount_is_a_one_line_error(tmp_path):
    """In a private mount namespace (unshare, no effect outside), --out on a read-only tmpfs."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-rm", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"'
    proc = subprocess.run([unshare, "-rm", "sh", "-c", script, "sh", str(ro), sys.executable, "-m", "attnlab.cli",
                           *_tiny_train(ro / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"attnlab train: --out: expected a folder that can be created, received {ro / 'run'} "
                           f"(Read-only file system)\n")


def test_a_diverged_training_run_exits_1(tmp_path, capsys):
    code, err = _exit(_tiny_train(tmp_path, "--lr", "1e30", "--clip", "0"), capsys)
    assert code == 1 and "attnlab train: the run diverged at step" in err


def test_a_folder_holding_a_run_needs_resume_or_overwrite(tmp_path, capsys):
    main(_tiny_train(tmp_path))
    first = _final(capsys)
    before = (tmp_path / "metrics.jsonl").read_bytes()
    code, err = _exit(_tiny_train(tmp_path), capsys)
    assert code == 2 and "which holds a run (checkpoints up to step 4, metrics.jsonl, metrics.csv)" in err
    assert "--resume continues that run, overwrite=True / --overwrite deletes it" in err
    assert (tmp_path / "metrics.jsonl").read_bytes() == before
    main(_tiny_train(tmp_path, "--overwrite"))
    assert _final(capsys)["final_eval"] == first["final_eval"]


@pytest.fixture
def failing_compare(monkeypatch):
    """compare runs in-process, and building the identity model raises."""
    import attnlab.compare as compare

    real_run, real_build = compare.run_compare, compare.build_model

    def build(spec, run, task_spec):
        if spec == "identity":
            raise RuntimeError("simulated failure")
        return real_build(spec, run, task_spec)

    monkeypatch.setattr(compare, "build_model", build)
    monkeypatch.setattr(compare, "run_compare", lambda *a, **k: real_run(*a, **{**k, "isolate": False}))


def test_compare_lists_a_failed_run_below_the_ranking_and_exits_1(tmp_path, capsys, failing_compare):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--suite", "smoke", "--steps-scale", "0.1", "--no-progress", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert e.value.code == 1 and "attnlab compare: 1 of 2 runs failed" in captured.err
    out = captured.out
    ranking = out[out.index("overall ranking"):out.index("failed runs (not ranked)")]
    assert "softmax" in ranking and "identity" not in ranking
    assert "RuntimeError: simulated failure" in out[out.index("failed runs (not ranked)"):]


@pytest.fixture
def fake_repro(monkeypatch):
    mod = types.ModuleType("attnlab_cli_fake_repro")
    mod.PAPER, mod.CLAIM, mod.QUICK, mod.FULL, mod.FIGURES = "P00", "one is positive", {"x": 1.0}, {"x": 2.0}, ("x",)
    mod.judge = lambda f: HOLDS
    mod.run = lambda ctx: ReproOutcome({"x": ctx.budget["x"]}, "measured x")
    monkeypatch.setitem(sys.modules, "attnlab_cli_fake_repro", mod)
    monkeypatch.setitem(repro.REPROS, "fake", "attnlab_cli_fake_repro")
    return mod


def test_a_quick_verdict_says_so_in_the_terminal(tmp_path, capsys, fake_repro):
    main(["repro", "fake", "--quick", "--no-progress", "--out", str(tmp_path / "q")])
    out = capsys.readouterr().out
    assert f"verdict: {HOLDS} ({QUICK_NOTE})." in out and f"{HOLDS} ({QUICK_NOTE})" in out.splitlines()[0] + out
    main(["repro", "fake", "--no-progress", "--out", str(tmp_path / "full")])
    out = capsys.readouterr().out
    assert f"verdict: {HOLDS}. measured x" in out and QUICK_NOTE not in out


def test_list_summaries_are_cut_at_word_boundaries(capsys):
    import attnlab.tasks as tasks
    from attnlab.cli import _doc_line, _fit_last_column

    for cls in tasks.available().values():
        line = _doc_line(cls)
        full = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        assert line == full or (line.endswith(" …") and (full.startswith(line[:-2] + " ") or
                                                         full.startswith(line[:-2])) and len(line) <= 90)
    rows = _fit_last_column(["name", "summary"], [["x", "word " * 100]])
    assert rows[0][1].endswith(" …") and "word wor " not in rows[0][1] and rows[0][1][:-2].strip().endswith("word")


_CLI = [sys.executable, "-m", "attnlab.cli"]


@pytest.mark.slow  # three start-ups of the command: ~15 s quiet, a minute under load
def test_two_commands_into_one_folder_and_ctrl_c_through_the_real_command(tmp_path):
    """A second `attnlab train` into a folder in use exits 2 naming the holder; Ctrl-C stops the first at a step
    boundary with a checkpoint, exit 130 and the --resume command, which then completes the run like one that
    was never interrupted."""
    out = tmp_path / "run"
    args = ["train", "--task", "associative_recall", "--task-arg", "seq_len=16", "--task-arg", "num_pairs=2",
            "--task-arg", "vocab_size=16", "--dim", "16", "--depth", "1", "--heads", "2", "--steps", "3000",
            "--batch-size", "8", "--warmup", "2", "--eval-every", "0", "--ckpt-every", "1000", "--no-progress"]
    first = subprocess.Popen([*_CLI, *args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        t0 = time.monotonic()
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():  # training has begun
            assert first.poll() is None, first.communicate()
            assert time.monotonic() - t0 < 120
            time.sleep(0.05)
        second = subprocess.run([*_CLI, *args, "--out", str(out), "--resume"], capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first run ended before the test could interrupt it"
        assert second.returncode == 2, second.stderr
        assert f"locked by pid {first.pid} on host" in second.stderr and second.stderr.count("\n") == 1
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, stderr
    assert "SIGINT received: stopping training after this step" in stderr and "Traceback" not in stderr
    stopped = json.loads(stdout[stdout.index("{"):])
    assert stopped["interrupted"] == "SIGINT" and 0 < stopped["steps"] < 3000
    resume = stderr.strip().splitlines()[-1].strip()
    assert resume.startswith("attnlab train ") and resume.endswith(f"--out {out} --resume")
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts[-1] == f"step_{stopped['steps']:08d}"
    # finish the run from the printed command, with a shorter budget so the test stays short: same arguments
    # except --steps, which the resume allows (warning: the cosine schedule changes)
    cmd = resume.split()[1:]
    cmd[cmd.index("--steps") + 1] = str(stopped["steps"] + 5)
    done = subprocess.run([*_CLI, *cmd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout[done.stdout.index("{"):])["steps"] == stopped["steps"] + 5


def test_a_damaged_checkpoint_is_skipped_with_a_one_line_warning(tmp_path, capsys):
    main(_train_args(tmp_path, 6))
    whole = _final(capsys)
    model = tmp_path / "checkpoints" / "step_00000006" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-3] ^= 0x10  # same size, still parses: only the checksum can tell
    model.write_bytes(bytes(data))
    main(_train_args(tmp_path, 6, "--resume"))
    err = capsys.readouterr().err
    assert err.startswith("attnlab train: warning: checkpoint ") and err.count("\n") == 1, err
    assert "step_00000006 skipped: " in err and "model.safetensors: expected SHA-256" in err
    assert "(content damaged); trying an older one" in err
    main(_train_args(tmp_path, 6, "--resume"))
    assert _final(capsys)["final_eval"] == whole["final_eval"]  # resumed from step 3, re-saved step 6
