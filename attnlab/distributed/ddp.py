"""Data-parallel training under torchrun: DistributedDataParallel, each rank its slice of every batch.

:class:`DataParallel` is a parallel strategy for :class:`attnlab.train.Trainer` (see
:mod:`attnlab.train.parallel`). Every rank builds the same task and model and asks for the same
deterministic global batch of each step; rank r runs the model on examples
``[r*B/W, (r+1)*B/W)``, the outputs of all ranks are gathered (:func:`~attnlab.distributed.comm.gather_for_loss`)
and the task's loss and metrics are computed on the whole batch on every rank, exactly as in one
process. DistributedDataParallel averages the parameter gradients, and the gather's backward scales
each rank's share by W, so the averaged gradient is the single-process gradient of the whole batch:
clipping, AdamW and the divergence check then see the same numbers on every rank as one process
would (up to the floating-point order of the split matmuls). Rank 0 alone writes metrics and
checkpoints; the optimizer state is replicated, so a checkpoint resumes at any world size that
divides the batch.

Randomness (dropout, drop-path): each step reseeds torch's RNG from (seed, step, rank), so a run
resumed at the same world size draws the same masks as an uninterrupted one; a model with dropout
draws different masks than the single-process run does (the curves then agree only statistically).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from attnlab.distributed.comm import gather_for_loss
from attnlab.distributed.process_group import rank_and_world
from attnlab.tasks.base import Batch
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["DataParallel", "ShardedStrategy", "step_seed"]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of training step ``step`` on rank ``rank`` (a pure function, 63 bits)."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + 1) % (2**63 - 1)


class ShardedStrategy:
    """A strategy that splits every batch along one dimension of its inputs across the ranks of the world.

    Subclasses set ``dim`` (0: examples, 1: sequence positions) and may extend :meth:`wrap` and
    :meth:`place` (what a rank does before running its shard).

    Attributes:
        rank, world_size: this process's place (0 and 1 outside torch.distributed).
        is_writer: rank 0 (writes metrics and checkpoints).
        module: the unwrapped model (after :meth:`wrap`).
    """

    dim = 0

    def __init__(self, *, seed: int = 0, group: dist.ProcessGroup | None = None):
        self.rank, self.world_size = rank_and_world(group)
        self.group, self.seed = group, seed
        self.is_writer = self.rank == 0
        self.module: nn.Module | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """Remember ``model``; wrap it in DistributedDataParallel when there is more than one rank (the wrapper
        broadcasts rank 0's parameters, so every rank starts from the same weights)."""
        self.module = model
        if self.world_size == 1:
            return model
        # buffers are deterministic (position tables): no broadcast before every forward
        return DistributedDataParallel(model, process_group=self.group, forward_sync_buffers=False)

    def place(self, inputs: torch.Tensor) -> torch.Tensor:
        """This rank's share of ``inputs`` along :attr:`dim` (equal shares; the caller checked divisibility)."""
        size = inputs.shape[self.dim] // self.world_size
        return inputs.narrow(self.dim, self.rank * size, size)

    def forward(self, net: nn.Module, batch: Batch, step: int | None = None) -> torch.Tensor:
        """Outputs for the whole batch on every rank: this rank's share through ``net``, then gathered.

        ``step`` (training): torch's RNG is reseeded from (seed, step, rank) first. A batch whose
        :attr:`dim` does not divide by the world size (e.g. an evaluation batch of another size) runs whole
        on every rank (the same result, without sharing the work).
        """
        if step is not None:
            torch.manual_seed(step_seed(self.seed, step, self.rank))
        if self.world_size == 1 or batch.inputs.shape[self.dim] % self.world_size:
            return self.run_whole(net, batch.inputs)
        return gather_for_loss(net(self.place(batch.inputs)), self.dim, self.group)

    def run_whole(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The model on the whole input, in this process (no sharding)."""
        return net(inputs)

    def barrier(self) -> None:
        """Wait for every rank (the end of a run: rank 0's files are then complete everywhere)."""
        if self.world_size > 1:
            dist.barrier(group=self.group)

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a max all-reduce of one number; every rank must call it)."""
        if self.world_size == 1:
            return bool(flag)
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
        return bool(t.item())


class DataParallel(ShardedStrategy):
    """Data parallelism: rank r of W runs examples ``[r*B/W, (r+1)*B/W)`` of every batch (see the module).

    Args:
        batch_size: the global batch size of the run (checked to divide by the world size, before any compute).
        seed: the run's seed (per-step reseeding of dropout).
        group: process group (default: the world).
    """

    dim = 0

    def __init__(self, *, batch_size: int, seed: int = 0, group: dist.ProcessGroup | None = None):
        super().__init__(seed=seed, group=group)
        check_positive_int("batch_size", batch_size)
        if batch_size % self.world_size:
            fail("batch_size", f"a multiple of the world size {self.world_size} (each rank takes an equal share)",
                 batch_size)
