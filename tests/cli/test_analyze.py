"""``attnlab analyze drop`` end to end on an attnlab run folder and a local Hugging Face folder; bad input exits 2
with one line naming the argument."""
from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from attnlab.cli import main
from attnlab.models import build_for_task
from attnlab.tasks import create as create_task
from attnlab.train import TrainConfig, train


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(Path(sysconfig.get_paths()["stdlib"], "json", "decoder.py").read_text()[:6000])
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    task = create_task("char_lm", seq_len=32)
    torch.manual_seed(0)
    model = build_for_task(task.spec, mixer="softmax", dim=16, depth=4, num_heads=2)
    out = tmp_path_factory.mktemp("run")
    train(model, task, TrainConfig(steps=2, batch_size=4, warmup_steps=1, eval_every=0, eval_batches=1), out_dir=out,
          progress=False)
    return out


def _analyze(*args) -> None:
    main(["analyze", "drop", *map(str, args)])


def test_drop_on_an_attnlab_run(run_dir, text, tmp_path, capsys):
    _analyze("--model", run_dir, "--data", text, "--seq-len", 32, "--batch-size", 2, "--calib-batches", 2,
             "--eval-batches", 2, "--target", "block", "--n", 2, "--out", tmp_path)
    out = capsys.readouterr().out
    assert "importance, 1 - cos (P17)" in out and "blocks.3" in out and "perplexity after drops (block)" in out
    report = json.loads((tmp_path / "drop.json").read_text())
    assert report["encoding"] == "char_lm characters" and report["calibration_tokens"] == 2 * 2 * 32
    assert [row["k"] for row in report["curve"]] == [0, 1, 2] and len(report["blocks"]) == 4
    assert all(row["perplexity"] > 1 for row in report["curve"])
    assert report["curve"][2]["attn"] == report["curve"][2]["mlp"] and len(report["curve"][2]["attn"]) == 2
    assert (tmp_path / "drop.png").stat().st_size > 10_000


def test_drop_on_a_local_hf_folder(hf_lm, text, tmp_path, capsys):
    hf_lm("gpt2", vocab_size=256).save_pretrained(tmp_path / "gpt2")
    _analyze("--model", tmp_path / "gpt2", "--data", text, "--seq-len", 64, "--batch-size", 2, "--calib-batches", 1,
             "--eval-batches", 1, "--target", "joint", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "drop.json").read_text())
    assert report["encoding"].startswith("UTF-8 bytes") and len(report["curve"]) == 2  # default n = max(3 // 4, 1)
    assert "transformer.h.2" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--data", "NOFILE"], "--data: expected an existing text file, received 'NOFILE'"),
    (["--n", "9"], "--n: expected 0 <= n <= 4 for --target attn on 4 blocks, received 9"),
    (["--n", "-1"], "--n: expected 0 <= n <= 4 for --target attn on 4 blocks, received -1"),
    (["--data", "SHORT"], "--data: expected a text of at least seq_len=32 tokens, received 25 tokens"),
    (["--data", "SHORT", "--seq-len", "8"], "--data: expected text for at least 2 batches of 4 x 8 tokens"),
])
def test_bad_input_exits_2_with_one_line(run_dir, text, tmp_path, capsys, args, message):
    (tmp_path / "SHORT").write_text("x = 1\n" * 3 + "y = 22\n")  # 25 characters
    base = {"--model": str(run_dir), "--data": str(text), "--out": str(tmp_path)}
    base.update({k: str(tmp_path / v) if v == "SHORT" else v for k, v in zip(args[::2], args[1::2])})
    with pytest.raises(SystemExit) as e:
        _analyze(*[x for kv in base.items() for x in kv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("attnlab analyze: ") and message in err


def test_bad_model_exits_2(tmp_path, text, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        _analyze("--model", tmp_path / "empty", "--data", text)
    assert e.value.code == 2 and "--model: expected an attnlab model/checkpoint/run folder" in capsys.readouterr().err


def test_missing_transformers_is_one_line_with_the_install_command(tmp_path, text, capsys, monkeypatch):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(SystemExit) as e:
        _analyze("--model", tmp_path / "hf", "--data", text)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("attnlab analyze: --model: transformers: expected an importable transformers")
    assert 'pip install -e ".[hf]" -c constraints.txt' in err
