"""attnlab.layers.patch_embed: PatchEmbed computes the stride-p convolution of its Conv2d weights as one GEMM
(same values, contiguous tokens); check_img_patch."""
import pytest
import torch

from attnlab.layers import PatchEmbed


@pytest.mark.parametrize("img, patch, chans, dim", [(32, 4, 3, 48), ((16, 24), 8, 1, 20), (12, 3, 2, 7)])
def test_equals_the_strided_convolution_and_its_gradients(img, patch, chans, dim):
    torch.manual_seed(0)
    pe = PatchEmbed(img_size=img, patch_size=patch, in_chans=chans, embed_dim=dim).double()
    h, w = (img, img) if isinstance(img, int) else img
    x = torch.randn(2, chans, h, w, dtype=torch.float64, requires_grad=True)
    ours = pe(x)
    conv = pe.proj(x).flatten(2).transpose(1, 2)  # the convolution it stands for, same weights
    torch.testing.assert_close(ours, conv, rtol=1e-12, atol=1e-12)
    assert ours.is_contiguous() and ours.shape == (2, (h // patch) * (w // patch), dim)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, [x, pe.proj.weight, pe.proj.bias], g)
    ref = torch.autograd.grad(conv, [x, pe.proj.weight, pe.proj.bias], g)
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_wrong_image_size_is_refused_with_the_expected_shape():
    pe = PatchEmbed(img_size=32, patch_size=4, in_chans=3, embed_dim=8)
    with pytest.raises(ValueError, match=r"x: expected images of shape \(B, 3, 32, 32\)"):
        pe(torch.randn(1, 3, 28, 28))


def test_check_img_patch_gives_the_grid_and_names_a_bad_patch_size():
    from attnlab.layers.patch_embed import check_img_patch

    assert check_img_patch(32, 8) == (4, 4)
    with pytest.raises(ValueError, match=r"patch_size: expected a divisor of img_size=32, received 5"):
        check_img_patch(32, 5)
