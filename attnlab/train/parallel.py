"""How a training run spreads over processes: the hooks the Trainer calls, and the one-process default.

The :class:`~attnlab.train.Trainer` and :func:`~attnlab.train.evaluate` never talk to
torch.distributed themselves; they call the hooks of a *parallel strategy*:

- ``wrap(model) -> net``: the module that runs forward and backward (e.g. a DistributedDataParallel
  wrapper); called once at setup, after a resumed checkpoint has been loaded;
- ``forward(net, batch, step) -> outputs``: the model outputs for the **whole** batch, on every
  process; a strategy runs its share of the batch and gathers the rest, so the task's loss and
  metrics are computed on the whole batch exactly as in one process (``step`` is the 1-based
  training step, None in evaluation);
- ``is_writer``: whether this process writes the metrics files and checkpoints (rank 0);
- ``barrier()``: wait for every process; the Trainer calls it at the end of a run, so that the files
  rank 0 wrote are complete on every process when ``train()`` returns (a resume may follow at once);
- ``any_rank(flag) -> bool``: whether ``flag`` is true on any process; ``train()`` asks it after every
  step whether a stop signal (SIGINT / SIGTERM) reached any rank, so that all ranks stop at the same
  step boundary (a rank that stopped alone would leave the others waiting in a collective).

:class:`SingleProcess` is the default. The distributed strategies (data parallel, sequence
parallel) live in :mod:`attnlab.distributed`.
"""
from __future__ import annotations

from torch import nn

from attnlab.tasks.base import Batch

__all__ = ["SingleProcess"]


class SingleProcess:
    """One process does everything: the model as given, the whole batch, every file written."""

    is_writer = True
    world_size = 1
    rank = 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model itself."""
        return model

    def forward(self, net: nn.Module, batch: Batch, step: int | None = None):
        """``net(batch.inputs)``."""
        return net(batch.inputs)

    def barrier(self) -> None:
        """Nothing to wait for."""

    def any_rank(self, flag: bool) -> bool:
        """``flag`` itself (there is no other process)."""
        return bool(flag)
