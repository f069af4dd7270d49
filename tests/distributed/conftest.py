"""Shared by the distributed tests: every parallel attention computed once on real gloo ranks, and its reference.

Spawning ranks costs seconds (each process imports torch), so the attentions of all the test modules run in
one 2-rank session (``parallel_attention``) and one 4-rank session for the genuine Ulysses x ring hybrid
(``hybrid_attention_4``); each test module reads its cases from them. Every rank computes this rank's block,
backpropagates a fixed upstream gradient, gathers outputs and gradients, and rank 0 returns them; the parent
compares them with :func:`attnlab.ops.attention_reference` on the whole sequence (``reference``).

Ranks run through :func:`attnlab.distributed.local_ranks.run_ranks` (free port, collective timeout, a
deadline after which every rank is killed), so a broken collective fails the test instead of hanging.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from attnlab.distributed.local_ranks import run_ranks
from attnlab.ops import attention_reference

SHAPE = dict(b=2, h=4, n=24, d=8)
DTYPES = (torch.float64, torch.float32, torch.bfloat16)
#: (kind, dtype, causal, masked) of every case
CASES = [(kind, dt, c, m) for kind in ("ring", "ulysses", "hybrid_u1", "hybrid_u2", "heads") for dt in DTYPES
         for c in (False, True) for m in (False, True)]
# one head per chunk (the default puts these small tensors' heads in one chunk): the chunk loops at work
CASES += [(kind, torch.float64, c, m) for kind in ("ring_chunked", "ulysses_chunked") for c in (False, True)
          for m in (False, True)]


def case_inputs(dtype: torch.dtype, *, b=SHAPE["b"], h=SHAPE["h"], n=SHAPE["n"], d=SHAPE["d"]):
    """q, k, v, upstream gradient and a key-padding mask (leading pads, so some causal rows see no key)."""
    g = torch.Generator().manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(4))
    kpm = torch.rand(b, n, generator=g) > 0.3
    kpm[0, :7] = False
    return q, k, v, dout, kpm


def _run_case(kind, dtype, causal, masked, groups):
    from attnlab.distributed import (gather_sequence, head_sharded_attention, hybrid_attention, ring_attention,
                                     shard_sequence, ulysses_attention)

    q, k, v, dout, kpm = case_inputs(dtype)
    mask = kpm if masked else None
    if kind == "heads":  # replicated inputs; each rank's gradients cover its heads, summed over ranks
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = head_sharded_attention(*leaves, block_size=5, causal=causal, key_padding_mask=mask)
        out.backward(dout)
        grads = [t.grad.clone() for t in leaves]
        for gr in grads:
            dist.all_reduce(gr)
        return [out.detach()] + grads
    leaves = [shard_sequence(t).requires_grad_(True) for t in (q, k, v)]
    local_mask = shard_sequence(kpm, 1) if masked else None
    kw = dict(causal=causal, key_padding_mask=local_mask)
    if kind.endswith("_chunked"):
        kw["heads_per_chunk"] = 1
    if kind.startswith("ring"):
        out = ring_attention(*leaves, **kw)
    elif kind.startswith("ulysses"):
        out = ulysses_attention(*leaves, **kw)
    else:
        out = hybrid_attention(*leaves, groups=groups[kind], **kw)
    out.backward(shard_sequence(dout))
    return [gather_sequence(t) for t in (out.detach(), *(x.grad for x in leaves))]


def _errors_of(fn) -> str | None:
    try:
        fn()
    except (ValueError, TypeError) as e:
        return str(e)
    return None


def _comm_checks() -> dict:
    """all_to_all and gather_for_loss on this rank: what they returned, and the gradients they passed back."""
    from attnlab.distributed.comm import all_to_all, gather_for_loss

    rank, world = dist.get_rank(), dist.get_world_size()
    x = (torch.arange(2 * 4 * 3, dtype=torch.float64).reshape(1, 4, 3, 2) + 100 * rank).requires_grad_(True)
    y = all_to_all(x, scatter_dim=1, gather_dim=2)            # (1, 4/W, 3W, 2)
    (y * torch.arange(y.numel(), dtype=torch.float64).reshape(y.shape)).sum().backward()
    z = torch.full((2, 3), float(rank + 1), requires_grad=True)
    g = gather_for_loss(z, 0)
    (g * torch.arange(g.numel(), dtype=torch.float32).reshape(g.shape)).sum().backward()
    return {"rank": rank, "world": world, "x": x.detach(), "y": y.detach(), "x_grad": x.grad, "g": g.detach(),
            "z_grad": z.grad}


def attention_session(cases, hybrid_sizes) -> dict:
    """On every rank: all ``cases``, plus the refusals; rank 0 returns ``{case: [out, dq, dk, dv]}``."""
    from attnlab.distributed import make_hybrid_groups, ulysses_attention

    groups = {f"hybrid_u{u}": make_hybrid_groups(u) for u in hybrid_sizes}
    results = {case: _run_case(*case, groups) for case in cases}
    results["comm"] = _comm_checks()
    q = torch.randn(1, 3, 4, 2)  # 3 heads cannot be split over 2 ranks
    results["refusals"] = {
        "ulysses_uneven_heads": _errors_of(lambda: ulysses_attention(q, q, q)),
        "dropout": _errors_of(lambda: ulysses_attention(q[:, :2], q[:, :2], q[:, :2], dropout_p=0.1)),
    }
    return results if dist.get_rank() == 0 else {"comm": results["comm"]}


@pytest.fixture(scope="session")
def parallel_attention_all_ranks():
    """The 2-rank attention session's results on both ranks: rank 0 all cases, rank 1 its ``comm`` checks."""
    return run_ranks(attention_session, CASES, (1, 2), world_size=2, timeout=240)


