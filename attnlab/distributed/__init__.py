"""Attention and training across processes on torch.distributed (gloo on CPU, nccl with CUDA).

- sequence parallelism: :func:`ring_attention`, :func:`ulysses_attention`, :func:`hybrid_attention`
  (Ulysses within groups, ring across them), all on a sequence sharded contiguously across ranks;
- P06's head-sharded, query-blocked exact attention: :func:`head_sharded_attention`;
- training under torchrun: :class:`DataParallel` and :class:`SequenceParallel`, strategies for
  :class:`attnlab.train.Trainer`, and :func:`process_group` to join torchrun's group with a timeout;
- :func:`run_ranks`: run a function on W gloo ranks on loopback (tests, benchmarks, reproductions).
"""
from attnlab.distributed.ddp import DataParallel
from attnlab.distributed.head_sharded import head_sharded_attention
from attnlab.distributed.hybrid import HybridGroups, hybrid_attention, make_hybrid_groups
from attnlab.distributed.local_ranks import RanksFailed, run_ranks
from attnlab.distributed.process_group import init_process_group, launched_by_torchrun, process_group
from attnlab.distributed.ring_attention import gather_sequence, ring_attention, shard_sequence
from attnlab.distributed.sequence_parallel import SequenceParallel
from attnlab.distributed.ulysses import ulysses_attention

__all__ = ["ring_attention", "ulysses_attention", "hybrid_attention", "make_hybrid_groups", "HybridGroups",
           "head_sharded_attention", "shard_sequence", "gather_sequence", "DataParallel", "SequenceParallel",
           "process_group", "init_process_group", "launched_by_torchrun", "run_ranks", "RanksFailed"]
