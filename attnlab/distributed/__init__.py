"""Attention across processes on torch.distributed (gloo on CPU, any backend)."""
from attnlab.distributed.ring_attention import gather_sequence, ring_attention, shard_sequence

__all__ = ["ring_attention", "shard_sequence", "gather_sequence"]
