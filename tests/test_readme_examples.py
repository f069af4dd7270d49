"""The README's Python examples run as written (a user copies them first).

Blocks are executed in order in one namespace, as a reader would paste them. Two kinds are
left out and named here: the training example that calls ``train(model, ...)`` (500 steps;
`tests/train` and `tests/cli/test_cli.py` run the same API; the step-by-step ``Trainer`` example,
20 steps, runs here) and the torch.distributed example (needs a process group;
`tests/distributed` runs ring attention on two gloo processes).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARKERS = ("init_process_group", "train(model")
# the analysis examples refer to "a model" and "tokens" without building them
PRELUDE = ("import torch\nfrom attnlab.models import SequenceModel\n"
           "model = SequenceModel(vocab_size=128, dim=32, depth=2, num_heads=2, mixer='softmax', head='lm')\n"
           "tokens = torch.randint(0, 128, (2, 16))\n")


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_examples():
    assert len(_blocks()) >= 8


def test_readme_python_examples_run():
    namespace: dict = {}
    ran = 0
    for i, block in enumerate(_blocks()):
        if any(marker in block for marker in SKIP_MARKERS):
            continue
        if "record_attention(model)" in block or "max_attention_logit(model" in block:
            block = PRELUDE + block
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as err:  # report which block broke, with its first line
            pytest.fail(f"README python block {i} ({block.splitlines()[0]!r}) raised {err!r}")
        ran += 1
    assert ran >= 6
