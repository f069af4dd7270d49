"""Ring attention on 2 gloo processes equals single-process attention, forward and backward."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnlab.distributed import gather_sequence, ring_attention, shard_sequence
from attnlab.ops import attention_reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, dtype, causal, results):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(2, 3, 12, 8, generator=g, dtype=dtype) for _ in range(3))
        dout = torch.randn(2, 3, 12, 8, generator=g, dtype=dtype)
        ql, kl, vl = (shard_sequence(t).requires_grad_(True) for t in (q, k, v))
        out = ring_attention(ql, kl, vl, causal=causal)
        out.backward(shard_sequence(dout))
        full = [gather_sequence(t) for t in (out.detach(), ql.grad, kl.grad, vl.grad)]
        if rank == 0:
            results.put([t.numpy() for t in full])
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("causal", [False, True])
def test_two_ranks_match_single_process_reference(causal):
    dtype = torch.float64
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, dtype, causal, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = results.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 12, 8, generator=g, dtype=dtype).requires_grad_(True) for _ in range(3))
    dout = torch.randn(2, 3, 12, 8, generator=g, dtype=dtype)
    ref = attention_reference(q, k, v, causal=causal)
    ref.backward(dout)
    for a, r in zip(got, (ref.detach(), q.grad, k.grad, v.grad)):
        torch.testing.assert_close(torch.from_numpy(a), r, atol=1e-10, rtol=1e-10)


def test_refuses_without_a_process_group():
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(ValueError, match="group: expected an initialised torch.distributed process group"):
        ring_attention(q, q, q)
