"""Fixtures of the trainer tests: a tiny task and model (no dependency on attnlab.models or the task
registry), and the uninterrupted reference run that the resume tests compare against.

- ``make_tiny(seed=0, dropout=0.1) -> (TinyLM, ShiftTask)``: model initialised from ``seed``, task seed 0;
  ``tiny_recipe``: a line of Python that defines the same ``make_tiny`` in a subprocess (it runs this
  file with ``runpy`` and takes ``build_tiny``), for the tests that SIGKILL a training process.
- ``make_regression(nan_at=None) -> RegressionTask``: with ``nan_at=i``, training batch ``i`` has a
  NaN target (so step ``i + 1`` has a NaN loss).
- ``resume_config``: the settings of the resume tests (20 steps, evals every 5, a row every step).
- ``reference_run``: the uninterrupted 20-step run of ``make_tiny()`` under ``resume_config``:
  ``(TrainResult, final state dict, out_dir)``; ``assert_same_run(result, model)`` compares a run with it.
- ``assert_same_files(out_dir)``: the run folder of a run under ``resume_config`` + ``ckpt_every=5`` holds
  the same bytes as an uninterrupted run's (metrics files, the kept checkpoints file by file; in state.json
  and manifest.json everything but the process-seeded Python ``random`` state and the hash it changes).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.tasks.base import Batch, Task, TaskSpec
from attnlab.train import TrainConfig, train

VOCAB, SEQ = 11, 8


class ShiftTask(Task):
    """Next token = (token + 1) mod V, with 20% random tokens; "lm" output."""

    name = "shift"
    metric = "accuracy"

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input="tokens", output="lm", seq_len=SEQ, vocab_size=VOCAB, num_classes=VOCAB, causal=True)

    def batch(self, split, index, batch_size):
        self._check_batch_args(split, index, batch_size)
        g = self.generator(split, index)
        start = torch.randint(0, VOCAB, (batch_size, 1), generator=g)
        seq = (start + torch.arange(SEQ + 1)) % VOCAB
        noise = torch.rand(batch_size, SEQ + 1, generator=g) < 0.2
        seq = torch.where(noise, torch.randint(0, VOCAB, seq.shape, generator=g), seq)
        return Batch(seq[:, :-1], seq[:, 1:])

    def loss(self, outputs, batch):
        loss = F.cross_entropy(outputs.reshape(-1, VOCAB), batch.targets.reshape(-1))
        acc = (outputs.argmax(-1) == batch.targets).float().mean()
        return loss, {"accuracy": float(acc)}


class RegressionTask(Task):
    """y = sum of x over features, per position; "regression" output. Training batch ``nan_at`` has a NaN target."""

    name = "reg"
    metric = "mse"
    higher_is_better = False

    def __init__(self, seed: int = 0, nan_at: int | None = None):
        super().__init__(seed=seed)
        self.nan_at = nan_at

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input="vectors", output="regression", seq_len=4, in_dim=3, out_dim=1)

    def batch(self, split, index, batch_size):
        g = self.generator(split, index)
        x = torch.randn(batch_size, 4, 3, generator=g)
        b = Batch(x, x.sum(-1, keepdim=True))
        if split == "train" and index == self.nan_at:
            b.targets[0, 0, 0] = math.nan
        return b

    def loss(self, outputs, batch):
        loss = F.mse_loss(outputs, batch.targets)
        return loss, {"mse": float(loss.detach())}


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> MLP with dropout (exercises the dropout RNG) -> vocab logits."""

    def __init__(self, dim=16, dropout=0.1):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, tokens):
        h = self.norm(self.emb(tokens))
        return self.head(self.drop(torch.relu(self.fc(h))) + h)


def build_tiny(seed: int = 0, dropout: float = 0.1) -> tuple[TinyLM, ShiftTask]:
    """A TinyLM initialised from ``seed`` and the ShiftTask (always task seed 0)."""
    torch.manual_seed(seed)
    return TinyLM(dropout=dropout), ShiftTask(seed=0)


@pytest.fixture
def make_tiny():
    """Factory ``make_tiny(seed=0, dropout=0.1) -> (TinyLM, ShiftTask)``."""
    return build_tiny


@pytest.fixture
def tiny_recipe() -> str:
    """Python source defining ``make_tiny`` (this file's ``build_tiny``) for a subprocess."""
    return f"import runpy; make_tiny = runpy.run_path({str(Path(__file__).resolve())!r})['build_tiny']"


@pytest.fixture
def make_regression():
    """Factory ``make_regression(nan_at=None) -> RegressionTask``."""
    return lambda nan_at=None: RegressionTask(nan_at=nan_at)


RESUME_CONFIG = dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=4, eval_every=5, eval_batches=2, log_every=1)


@pytest.fixture
def resume_config() -> dict:
    """The TrainConfig fields of the resume tests (a copy: tests may extend it)."""
    return dict(RESUME_CONFIG)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The uninterrupted 20-step run: (TrainResult, final state dict, out_dir)."""
    out = tmp_path_factory.mktemp("reference_run")
    model, task = build_tiny()
    result = train(model, task, TrainConfig(**RESUME_CONFIG), out_dir=out, progress=False)
    return result, {k: v.clone() for k, v in model.state_dict().items()}, out


@pytest.fixture
def assert_same_run(reference_run):
    """``assert_same_run(result, model)``: losses, evals, final eval, final weights equal the reference run's exactly."""

    def check(result, model):
        ref, ref_state, _ = reference_run
        losses = lambda r: [(row["step"], row["loss"]) for row in r.history]  # noqa: E731
        assert losses(result) == losses(ref)  # exact, fp32 on CPU
        assert result.evals == ref.evals and result.final_eval == ref.final_eval and result.steps_done == 20
        for k, v in model.state_dict().items():
            assert torch.equal(v, ref_state[k]), k

    return check


@pytest.fixture(scope="session")
def saving_reference_dir(tmp_path_factory) -> Path:
    """The folder of the uninterrupted 20-step run of ``make_tiny()`` under RESUME_CONFIG with ``ckpt_every=5``."""
    out = tmp_path_factory.mktemp("saving_reference_run")
    model, task = build_tiny()
    train(model, task, TrainConfig(**RESUME_CONFIG, ckpt_every=5), out_dir=out, progress=False)
    return out


def _without_python_random(folder: Path) -> tuple[dict, dict]:
    state = json.loads((folder / "state.json").read_text())
    state.pop("python_random")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].pop("state.json")
    return state, manifest


@pytest.fixture
def assert_same_files(saving_reference_dir):
    """``assert_same_files(out_dir)``: byte-for-byte the same run folder as the uninterrupted saving run."""

    def check(out: Path) -> None:
        ref = saving_reference_dir
        for name in ("metrics.jsonl", "metrics.csv"):
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
        names = sorted(p.name for p in (ref / "checkpoints").iterdir())
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == names == ["step_00000015", "step_00000020"]
        for ck in names:
            a, b = out / "checkpoints" / ck, ref / "checkpoints" / ck
            assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
            for f in ("model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors"):
                assert (a / f).read_bytes() == (b / f).read_bytes(), f"{ck}/{f}"
            assert _without_python_random(a) == _without_python_random(b), ck
        assert not (out / ".attnlab-run.lock").exists()

    return check
