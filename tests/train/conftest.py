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
"""
from __future__ import annotations

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

