"""The ssa mixer (P28) beyond the registry contract: dense and deterministic in eval, seeded sampling in
training, causality, error shrinking with the kept keys, eval ensembles and subsampled_inference."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers.ssa import subsampled_inference


@pytest.fixture
def ssa_and_dense(softmax_like):
    """``ssa_and_dense(**kw) -> (ssa mixer, softmax mixer with the same weights)``, fp64."""

    def build(**kw):
        torch.manual_seed(4)
        m = mixers.create("ssa", 16, num_heads=2, qkv_bias=True, **kw).double()
        return m, softmax_like(16, 2, m.qkv.weight, m.qkv.bias, m.proj)

    return build


@pytest.mark.parametrize("causal", [False, True])
def test_ssa_eval_is_dense_and_deterministic(causal, ssa_and_dense):
    m, ref = ssa_and_dense(rate=4.0, mode="local", block=4)
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    m.eval()
    torch.testing.assert_close(m(x, causal=causal), ref(x, causal=causal), atol=1e-12, rtol=1e-10)
    assert torch.equal(m(x, causal=causal), m(x, causal=causal))


@pytest.mark.parametrize("causal", [False, True])
def test_ssa_train_samples_seeded_and_rate_one_is_dense(causal, ssa_and_dense):
    m, ref = ssa_and_dense(rate=4.0)
    x = torch.randn(2, 24, 16, dtype=torch.float64)
    m.train()
    torch.manual_seed(10)
    a = m(x, causal=causal)
    torch.manual_seed(10)
    b = m(x, causal=causal)
    c = m(x, causal=causal)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a, ref(x, causal=causal))
    dense_rate, _ = ssa_and_dense(rate=1.0)
    torch.testing.assert_close(dense_rate.train()(x, causal=causal), ref(x, causal=causal), atol=1e-12, rtol=1e-10)


def test_ssa_train_is_causal(ssa_and_dense):
    m, _ = ssa_and_dense(rate=3.0, mode="local", block=4)
    m.train()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.manual_seed(0)
    y = m(x, causal=True)
    x2 = x.clone()
    x2[:, 9:] += torch.randn_like(x2[:, 9:])
    torch.manual_seed(0)
    y2 = m(x2, causal=True)
    torch.testing.assert_close(y2[:, :9], y[:, :9], atol=1e-12, rtol=0)


def test_ssa_subsample_error_shrinks_as_more_keys_are_kept(ssa_and_dense):
    """The subsampled output approaches dense attention as the sampled key set grows (rate -> 1)."""
    x = torch.randn(4, 64, 16, dtype=torch.float64)
    errs = []
    for rate in (8.0, 4.0, 2.0, 1.25, 1.0):
        m, ref = ssa_and_dense(rate=rate, ensemble=8)
        m.eval()
        errs.append((m(x) - ref(x)).pow(2).mean().sqrt().item())
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-12


def test_ssa_ensemble_is_deterministic_and_converges_in_the_number_of_passes(ssa_and_dense):
    x = torch.randn(2, 48, 16, dtype=torch.float64)
    outs = {}
    for k in (2, 8, 32):
        m, _ = ssa_and_dense(rate=4.0, ensemble=k, ensemble_seed=k)
        m.eval()
        outs[k] = m(x)
    again = ssa_and_dense(rate=4.0, ensemble=2, ensemble_seed=2)[0].eval()
    assert torch.equal(outs[2], again(x))  # the eval ensemble is deterministic
    big, _ = ssa_and_dense(rate=4.0, ensemble=256, ensemble_seed=7)
    limit = big.eval()(x)
    errs = [(outs[k] - limit).pow(2).mean().sqrt().item() for k in (2, 8, 32)]
    assert errs[0] > 2 * errs[-1], errs  # Monte Carlo error ~ 1/sqrt(k): 16x more passes, ~4x less error


def test_subsampled_inference_gives_reproducible_random_subnetworks():
    from attnlab.models import SequenceModel

    torch.manual_seed(0)
    model = SequenceModel(vocab_size=11, dim=16, depth=2, num_heads=2, mixer="ssa", mixer_kwargs={"rate": 4.0},
                          max_len=32).eval()
    x = torch.randint(0, 11, (2, 32))
    dense = model(x)
    with subsampled_inference(model, seed=1):
        a1, a2 = model(x), model(x)
    with subsampled_inference(model, seed=1):
        b1 = model(x)
    assert torch.equal(a1, b1) and not torch.allclose(a1, a2) and not torch.allclose(a1, dense)
    torch.testing.assert_close(model(x), dense, atol=0, rtol=0)  # dense again afterwards
    with pytest.raises(ValueError, match="model: expected a module containing SubsampledAttention"):
        with subsampled_inference(torch.nn.Linear(2, 2)):
            pass


def test_ssa_kwargs_are_checked():
    with pytest.raises(ValueError, match="rate: expected a number >= 1"):
        mixers.create("ssa", 8, num_heads=2, rate=0.5)
    with pytest.raises(ValueError, match="mode: expected one of"):
        mixers.create("ssa", 8, num_heads=2, mode="random")
    with pytest.raises(ValueError, match="ensemble: expected an int >= 0"):
        mixers.create("ssa", 8, num_heads=2, ensemble=-1)