@pytest.fixture(scope="session")
def parallel_attention(parallel_attention_all_ranks):
    """``{case: [out, dq, dk, dv]}`` of every case in :data:`CASES` on 2 gloo ranks (one session), and refusals."""
    return parallel_attention_all_ranks[0]


@pytest.fixture(scope="session")
def hybrid_attention_4():
    """The genuine hybrid (Ulysses groups of 2 x ring of 2) on 4 ranks: ``{case: [out, dq, dk, dv]}``."""
    cases = [("hybrid_u2", dt, c, m) for dt in (torch.float64,) for c in (False, True) for m in (False, True)]
    return run_ranks(attention_session, cases, (2,), world_size=4, timeout=240)[0]


@pytest.fixture
def reference():
    """``reference(dtype, causal, masked)`` -> [out, dq, dk, dv] of dense attention on the whole sequence, in the
    case's dtype (bf16 cases: in fp32, the precision their fp32 accumulation aims at)."""

    def ref(dtype, causal, masked):
        q, k, v, dout, kpm = case_inputs(dtype)
        cd = torch.float32 if dtype == torch.bfloat16 else dtype
        leaves = [t.to(cd).requires_grad_(True) for t in (q, k, v)]
        out = attention_reference(*leaves, causal=causal, key_padding_mask=kpm if masked else None)
        out.backward(dout.to(cd))
        return [out.detach()] + [t.grad for t in leaves]

    return ref


#: tolerances (atol = rtol) of outputs and gradients against the reference, per dtype
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 6e-2}


@pytest.fixture
def check_case(parallel_attention, reference):
    """``check_case(kind, dtype, causal, masked, results=None)``: the case's outputs and gradients equal dense
    attention's to :data:`TOL`."""

    def check(kind, dtype, causal, masked, results=None):
        got = (results or parallel_attention)[(kind, dtype, causal, masked)]
        for name, a, e in zip(("output", "dq", "dk", "dv"), got, reference(dtype, causal, masked)):
            assert a.dtype == dtype, f"{kind} {name}: dtype {a.dtype}"
            torch.testing.assert_close(a.to(e.dtype), e, atol=TOL[dtype], rtol=TOL[dtype],
                                       msg=lambda m, n=name: f"{kind} {n}: {m}")

    return check


# ---- training under a strategy (test_ddp.py, test_sequence_parallel.py, test_launch.py) ---------------------

#: the tiny run every training test uses: 6 steps, a checkpoint stop at step 3
TRAIN = dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=3, eval_batches=1, log_every=1, seed=0)
STOP_AT = 3


def tiny_task():
    """Associative recall, 32 tokens, 4 pairs: per-example losses on 4 positions spread over the sequence."""
    from attnlab.tasks import create

    return create("associative_recall", seq_len=32, num_pairs=4, vocab_size=32, seed=0)


def tiny_model(task, *, dropout=0.0, sequence_parallel=None):
    """A 2-layer causal LM (dim 16, 2 heads), the same weights in every process (seeded)."""
    from attnlab.models import build_for_task

    torch.manual_seed(0)
    return build_for_task(task.spec, mixer="softmax", dim=16, depth=2, num_heads=2, dropout=dropout,
                          sequence_parallel=sequence_parallel)


def stop_at(step):
    """A callback that stops the run after ``step`` (a checkpoint is written there)."""
    return lambda s, row: s >= step


