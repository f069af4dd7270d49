"""Mixers bilevel_routing (P10), strip_attention (P09), ssa (P28): reductions to dense attention, references, sampling."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab.mixers as mixers
from attnlab.mixers.ssa import subsampled_inference
from attnlab.ops.attention import attention_reference


def _softmax_like(dim, heads, src_qkv_weight, src_qkv_bias, proj):
    m = mixers.create("softmax", dim, num_heads=heads, qkv_bias=True).double()
    with torch.no_grad():
        m.qkv.weight.copy_(src_qkv_weight)
        m.qkv.bias.copy_(src_qkv_bias)
        m.proj.load_state_dict(proj.state_dict())
    return m


# ---- bilevel_routing ---------------------------------------------------------


def test_bilevel_all_regions_without_lce_is_multi_head_attention():
    torch.manual_seed(0)
    m = mixers.create("bilevel_routing", 16, num_heads=2, n_win=3, topk=9, lce_kernel=0).double()
    ref = _softmax_like(16, 2, m.qkv.weight, m.qkv.bias, m.proj)
    x = torch.randn(2, 35, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x, grid=(5, 7)), ref(x), atol=1e-12, rtol=1e-10)


def test_bilevel_lce_is_a_depthwise_conv_of_v_added_before_projection():
    torch.manual_seed(1)
    m = mixers.create("bilevel_routing", 8, num_heads=2, n_win=2, topk=4, lce_kernel=3).double()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    no_lce = mixers.create("bilevel_routing", 8, num_heads=2, n_win=2, topk=4, lce_kernel=0).double()
    no_lce.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("lce.")})
    v = F.linear(x, m.qkv.weight[16:], m.qkv.bias[16:])
    img = v.reshape(1, 4, 5, 8).permute(0, 3, 1, 2)
    lce = F.conv2d(img, m.lce.weight, m.lce.bias, padding=1, groups=8).permute(0, 2, 3, 1).reshape(1, 20, 8)
    want = no_lce(x, grid=(4, 5)) + F.linear(lce, m.proj.weight)
    torch.testing.assert_close(m(x, grid=(4, 5)), want, atol=1e-12, rtol=1e-10)


def test_bilevel_kwargs_are_checked():
    with pytest.raises(ValueError, match="lce_kernel: expected 0 \\(off\\) or an odd positive int"):
        mixers.create("bilevel_routing", 8, num_heads=2, lce_kernel=4)
    with pytest.raises(ValueError, match="num_heads: expected a divisor of dim=8"):
        mixers.create("bilevel_routing", 8, num_heads=3)


def test_vit_with_bilevel_routing_and_strip_trains_a_step():
    from attnlab.models import ViT

    for mixer, kw in (("bilevel_routing", {"n_win": 2, "topk": 2}), ("strip_attention", {"sr_ratio": 2})):
        torch.manual_seed(0)
        model = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=3, dim=16, depth=2, num_heads=2, mixer=mixer,
                    mixer_kwargs=kw)
        x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
        F.cross_entropy(model(x), y).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---- strip_attention -----------------------------------------------------------


def test_strip_without_reduction_or_compression_is_multi_head_attention():
    torch.manual_seed(2)
    m = mixers.create("strip_attention", 12, num_heads=3, sr_ratio=1, qk_dim=12).double()
    w = torch.cat([m.q.weight, m.k.weight, m.v.weight])
    bias = torch.cat([m.q.bias, m.k.bias, m.v.bias])
    ref = _softmax_like(12, 3, w, bias, m.proj)
    x = torch.randn(2, 15, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x, grid=(3, 5)), ref(x), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("grid", [(6, 4), (5, 7)])
def test_strip_matches_an_explicit_patch_loop(grid):
    torch.manual_seed(3)
    h, w = grid
    c, r, heads, dq = 8, 2, 2, 4
    m = mixers.create("strip_attention", c, num_heads=heads, sr_ratio=r, qk_dim=dq).double()
    x = torch.randn(2, h * w, c, dtype=torch.float64)
    img = x.reshape(2, h, w, c)
    reduced = []
    for i in range(0, h, r):  # each output token: the depthwise-weighted sum of its r x r patch (zeros outside)
        for j in range(0, w, r):
            acc = m.sr.bias.clone().expand(2, c)
            for a in range(r):
                for b in range(r):
                    if i + a < h and j + b < w:
                        acc = acc + img[:, i + a, j + b] * m.sr.weight[:, 0, a, b]
            reduced.append(acc)
    xr = m.sr_norm(torch.stack(reduced, 1))
    q = m.q(x).reshape(2, h * w, heads, dq // heads).transpose(1, 2)
    k = m.k(xr).reshape(2, -1, heads, dq // heads).transpose(1, 2)
    v = m.v(xr).reshape(2, -1, heads, c // heads).transpose(1, 2)
    want = m.proj(attention_reference(q, k, v).transpose(1, 2).reshape(2, h * w, c))
    torch.testing.assert_close(m(x, grid=grid), want, atol=1e-12, rtol=1e-10)


def test_strip_kwargs_are_checked():
    with pytest.raises(ValueError, match="qk_dim: expected a multiple of num_heads=2"):
        mixers.create("strip_attention", 8, num_heads=2, qk_dim=3)
    assert mixers.create("strip_attention", 64, num_heads=2).qk_dim == 8


# ---- ssa -------------------------------------------------------------------------


def _ssa_and_dense(**kw):
    torch.manual_seed(4)
    m = mixers.create("ssa", 16, num_heads=2, qkv_bias=True, **kw).double()
    ref = _softmax_like(16, 2, m.qkv.weight, m.qkv.bias, m.proj)
    return m, ref


@pytest.mark.parametrize("causal", [False, True])
def test_ssa_eval_is_dense_and_deterministic(causal):
    m, ref = _ssa_and_dense(rate=4.0, mode="local", block=4)
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    m.eval()
    torch.testing.assert_close(m(x, causal=causal), ref(x, causal=causal), atol=1e-12, rtol=1e-10)
    assert torch.equal(m(x, causal=causal), m(x, causal=causal))


@pytest.mark.parametrize("causal", [False, True])
def test_ssa_train_samples_seeded_and_rate_one_is_dense(causal):
    m, ref = _ssa_and_dense(rate=4.0)
    x = torch.randn(2, 24, 16, dtype=torch.float64)
    m.train()
    torch.manual_seed(10)
    a = m(x, causal=causal)
    torch.manual_seed(10)
    b = m(x, causal=causal)
    c = m(x, causal=causal)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a, ref(x, causal=causal))
    dense_rate, _ = _ssa_and_dense(rate=1.0)
    torch.testing.assert_close(dense_rate.train()(x, causal=causal), ref(x, causal=causal), atol=1e-12, rtol=1e-10)


def test_ssa_train_is_causal():
    m, _ = _ssa_and_dense(rate=3.0, mode="local", block=4)
    m.train()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.manual_seed(0)
    y = m(x, causal=True)
    x2 = x.clone()
    x2[:, 9:] += torch.randn_like(x2[:, 9:])
    torch.manual_seed(0)
    y2 = m(x2, causal=True)
    torch.testing.assert_close(y2[:, :9], y[:, :9], atol=1e-12, rtol=0)


def test_ssa_subsample_error_shrinks_as_more_keys_are_kept():
    """The subsampled output approaches dense attention as the sampled key set grows (rate -> 1)."""
    x = torch.randn(4, 64, 16, dtype=torch.float64)
    errs = []
    for rate in (8.0, 4.0, 2.0, 1.25, 1.0):
        m, ref = _ssa_and_dense(rate=rate, ensemble=8)
        m.eval()
        errs.append((m(x) - ref(x)).pow(2).mean().sqrt().item())
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-12


def test_ssa_ensemble_is_deterministic_and_converges_in_the_number_of_passes():
    x = torch.randn(2, 48, 16, dtype=torch.float64)
    outs = {}
    for k in (2, 8, 32):
        m, _ = _ssa_and_dense(rate=4.0, ensemble=k, ensemble_seed=k)
        m.eval()
        outs[k] = m(x)
    again = _ssa_and_dense(rate=4.0, ensemble=2, ensemble_seed=2)[0].eval()
    assert torch.equal(outs[2], again(x))  # the eval ensemble is deterministic
    big, _ = _ssa_and_dense(rate=4.0, ensemble=256, ensemble_seed=7)
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
