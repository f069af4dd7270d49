"""Token-influence maps (P06's unified view): softmax's map is its attention probabilities (computed here by hand),
every causal mixer's map is lower-triangular, local mixers' support is their window; the exactness guard; bad input."""
from __future__ import annotations

import math

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.analysis.token_influence import exact_alpha, plot_influence, token_influence
from attnlab.mixers.softmax import MultiHeadAttention

CAUSAL = [i.name for i in mixers.available() if i.capabilities.causal]
NO_MIXING = {"identity", "activator_glu"}  # per-token maps: the diagonal only


def _build(name: str):
    info = mixers.get_info(name)
    torch.manual_seed(0)
    mixer = mixers.create(name, info.test_dim, **info.test_kwargs).double().eval()
    n = math.prod(info.test_grid) if info.test_grid is not None else info.test_len
    return mixer, torch.randn(2, n, info.test_dim, dtype=torch.float64), info.test_grid


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_map_is_the_attention_probabilities_by_hand(causal):
    torch.manual_seed(0)
    mixer = mixers.create("softmax", 8, num_heads=2).double().eval()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    im = token_influence(mixer, x, causal=causal)
    w = mixer.qkv.weight  # (3C, C): rows q, k, v; heads of width 4
    q = (x @ w[:8].T).view(2, 7, 2, 4).transpose(1, 2)
    k = (x @ w[8:16].T).view(2, 7, 2, 4).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / 2.0  # sqrt(4)
    if causal:
        logits = logits.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), -math.inf)
    probs = logits.softmax(-1)
    assert im.method == "exact" and im.per_head.shape == (2, 2, 7, 7)
    torch.testing.assert_close(im.per_head, probs, atol=1e-12, rtol=0)
    torch.testing.assert_close(im.map, probs.mean(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(im.map.sum(-1), torch.ones(2, 7, dtype=torch.float64), atol=1e-12, rtol=0)


def test_padded_keys_get_no_influence():
    mixer, x, _ = _build("softmax")
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    for method in ("exact", "jacobian"):
        im = token_influence(mixer, x, key_padding_mask=mask, method=method)
        assert float(im.map[1, :6, 6:].abs().max()) == 0.0 and float(im.map[0, :, 6:].min()) > 0


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_mixers_give_lower_triangular_maps(name):
    mixer, x, grid = _build(name)
    im = token_influence(mixer, x, grid=grid, causal=True)
    upper = torch.triu(im.map, diagonal=1)
    assert float(upper.abs().max()) <= 1e-10, f"{name} ({im.method}): future tokens influence the past"
    if name in NO_MIXING:
        torch.testing.assert_close(im.map, torch.eye(x.shape[1], dtype=x.dtype).expand_as(im.map), atol=1e-12, rtol=0)
    else:
        assert float(torch.tril(im.map, diagonal=-1).sum(-1)[:, -1].min()) > 1e-3  # the last token reads the past


def _window_support(n: int, window: int, causal: bool) -> torch.Tensor:
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    return ((i - j >= 0) & (i - j < window)) if causal else ((i - j).abs() < window)


@pytest.mark.parametrize("method", ["exact", "jacobian"])
@pytest.mark.parametrize("causal", [False, True])
def test_sliding_window_support_is_the_window(method, causal):
    torch.manual_seed(0)
    mixer = mixers.create("sliding_window", 8, num_heads=2, window=3).double().eval()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    im = token_influence(mixer, x, causal=causal, method=method)
    support = im.map > 1e-12
    assert im.method == method
    assert torch.equal(support, _window_support(11, 3, causal).expand_as(support))


@pytest.mark.parametrize("method", ["exact", "jacobian"])
def test_neighborhood_support_is_the_clamped_window(method):
    torch.manual_seed(0)
    mixer = mixers.create("neighborhood", 8, num_heads=2, kernel_size=(3,)).double().eval()
    x = torch.randn(1, 7, 8, dtype=torch.float64)
    im = token_influence(mixer, x, grid=(7,), method=method)
    expected = torch.zeros(7, 7, dtype=torch.bool)  # NATTEN's windows are shifted inside at the borders
    for i in range(7):
        start = min(max(i - 1, 0), 7 - 3)
        expected[i, start:start + 3] = True
    assert torch.equal(im.map[0] > 1e-12, expected)


class _LeakyAttention(MultiHeadAttention):
    """Softmax attention plus a residual term: it records a map, but its output is not alpha times values."""

    def mix(self, x, *, grid, causal, key_padding_mask):
        return super().mix(x, grid=grid, causal=causal, key_padding_mask=key_padding_mask) + 0.5 * x


def test_a_mixer_not_linear_in_its_values_gets_the_jacobian():
    torch.manual_seed(0)
    leaky = _LeakyAttention(8, num_heads=2).double().eval()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    assert exact_alpha(leaky, x) is None
    im = token_influence(leaky, x)
    assert im.method == "jacobian" and im.per_head is None
    torch.testing.assert_close(im.map.sum(-1), torch.ones(1, 5, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="method: expected 'exact' only for a mixer linear in its values .* received "
                                         "'exact' for _LeakyAttention"):
        token_influence(leaky, x, method="exact")


def test_jacobian_norms_by_hand_for_a_linear_mixer():
    """The raw map is ||d y_i / d x_j||_F with i the output row and j the input column (one autograd entry at a time)."""
    torch.manual_seed(0)
    mixer = mixers.create("linear_attention", 4, num_heads=1).double().eval()
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    raw = token_influence(mixer, x, method="jacobian", causal=True).raw
    for i in range(5):  # against autograd one entry at a time
        for j in range(5):
            xr = x.clone().requires_grad_(True)
            rows = [torch.autograd.grad(mixer(xr, causal=True)[0, i, c], xr)[0][0, j] for c in range(4)]
            assert float(raw[0, i, j]) == pytest.approx(float(torch.stack(rows).norm()), abs=1e-12)


def test_bad_input_and_names(tmp_path):
    x = torch.randn(1, 5, 8)
    with pytest.raises(ValueError, match="method: expected one of \\['auto', 'exact', 'jacobian'\\], received str 'svd'"):
        token_influence("softmax", x, method="svd")
    with pytest.raises(ValueError, match="x: expected a tensor of rank 3"):
        token_influence("softmax", x[0])
    with pytest.raises(TypeError, match="mixer: expected a token mixer module or a registered mixer name"):
        token_influence(3, x)
    with pytest.raises(ValueError, match="method: expected 'exact' only for a mixer linear in its values"):
        token_influence("deltanet", x, method="exact", causal=True)
    im = token_influence("softmax", x, mixer_kwargs={"num_heads": 2})
    assert im.method == "exact" and plot_influence(im, tmp_path / "m.png").endswith("m.png")
    assert (tmp_path / "m.png").stat().st_size > 5_000
