"""The task contract: deterministic batches, a spec the model is built from, a loss.

A task knows nothing of models. It says what goes in and what comes out
(:class:`TaskSpec`), produces batch ``index`` of a split deterministically from
its seed (so a resumed run sees exactly the batches an uninterrupted run sees),
and scores model outputs.

Model outputs by ``spec.output``:
  - ``"lm"``: (B, N, num_classes) logits, one prediction per position;
  - ``"class"``: (B, num_classes) logits, one label per example;
  - ``"regression"``: (B, N, out_dim) values, one per position (the task picks
    the positions it scores).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from attnlab.utils.checks import check_choice, check_positive_int

__all__ = ["TaskSpec", "Batch", "Task", "TokenLMTask", "split_seed"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """What a model for this task takes and returns.

    Attributes:
        input: ``"tokens"`` (B, N) long, ``"vectors"`` (B, N, in_dim) float, or
            ``"image"`` (B, in_chans, H, W) float.
        output: ``"lm"``, ``"class"`` or ``"regression"`` (see module doc).
        seq_len: N for token/vector inputs (None for images).
        vocab_size: number of token ids (tokens input).
        in_dim: feature size (vectors input).
        img_size: (H, W) (image input); in_chans: channels.
        num_classes: classes per prediction (lm / class output).
        out_dim: values per position (regression output).
        causal: the task needs causal mixing (next-token prediction).
    """

    input: str
    output: str
    seq_len: int | None = None
    vocab_size: int | None = None
    in_dim: int | None = None
    img_size: tuple[int, int] | None = None
    in_chans: int | None = None
    num_classes: int | None = None
    out_dim: int | None = None
    causal: bool = False

    def __post_init__(self):
        check_choice("input", self.input, ("tokens", "vectors", "image"))
        check_choice("output", self.output, ("lm", "class", "regression"))


@dataclass
class Batch:
    """One batch: ``inputs`` for the model, ``targets`` for the loss, plus optional extras."""

    inputs: torch.Tensor
    targets: torch.Tensor
    extras: dict = field(default_factory=dict)

    def to(self, device: torch.device | str) -> "Batch":
        """Copy to ``device``."""
        return Batch(
            self.inputs.to(device),
            self.targets.to(device),
            {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.extras.items()},
        )

    @property
    def size(self) -> int:
        """Number of examples."""
        return self.inputs.shape[0]


def split_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed that is a pure function of (task seed, split, batch index)."""
    check_choice("split", split, SPLITS)
    return (seed * 1_000_003 + SPLITS.index(split) * 7_919 + index * 104_729) % (2**63 - 1)


class Task(ABC):
    """Base class for tasks.

    Subclasses set ``name``, ``metric`` (name of the quality metric),
    ``higher_is_better`` and ``spec``, and implement :meth:`batch` and
    :meth:`loss`. Batches are a pure function of ``(seed, split, index)``.
    """

    name: str = "task"
    metric: str = "accuracy"
    higher_is_better: bool = True

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, received {seed!r}")
        self.seed = seed

    @property
    @abstractmethod
    def spec(self) -> TaskSpec:
        """The model-facing description of this task."""

    @abstractmethod
    def batch(self, split: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of ``split`` ("train", "val" or "test"), deterministic."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss and a dict of metrics (must contain ``self.metric``)."""

    def tokens_per_example(self) -> int:
        """Tokens the model processes per example (for tokens/s)."""
        return self.spec.seq_len or 1

    def generator(self, split: str, index: int) -> torch.Generator:
        """A torch.Generator seeded from (seed, split, index)."""
        return torch.Generator().manual_seed(split_seed(self.seed, split, index))

    def _check_batch_args(self, split: str, index: int, batch_size: int) -> None:
        check_choice("split", split, SPLITS)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index: expected an int >= 0, received {index!r}")
        check_positive_int("batch_size", batch_size)


class TokenLMTask(Task):
    """A generated token task read as next-token prediction: (B, N) ids in, (B, N, vocab) logits out, causal.

    Subclasses set ``self.seq_len`` and ``self.vocab_size`` in ``__init__``; the spec follows from them.
    """

    seq_len: int
    vocab_size: int

    @property
    def spec(self) -> TaskSpec:
        """Tokens in, next-token logits over the vocabulary out, causal."""
        return TaskSpec(input="tokens", output="lm", seq_len=self.seq_len, vocab_size=self.vocab_size,
                        num_classes=self.vocab_size, causal=True)
