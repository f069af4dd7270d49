"""FOD (P16): the output projection is used (unlike the official code), the I2Correlation update, the two losses'
routing and the two-pass scheme, the anomaly scores and maps, the feature extractor."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

from attnlab.models.fod import (
    FOD,
    CorrelationAttention,
    FeatureExtractor,
    I2CorrelationLayer,
    anomaly_maps,
    fod_losses,
    fod_patch_scores,
    fod_train_step,
)
from attnlab.ops.correlation_target import fod_sigma, gaussian_target


def _fod(mode="fod", depth=2, seed=0):
    torch.manual_seed(seed)
    m = FOD(in_dim=6, grid=(3, 4), dim=8, num_heads=2, depth=depth, mode=mode).double()
    feats = torch.randn(3, 12, 6, dtype=torch.float64)
    m.set_reference(feats)
    return m, feats


def test_correlation_attention_by_hand_and_its_output_projection_is_used():
    torch.manual_seed(0)
    att = CorrelationAttention(8, 2, (2, 3)).double()
    q_in, k_in = torch.randn(2, 6, 8, dtype=torch.float64), torch.randn(2, 6, 8, dtype=torch.float64)
    out, probs, target = att(q_in, k_in)
    heads = lambda t: rearrange(t, "b l (h d) -> b h l d", h=2)  # noqa: E731
    q, k, v = heads(att.q(q_in)), heads(att.k(k_in)), heads(att.v(k_in))
    want_probs = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1)  # head dim 4: scale 1/2
    torch.testing.assert_close(probs, want_probs, atol=1e-13, rtol=0)
    mixed = rearrange(want_probs @ v, "b h l d -> b l (h d)")
    torch.testing.assert_close(out, att.out(mixed), atol=1e-13, rtol=0)
    assert (out - mixed).abs().max() > 1e-3  # the projection changes the result: it is applied, not discarded
    sigma = fod_sigma(rearrange(att.sigma(q_in), "b l (h two) -> b h l two", two=2))
    torch.testing.assert_close(target, gaussian_target(sigma, (2, 3)), atol=1e-14, rtol=0)
    with torch.no_grad():
        att.out.weight.zero_()
        att.out.bias.fill_(0.25)
    assert torch.equal(att(q_in, k_in)[0], torch.full_like(out, 0.25))


def test_the_i2correlation_update_is_intra_minus_inter():
    torch.manual_seed(0)
    layer = I2CorrelationLayer(8, 2, (2, 2)).double()
    x, ref = torch.randn(1, 4, 8, dtype=torch.float64), torch.randn(1, 4, 8, dtype=torch.float64)
    new = layer.intra(x, x)[0] - layer.inter(x, ref)[0]  # (x + intra) - (x + inter): the residual cancels
    h = layer.norm1(new)
    out, intra, inter = layer(x, ref)
    torch.testing.assert_close(out, layer.norm2(h + layer.mlp(h)), atol=1e-13, rtol=0)
    assert len(intra) == len(inter) == 1
    # the same weights in both branches and the reference equal to x: nothing is left to reconstruct from
    layer.inter.load_state_dict(layer.intra.state_dict())
    torch.testing.assert_close(layer(x, x)[0], layer.norm2(layer.norm1(torch.zeros_like(x)) +
                                                          layer.mlp(layer.norm1(torch.zeros_like(x)))),
                               atol=1e-12, rtol=0)


def test_the_baselines():
    m, f = _fod("reconstruction")
    out = m(f)
    assert out.intra == [] and out.inter == [] and m.layers[0].inter is None
    torch.testing.assert_close(fod_patch_scores(m, f), (out.recon - f).pow(2).mean(-1) + 1 -
                               torch.nn.functional.cosine_similarity(out.recon, f, dim=-1), atol=1e-12, rtol=0)
    m2, f2 = _fod("i2c_rec")
    assert m2.layers[0].inter is not None and m2(f2).inter == []
    loss1, loss2, parts = fod_losses(m2(f2), f2)
    assert loss2.item() == 0 and set(parts) == {"rec"}


def test_the_losses_route_the_gradients_as_the_paper():
    """loss1's divergences train the widths only, loss2's the attentions only; the widths never see loss2."""
    m, f = _fod()
    loss1, loss2, parts = fod_losses(m(f), f)
    sigma_params = [p for n, p in m.named_parameters() if ".sigma." in n]
    # the last layer's q, k weights: (earlier layers' also shape the next layers' widths, through their queries)
    attn_params = [p for n, p in m.named_parameters() if n.startswith(f"layers.{len(m.layers) - 1}.")
                   and n.endswith((".q.weight", ".k.weight"))]
    g2 = torch.autograd.grad(loss2, sigma_params, retain_graph=True, allow_unused=True)
    assert all(g is None or g.abs().max() == 0 for g in g2)
    g1 = torch.autograd.grad(loss1, sigma_params, retain_graph=True)
    assert all(g.abs().max() > 0 for g in g1)
    rec = parts["rec"]
    out = m(f)
    rec_only = torch.nn.functional.mse_loss(out.recon, f) + (1 - torch.nn.functional.cosine_similarity(
        out.recon, f, dim=-1)).mean()
    assert rec_only.item() == pytest.approx(rec)
    # on those weights, loss1 is the reconstruction alone (its divergences see detached attentions)
    ga = torch.autograd.grad(loss1, attn_params, retain_graph=True)
    gr = torch.autograd.grad(rec_only, attn_params)
    for a, b in zip(ga, gr):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)


def test_one_backward_of_the_sum_equals_the_papers_two_passes():
    grads = []
    for two_pass in (True, False):
        m, f = _fod(seed=1)
        opt = torch.optim.SGD(m.parameters(), lr=0.0)
        fod_train_step(m, f, opt, two_pass=two_pass)
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_scores_and_maps():
    m, f = _fod()
    s = fod_patch_scores(m, f)
    assert s.shape == (3, 12) and (s >= 0).all()
    assert (s.min(dim=1).values == 0).all()  # the patch with the largest inter weight gets max - max = 0
    hot = torch.zeros(1, 16)
    hot[0, 5] = 1.0  # patch (1, 1) of a 4 x 4 grid
    maps = anomaly_maps(hot, (4, 4), 31, blur_sigma=2.0)
    assert maps.shape == (1, 31, 31)
    y, x = divmod(int(maps[0].argmax()), 31)
    assert (y, x) == (10, 10)  # corners aligned: patch centre 1 of 0..3 is pixel 10 of 0..30
    flat = anomaly_maps(torch.full((2, 16), 3.0), (4, 4), 31, blur_sigma=2.0)
    torch.testing.assert_close(flat, torch.full((2, 31, 31), 3.0), atol=1e-6, rtol=0)


def test_feature_extractor_and_reference():
    torch.manual_seed(0)
    ext = FeatureExtractor(channels=16)
    img = torch.rand(2, 3, 32, 32)
    feats = ext.encode(img)
    assert feats.shape == (2, 64, 16) and not feats.requires_grad
    assert ext(img).shape == img.shape
    m = FOD(in_dim=16, grid=(8, 8), dim=8, num_heads=2, depth=1)
    m.set_reference(feats)
    torch.testing.assert_close(m.reference, feats.mean(0))
    with pytest.raises(ValueError, match=r"features: expected \(B, L, in_dim\) or \(L, in_dim\)"):
        m.set_reference(torch.zeros(2, 63, 16))
    with pytest.raises(ValueError, match="mode: expected one of"):
        FOD(in_dim=4, grid=(2, 2), mode="fast")
    with pytest.raises(ValueError, match=r"features: expected \(B, L, in_dim\) = \(B, 64, 16\)"):
        m(torch.zeros(2, 64, 15))