def run_summary(model, result) -> dict:
    """What a test compares: per-step losses and grad norms, evaluations, final evaluation, final weights."""
    return {"loss": [r["loss"] for r in result.history], "grad_norm": [r["grad_norm"] for r in result.history],
            "evals": [e["loss"] for e in result.evals], "final_eval": result.final_eval,
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def train_run(out_dir=None, *, parallel=None, dropout=0.0, sequence_parallel=None, resume=False, callbacks=()):
    """One run of the tiny setting (``parallel``: a strategy or None for one process)."""
    from attnlab.train import TrainConfig, train

    task = tiny_task()
    model = tiny_model(task, dropout=dropout, sequence_parallel=sequence_parallel)
    result = train(model, task, TrainConfig(**TRAIN), out_dir=out_dir, resume=resume, progress=False,
                   callbacks=callbacks, parallel=parallel() if parallel else None)
    return run_summary(model, result)


def training_session(root: str, single_process_checkpoint: str) -> dict:
    """On every rank of 2: data-parallel runs (uninterrupted; stopped at step 3 and resumed; resumed from a
    one-process checkpoint), a stopped copy for the parent to resume at world size 1, and sequence-parallel runs."""
    import shutil
    from pathlib import Path

    from attnlab.distributed import DataParallel, SequenceParallel

    def dp():
        return DataParallel(batch_size=TRAIN["batch_size"], seed=TRAIN["seed"])

    root = Path(root)
    out = {"dp": train_run(parallel=dp), "dp_dropout": train_run(root / "dropout_a", parallel=dp, dropout=0.1)}
    train_run(root / "dropout_b", parallel=dp, dropout=0.1, callbacks=[stop_at(STOP_AT)])
    out["dp_dropout_resumed"] = train_run(root / "dropout_b", parallel=dp, dropout=0.1, resume=True)
    train_run(root / "two", parallel=dp, callbacks=[stop_at(STOP_AT)])
    if dist.get_rank() == 0:
        shutil.copytree(root / "two", root / "two_stopped")
    dist.barrier()
    out["dp_files"] = sorted(p.name for p in (root / "two").iterdir())
    out["dp_from_one_process"] = train_run(single_process_checkpoint, parallel=dp, resume=True)
    for kind in ("ulysses", "ring", "hybrid"):
        out[f"sp_{kind}"] = train_run(parallel=lambda: SequenceParallel(seq_len=32, seed=0), sequence_parallel=kind)
    out["signalled"] = signalled_run(root / "signalled", dp())
    return out if dist.get_rank() == 0 else {"signalled": out["signalled"]}


#: the step after which rank 1 alone sends itself SIGTERM in :func:`signalled_run`
SIGNAL_AT = 2


def signalled_run(out_dir, parallel) -> dict:
    """The tiny run into ``out_dir`` where, after step :data:`SIGNAL_AT`, rank 1 alone receives SIGTERM; what
    this rank saw: its pid, the pid in the run folder's lock file during the run, the result's step and
    ``interrupted``, the checkpoints present when train() returned."""
    import os
    import signal

    from attnlab.train import TrainConfig, train
    from attnlab.train.run_lock import LOCK_NAME

    seen = {"pid": os.getpid()}

    def probe(step, row):
        seen.setdefault("lock_pid", json.loads((out_dir / LOCK_NAME).read_text())["pid"])
        if step == SIGNAL_AT and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    task = tiny_task()
    result = train(tiny_model(task), task, TrainConfig(**TRAIN), out_dir=out_dir, progress=False,
                   callbacks=[probe], parallel=parallel)
    return {**seen, "steps": result.steps_done, "interrupted": result.interrupted,
            "checkpoints": sorted(p.name for p in (out_dir / "checkpoints").iterdir())}


@pytest.fixture(scope="session")
def parallel_training(tmp_path_factory):
    """The 2-rank training session (:func:`training_session`), after the one-process runs it is compared with:
    ``{"single": uninterrupted one-process run, "ranks": the session's results (rank 0), "rank_one": rank 1's
    :func:`signalled_run`, "root": its folder}``."""
    root = tmp_path_factory.mktemp("parallel_training")
    single = train_run()
    train_run(root / "one", callbacks=[stop_at(STOP_AT)])
    ranks, rank_one = run_ranks(training_session, str(root), str(root / "one"), world_size=2, timeout=300)
    return {"single": single, "ranks": ranks, "rank_one": rank_one, "root": root}


@pytest.fixture
def train_one():
    """``train_one(out_dir=None, *, parallel=None, dropout=0.0, sequence_parallel=None, resume=False, callbacks=())``:
    the tiny run in this process (see :func:`train_run`)."""
    return train_run
