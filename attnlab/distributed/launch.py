"""``attnlab train`` under torchrun: join the group, pick the strategy, turn a lost rank into a clear error.

    torchrun --standalone --nproc-per-node 2 -m attnlab train --task char_lm --steps 200 --out runs/x
    torchrun --standalone --nproc-per-node 2 -m attnlab train --task char_lm --sequence-parallel ring ...

:func:`torchrun_session` is a no-op outside torchrun (rank 0 of 1). Under torchrun it joins the
process group with a collective timeout and, when a collective fails because another rank died or
hung past the timeout, raises :class:`RankLost` naming this rank, the timeout and the last
complete checkpoint (rank 0 writes checkpoints atomically, so that one is intact) instead of a
backend traceback; the group is destroyed on the way out. :func:`make_strategy` returns the
:mod:`attnlab.train.parallel` strategy for the model: :class:`~attnlab.distributed.SequenceParallel`
when it was built with ``sequence_parallel=...``, else :class:`~attnlab.distributed.DataParallel`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch.distributed as dist
from torch import nn

from attnlab.distributed.ddp import DataParallel
from attnlab.distributed.process_group import DEFAULT_TIMEOUT, init_process_group, launched_by_torchrun
from attnlab.distributed.sequence_parallel import SequenceParallel
from attnlab.train.checkpoint import CHECKPOINT_DIR, list_checkpoints

__all__ = ["Session", "RankLost", "torchrun_session", "make_strategy", "is_collective_failure"]

#: fragments of the messages torch.distributed / gloo raise when a peer is gone or a collective timed out
_LOST = ("Connection closed by peer", "Connection reset by peer", "Connection refused", "Broken pipe", "Timed out",
         "timed out")


class RankLost(RuntimeError):
    """Another rank died, or a collective waited longer than the timeout; the run stopped on this rank."""


@dataclass(frozen=True)
class Session:
    """This process's place in the run: ``rank``, ``world_size`` (0 and 1 outside torchrun), ``distributed``."""

    rank: int = 0
    world_size: int = 1
    distributed: bool = False
    timeout: float = DEFAULT_TIMEOUT

    @property
    def is_writer(self) -> bool:
        """Rank 0 prints results and writes files."""
        return self.rank == 0


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is what a collective raises when a peer died or did not answer in time."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _LOST)


def _last_checkpoint(out_dir: str | Path | None) -> str:
    found = list_checkpoints(Path(out_dir) / CHECKPOINT_DIR) if out_dir is not None else []
    return f"{found[0][1]} (step {found[0][0]})" if found else "none yet"


@contextlib.contextmanager
def torchrun_session(*, timeout: float = DEFAULT_TIMEOUT, out_dir: str | Path | None = None) -> Iterator[Session]:
    """The :class:`Session` of this process (joined to torchrun's group when launched by torchrun); see module.

    ``out_dir``: the run folder, named in the :class:`RankLost` message with its last complete checkpoint.
    """
    if not launched_by_torchrun():
        yield Session()
        return
    rank, world = init_process_group(timeout=timeout)
    try:
        yield Session(rank, world, True, timeout)
    except Exception as e:
        if not is_collective_failure(e):
            raise
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise RankLost(
            f"rank {rank} of {world}: a collective failed, so another rank died or did not answer within the "
            f"{timeout:g} s timeout ({type(e).__name__}: {first}). Last complete checkpoint: "
            f"{_last_checkpoint(out_dir)}; continue with the same command plus --resume") from e
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def make_strategy(model: nn.Module, *, batch_size: int, seq_len: int | None, seed: int = 0,
                  ulysses_size: int | None = None):
    """The strategy for ``model`` in the current process group (checks divisibility before any compute)."""
    if getattr(model, "sequence_parallel", None):
        strategy = SequenceParallel(seq_len=seq_len, seed=seed, ulysses_size=ulysses_size)
        strategy.check_model(model)
        return strategy
    return DataParallel(batch_size=batch_size, seed=seed)
