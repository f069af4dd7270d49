"""Combiner (P03) and SEA (P20) mixers beyond the registry contract: reductions to softmax, weight
transfer from a softmax teacher, the exposed estimate, recording, and a few training steps."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.recording import record_attention
from attnlab.ops.sea import expand_estimate


def _softmax_and(name, dim=16, heads=4, **kw):
    torch.manual_seed(0)
    teacher = mixers.create("softmax", dim, num_heads=heads).double().eval()
    student = mixers.create(name, dim, num_heads=heads, **kw).double().eval()
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected
    return teacher, student, missing


@pytest.mark.parametrize("name", ["combiner_fixed", "combiner_axial"])
@pytest.mark.parametrize("causal", [True, False])
def test_combiner_with_one_block_is_the_softmax_mixer(name, causal):
    teacher, student, missing = _softmax_and(name, block_size=64)
    assert not missing
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    torch.testing.assert_close(student(x, causal=causal), teacher(x, causal=causal), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["combiner_fixed", "combiner_axial"])
def test_combiner_default_block_is_sqrt_n_and_differs_from_softmax(name):
    teacher, student, _ = _softmax_and(name)
    assert student.block_for(256) == 16 and student.block_for(10) == 3
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    assert (student(x, causal=True) - teacher(x, causal=True)).abs().max() > 1e-4


def test_sea_keeping_every_key_is_the_softmax_mixer():
    teacher, student, missing = _softmax_and("sea", top_k=10_000, t_m=8, average_mix=False)
    assert missing == ["feature_proj"]  # a buffer of fixed random features
    x = torch.randn(2, 29, 16, dtype=torch.float64)
    for causal in (True, False):
        torch.testing.assert_close(student(x, causal=causal), teacher(x, causal=causal), atol=1e-12, rtol=1e-12)


def test_sea_teacher_weights_load_and_gates_start_near_plain_sparse_attention():
    _, student, missing = _softmax_and("sea", top_k=4, t_m=8)
    assert sorted(missing) == ["feature_proj", "gates.bias", "gates.weight"]
    g = torch.sigmoid(student.gates(torch.randn(3, 16, dtype=torch.float64)))
    assert (g > 0.9).all()


def test_sea_exposes_its_estimate_for_distillation():
    torch.manual_seed(0)
    m = mixers.create("sea", 16, num_heads=2, top_k=4, t_m=8, block=4).double()
    x = torch.randn(2, 21, 16, dtype=torch.float64, requires_grad=True)
    m(x, causal=True)
    assert m.last_estimate is None
    m.keep_estimate = True
    m(x, causal=True)
    est = m.last_estimate
    assert est.shape == (2, 2, 21, 8) and est.requires_grad
    torch.testing.assert_close(est.sum(-1), torch.ones(2, 2, 21, dtype=torch.float64), atol=1e-12, rtol=0)
    est.sum().backward()  # reaches the q/k projection
    assert m.qkv.weight.grad is not None and m.qkv.weight.grad.abs().sum() > 0
    torch.testing.assert_close(m.estimate(x.detach(), causal=True), est.detach(), atol=1e-12, rtol=0)
    full = expand_estimate(est.detach(), causal=True, block=4)
    assert (full[..., ~torch.ones(21, 21, dtype=torch.bool).tril()] == 0).all()
    with pytest.raises(ValueError, match=r"x: expected a tensor of rank 3"):
        m.estimate(x[0])


@pytest.mark.parametrize("name,kw", [("combiner_fixed", {"block_size": 4}), ("combiner_axial", {"block_size": 4}),
                                     ("sea", {"top_k": 4, "t_m": 8, "block": 4})])
def test_recorded_maps_are_row_stochastic_and_causal(name, kw):
    torch.manual_seed(0)
    m = mixers.create(name, 16, num_heads=2, **kw).double().eval()
    x = torch.randn(1, 18, 16, dtype=torch.float64)
    with record_attention(m) as rec:
        y = m(x, causal=True)
    probs = rec.last(type(m).__name__)
    assert probs.shape == (1, 2, 18, 18)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, 2, 18, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (probs[..., ~torch.ones(18, 18, dtype=torch.bool).tril()] == 0).all()
    torch.testing.assert_close(m(x, causal=True), y, atol=1e-12, rtol=1e-12)
    if name == "sea":
        assert ((probs > 0).sum(-1) <= 8).all()
    else:
        assert ((probs > 0).sum(-1) == torch.arange(1, 19)).all()  # full support


@pytest.fixture
def one_thread():
    """Small steps: a second intra-op thread only adds contention on the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["combiner_fixed", "combiner_axial", "sea"])
def test_a_small_language_model_trains(name, one_thread):
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=8, dim=32, depth=1, num_heads=2, mixer=name, max_len=64,
                          mixer_kwargs={"top_k": 8, "t_m": 16} if name == "sea" else {})
    # period-2 sequences: every token after the second is the one two steps back
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        seq = torch.randint(0, 8, (16, 2), generator=g).repeat(1, 24)
        logits = model(seq[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, 8), seq[:, 2:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
