"""kMaX-DeepLab (P25) and its softmax cross-attention baseline: the two cross-attentions against hand-written
computations, the supervision of every layer, GroupNorm in place of BatchNorm, training on the segmentation task."""
from __future__ import annotations

import pytest
import torch
from einops import rearrange
from torch import nn

from attnlab.models import create
from attnlab.models.kmax_deeplab import KMaXDeepLab, KMeansCrossAttention, SoftmaxCrossAttention
from attnlab.ops.attention import attention_reference
from attnlab.tasks import create as create_task


def _unit_out_norm(mod):
    nn.init.ones_(mod.out_norm.norm.weight)
    return mod.double()


def test_kmeans_cross_attention_by_hand():
    torch.manual_seed(0)
    mod = _unit_out_norm(KMeansCrossAttention(dim=6, value_dim=4, query_dim=5))
    pixels = torch.randn(2, 11, 6, dtype=torch.float64)
    logits = torch.randn(2, 3, 11, dtype=torch.float64)
    values = mod.value(pixels)
    summed = torch.zeros(2, 3, 4, dtype=torch.float64)
    for b in range(2):
        for n in range(11):
            summed[b, int(logits[b, :, n].argmax())] += values[b, n]  # each pixel to its best cluster
    want = mod.out_norm(mod.out(mod.norm(summed)))
    torch.testing.assert_close(mod(None, pixels, logits), want, atol=1e-12, rtol=1e-12)


def test_a_new_layer_starts_as_the_identity_and_the_assignment_takes_no_gradient():
    torch.manual_seed(0)
    mod = KMeansCrossAttention(dim=6, value_dim=4, query_dim=5)
    logits = torch.randn(1, 3, 9, requires_grad=True)
    pixels = torch.randn(1, 9, 6, requires_grad=True)
    out = mod(None, pixels, logits)
    assert out.abs().max() == 0  # the last norm's scale starts at zero (the paper's norm_init = 0)
    _unit_out_norm(mod).float()
    (mod(None, pixels, logits) * torch.randn(1, 3, 5)).sum().backward()
    assert logits.grad is None and pixels.grad.abs().sum() > 0


def test_softmax_cross_attention_by_hand():
    torch.manual_seed(0)
    mod = _unit_out_norm(SoftmaxCrossAttention(dim=8, value_dim=8, query_dim=5, num_heads=2))
    queries = torch.randn(2, 3, 8, dtype=torch.float64)
    pixels = torch.randn(2, 13, 8, dtype=torch.float64)
    heads = lambda t: rearrange(t, "b n (h d) -> b h n d", h=2)  # noqa: E731
    o = attention_reference(heads(mod.q(queries)), heads(mod.k(pixels)), heads(mod.value(pixels)))
    want = mod.out_norm(mod.out(mod.norm(rearrange(o, "b h n d -> b n (h d)"))))
    torch.testing.assert_close(mod(queries, pixels), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cross", ["kmeans", "softmax"])
def test_every_layer_is_supervised_and_every_parameter_learns(cross):
    torch.manual_seed(0)
    task = create_task("segmentation", img_size=16, min_size=4, max_size=7)
    model = KMaXDeepLab(img_size=16, num_classes=task.num_classes, num_queries=6, cross=cross, layers=1,
                        pixel_dim=16, query_dim=16, dim=16, num_heads=2, ffn_dim=32, mask_dim=8)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())  # GroupNorm instead
    batch = task.batch("train", 0, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the residual branches' last norms start at scale 0: one step opens them
        out = model(batch.inputs)
        assert len(out["aux"]) == 2 and out["mask_logits"].shape == (8, 6, 256)
        opt.zero_grad()
        task.loss(out, batch)[0].backward()
        opt.step()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    # every layer's predictor receives gradient from its own supervision alone (aux losses reach the layer)
    model.zero_grad()
    out = model(batch.inputs)
    final_only = task.loss({**out, "aux": []}, batch)[0]  # the final level alone: the first layer's predictor gets none
    final_only.backward()
    assert model.layers[0].predictor.class_head.weight.grad is None or \
        model.layers[0].predictor.class_head.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("name", ["kmax_tiny", "mask2former_tiny"])
def test_registered_models_fit_a_fixed_batch(name, train_fixed_batch):
    torch.manual_seed(0)
    task = create_task("segmentation", img_size=16, min_size=4, max_size=7, max_objects=2)
    model = create(name, img_size=16, num_classes=task.num_classes, num_queries=4, layers=1, pixel_dim=16,
                   query_dim=16, dim=16, num_heads=2, ffn_dim=32, mask_dim=8)
    batch = task.batch("train", 0, 4)
    first, last = train_fixed_batch(model, lambda m: task.loss(m(batch.inputs), batch)[0], 40)
    assert last < 0.7 * first, (first, last)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="cross: expected one of"):
        KMaXDeepLab(cross="linear")
    with pytest.raises(ValueError, match="img_size: expected a multiple of 4"):
        KMaXDeepLab(img_size=30)
    with pytest.raises(ValueError, match=r"images: expected \(B, C, 32, 32\)"):
        KMaXDeepLab()(torch.randn(1, 3, 16, 16))
