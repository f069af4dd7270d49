"""A tiny task and model for the trainer tests (no dependency on attnlab.models / tasks modules)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.tasks.base import Batch, Task, TaskSpec

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
    """y = sum of x over features, per position; "regression" output."""

    name = "reg"
    metric = "mse"
    higher_is_better = False

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(input="vectors", output="regression", seq_len=4, in_dim=3, out_dim=1)

    def batch(self, split, index, batch_size):
        g = self.generator(split, index)
        x = torch.randn(batch_size, 4, 3, generator=g)
        return Batch(x, x.sum(-1, keepdim=True))

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


def make(seed=0, dropout=0.1):
    """A TinyLM initialised from ``seed`` and the ShiftTask (always task seed 0)."""
    torch.manual_seed(seed)
    return TinyLM(dropout=dropout), ShiftTask(seed=0)
