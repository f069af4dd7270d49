"""Sequence-parallel training under torchrun: every rank holds N/W tokens of every example.

:class:`SequenceParallel` is a parallel strategy for :class:`attnlab.train.Trainer` (see
:mod:`attnlab.train.parallel`) for a :class:`attnlab.models.SequenceModel` built with
``sequence_parallel="ulysses" | "ring" | "hybrid"``. Rank r runs positions ``[r*N/W, (r+1)*N/W)`` of
the whole batch: embeddings (at their global positions, through the model's ``position_offset``),
norms, MLPs and the head are per token; every attention layer runs the chosen distributed attention
(:mod:`~attnlab.distributed.ulysses`, :mod:`~attnlab.distributed.ring_attention`,
:mod:`~attnlab.distributed.hybrid`) on its own process group, so no rank ever holds the whole
sequence inside attention or an N x N matrix. The per-token outputs are gathered for the loss and the
parameter gradients are averaged by DistributedDataParallel, exactly as in :class:`DataParallel`:
the loss curve equals the single-process run's (up to floating-point order).

Checked before any compute (at setup): N divisible by W; for Ulysses every attention layer's head
count divisible by W, for the hybrid by its Ulysses size U.
"""
from __future__ import annotations

import functools

import torch
import torch.distributed as dist
from torch import nn

from attnlab.distributed.ddp import ShardedStrategy
from attnlab.distributed.hybrid import default_ulysses_size, hybrid_attention, make_hybrid_groups
from attnlab.distributed.ring_attention import ring_attention
from attnlab.distributed.ulysses import check_heads_divisible, ulysses_attention
from attnlab.utils.checks import check_positive_int, describe, fail

__all__ = ["SequenceParallel", "attention_layers", "install_sequence_parallel", "plan_layout"]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The mixers of ``model`` that can run a sequence-parallel attention (``supports_sequence_parallel``)."""
    return [m for m in model.modules() if getattr(m, "supports_sequence_parallel", False)]


def plan_layout(model: nn.Module, kind: str, world: int, ulysses_size: int | None = None) -> tuple[int, int]:
    """``(U, G)``: Ulysses group size and ring size of ``kind`` for ``model`` on ``world`` ranks (U * G = W).

    No communication: run it before any compute. ValueError naming ``num_heads`` when Ulysses (or the hybrid's
    Ulysses size) does not divide an attention layer's head count, or ``ulysses_size`` when it does not divide W.
    """
    heads = sorted({m.num_heads for m in attention_layers(model)})
    if kind == "ulysses":
        u = world
    elif kind == "ring":
        u = 1
    elif kind == "hybrid":
        u = ulysses_size if ulysses_size is not None else min(default_ulysses_size(world, h) for h in heads)
        check_positive_int("ulysses_size", u)
        if world % u:
            fail("ulysses_size", f"a divisor of the world size {world}", u)
    else:
        fail("sequence_parallel", "one of ['ulysses', 'ring', 'hybrid']", describe(kind))
    for h in heads:
        check_heads_divisible(h, u, "num_heads")
    return u, world // u


def install_sequence_parallel(model: nn.Module, kind: str, *, ulysses_size: int | None = None) -> dict:
    """Make every attention layer of ``model`` run ``kind`` attention over the world; returns the layout.

    A collective (it creates process groups): every rank calls it with the same arguments. Checks as
    :func:`plan_layout`. Returns ``{"kind", "world_size", "ulysses_size", "ring_size"}``.
    """
    world = dist.get_world_size()
    u, g = plan_layout(model, kind, world, ulysses_size)
    if kind == "ulysses":
        fn = functools.partial(ulysses_attention, group=dist.new_group(list(range(world))))
    elif kind == "ring":
        fn = functools.partial(ring_attention, group=dist.new_group(list(range(world))))
    else:
        fn = functools.partial(hybrid_attention, groups=make_hybrid_groups(u))
    for m in attention_layers(model):
        m.attention_fn = fn
    return {"kind": kind, "world_size": world, "ulysses_size": u, "ring_size": g}


class SequenceParallel(ShardedStrategy):
    """Sequence parallelism for a SequenceModel built with ``sequence_parallel=...`` (see the module).

    Args:
        seq_len: the task's sequence length N (checked to divide by the world size, before any compute).
        seed: the run's seed (per-step reseeding of dropout).
        ulysses_size: the hybrid's Ulysses group size U (default: the largest divisor of W that divides every
            attention layer's head count).
    Attributes:
        layout: ``{"kind", "world_size", "ulysses_size", "ring_size"}`` after :meth:`wrap`.
    """

    dim = 1

    def __init__(self, *, seq_len: int, seed: int = 0, ulysses_size: int | None = None):
        super().__init__(seed=seed)
        check_positive_int("seq_len", seq_len)
        if seq_len % self.world_size:
            fail("seq_len", f"a multiple of the world size {self.world_size} (each rank holds an equal block)",
                 seq_len)
        self.ulysses_size = ulysses_size
        self.layout: dict | None = None

    def check_model(self, model: nn.Module) -> tuple[int, int]:
        """The ``(U, G)`` layout for ``model``, or the standard error (a model without ``sequence_parallel``, head
        counts that do not divide); no communication, so it runs before any compute."""
        kind = getattr(model, "sequence_parallel", None)
        if kind is None:
            fail("model", "a SequenceModel built with sequence_parallel='ulysses', 'ring' or 'hybrid'",
                 type(model).__name__ + " without sequence_parallel")
        return plan_layout(model, kind, self.world_size, self.ulysses_size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Install the model's sequence-parallel attention in every attention layer, then wrap in DDP."""
        self.check_model(model)
        if self.world_size > 1:
            self.layout = install_sequence_parallel(model, model.sequence_parallel, ulysses_size=self.ulysses_size)
        return super().wrap(model)

    def place(self, inputs: torch.Tensor) -> torch.Tensor:
        """This rank's block of positions; the model is told where the block starts."""
        local = super().place(inputs)
        self.module.position_offset = self.rank * local.shape[1]
        return local

    def run_whole(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """One process: the whole sequence. Several: refused (the attention layers expect a sharded sequence)."""
        if self.world_size > 1:
            fail("inputs", f"a sequence length divisible by the world size {self.world_size}", describe(inputs))
        self.module.position_offset = 0
        return net(inputs)
