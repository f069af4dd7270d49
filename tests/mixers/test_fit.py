"""The ``fit`` and ``fit_local`` mixers (P27) against a dense-masked re-computation of the block with the same weights
(group membership from coordinates, not from the fast path's reshapes and permutations), windows on grids, backbones.

Tolerances: fp64 1e-11 (forward and gradients).
"""
from __future__ import annotations

import pytest
import torch
from einops import rearrange

import attnlab.mixers as mixers
from attnlab.models import SequenceModel, ViT
from attnlab.ops.attention import attention_reference


def _group_ids(n, grid, causal, group_size, window):
    """Each token's group, from its coordinates: windows of a 2-D grid in raster order, else spans of group_size."""
    if grid is not None and len(grid) == 2 and not causal:
        h, w = grid
        wh, ww = window or (int(group_size**0.5),) * 2
        r, c = torch.arange(n) // w, torch.arange(n) % w
        return (r // wh) * (w // ww) + c // ww
    return torch.arange(n) // min(group_size, n)


def _heads(t, h):
    return rearrange(t, "b n (h d) -> b h n d", h=h)


def _merge(o):
    return rearrange(o, "b h n d -> b n (h d)")


def _cross(mod, qx, kvx, mask):
    q = _heads(mod.q(mod.norm_q(qx)), mod.num_heads)
    k, v = (_heads(t, mod.num_heads) for t in mod.kv(mod.norm_kv(kvx)).chunk(2, dim=-1))
    return mod.proj(_merge(attention_reference(q, k, v, attn_mask=mask)))


def _local(m, x, gid, causal, kpm):
    q, k, v = (_heads(t, m.num_heads) for t in m.qkv(x).chunk(3, dim=-1))
    o = attention_reference(q, k, v, causal=causal, key_padding_mask=kpm, attn_mask=gid[:, None] == gid[None, :])
    return m.proj(_merge(o))


def _fit_reference(m, x, grid=None, causal=False, kpm=None):
    n = x.shape[1]
    gid = _group_ids(n, grid, causal, m.group_size, m.window)
    h = _local(m, x, gid, causal, kpm)
    if isinstance(m, mixers.get_info("fit_local").cls):
        return h
    u = x + h
    t, mm = int(gid.max()) + 1, m.latents_per_group
    lid = torch.arange(t * mm) // mm
    z = m.latents.repeat(t, 1).expand(x.shape[0], -1, -1)
    read_mask = lid[:, None] == gid[None, :]
    if kpm is not None:
        read_mask = read_mask & kpm[:, None, None, :]
    z = z + _cross(m.read, z, u, read_mask)
    # latents of groups without a real token are no keys (written out per latent, not through the mixer's helper)
    has_real = torch.ones(x.shape[0], t * mm, dtype=torch.bool)
    if kpm is not None:
        for bi in range(x.shape[0]):
            for j in range(t * mm):
                has_real[bi, j] = bool(kpm[bi][gid == lid[j]].any())
    for layer in m.global_layers:
        q, k, v = (_heads(tt, layer.num_heads) for tt in layer.qkv(layer.norm1(z)).chunk(3, dim=-1))
        z = z + layer.proj(_merge(attention_reference(q, k, v, attn_mask=lid[:, None] >= lid[None, :] if causal
                                                      else None, key_padding_mask=has_real)))
        z = z + layer.mlp(layer.norm2(z))
    w = _cross(m.write, u, z, gid[:, None] - (1 if causal else 0) == lid[None, :])
    return h + w


CASES = [  # (mixer, kwargs, N, grid, causal)
    ("fit", {"group_size": 4, "latents_per_group": 2}, 16, (4, 4), False),
    ("fit", {"group_size": 4, "latents_per_group": 2, "global_layers": 2}, 16, (4, 4), True),
    ("fit", {"group_size": 6, "window": (2, 3)}, 24, (4, 6), False),
    ("fit", {"group_size": 5, "latents_per_group": 3}, 23, None, False),   # padded inside
    ("fit", {"group_size": 5, "latents_per_group": 1, "latent_dim": 12}, 23, None, True),
    ("fit_local", {"group_size": 4}, 16, (4, 4), False),
    ("fit_local", {"group_size": 7}, 30, None, True),
]


@pytest.mark.parametrize("name,kw,n,grid,causal", CASES)
def test_matches_the_dense_masked_block(assert_close, name, kw, n, grid, causal):
    torch.manual_seed(0)
    m = mixers.create(name, 16, num_heads=2, **kw).double().eval()
    x = torch.randn(2, n, 16, dtype=torch.float64, requires_grad=True)
    params = list(m.parameters())
    assert_close(m(x, grid=grid, causal=causal), _fit_reference(m, x, grid, causal), atol=1e-11, rtol=1e-11,
                 grads_of=[x, *params])


@pytest.mark.parametrize("name", ["fit", "fit_local"])
def test_key_padding_matches_the_reference(assert_close, name):
    torch.manual_seed(0)
    m = mixers.create(name, 16, num_heads=2, group_size=5).double().eval()
    x = torch.randn(2, 20, 16, dtype=torch.float64, requires_grad=True)
    kpm = torch.ones(2, 20, dtype=torch.bool)
    kpm[0, 12:] = False
    kpm[1, :5] = False  # a whole group of padding: its latent reads nothing
    # the mixer contract zeroes padded tokens before mixing (mixers/base.py): the reference sees them zeroed too
    x_ref = x.masked_fill(~kpm.unsqueeze(-1), 0.0)
    assert_close(m(x, key_padding_mask=kpm), _fit_reference(m, x_ref, kpm=kpm), atol=1e-11, rtol=1e-11, grads_of=[x])


def test_grid_windows_are_the_groups():
    """On a 4 x 4 grid with 2 x 2 windows the mixer equals the same mixer over the tokens reordered window by window
    (groups of 4 consecutive tokens), mapped back."""
    torch.manual_seed(0)
    m = mixers.create("fit", 8, num_heads=2, group_size=4).double().eval()
    x = torch.randn(1, 16, 8, dtype=torch.float64)
    order = torch.tensor([0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15])
    on_grid = m(x, grid=(4, 4))
    as_sequence = m(x[:, order])[:, torch.argsort(order)]
    torch.testing.assert_close(on_grid, as_sequence, atol=1e-12, rtol=0)
    assert (on_grid - m(x)).abs().max() > 1e-3  # spans of 4 raster tokens are other groups


def test_information_crosses_groups_only_through_the_latents():
    """fit_local: no token sees another group; fit: the far group reaches every token."""
    torch.manual_seed(0)
    for name, crosses in (("fit_local", False), ("fit", True)):
        m = mixers.create(name, 8, num_heads=2, group_size=4).double().eval()
        x = torch.randn(1, 16, 8, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(m(x)[0, 0].sum(), x)
        far = g[0, 12:].abs().sum().item()
        assert (far > 1e-6) == crosses, (name, far)


def test_backbones_use_it_on_patch_grids_and_sequences(train_fixed_batch):
    torch.manual_seed(0)
    vit = ViT(img_size=16, patch_size=2, in_chans=3, num_classes=3, dim=16, depth=2, num_heads=2, mixer="fit",
              mixer_kwargs={"group_size": 16})  # an 8 x 8 grid in 4 x 4 windows
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 3
    first, last = train_fixed_batch(vit, lambda m: torch.nn.functional.cross_entropy(m(x), y), 15)
    assert last < 0.5 * first
    lm = SequenceModel(vocab_size=11, dim=16, depth=2, num_heads=2, mixer="fit,fit_local", max_len=64,
                       mixer_kwargs={"group_size": 8})
    tokens = torch.randint(0, 11, (2, 37))
    out = lm(tokens)
    tokens2 = tokens.clone()
    tokens2[:, 20:] = (tokens2[:, 20:] + 1) % 11
    torch.testing.assert_close(lm(tokens2)[:, :20], out[:, :20], atol=1e-6, rtol=1e-6)  # the LM is causal


def test_bad_options_are_named():
    m = mixers.create("fit", 8, num_heads=2, group_size=4)
    with pytest.raises(ValueError, match=r"grid: expected sides divisible by the window \(2, 2\)"):
        m(torch.randn(1, 15, 8), grid=(3, 5))
    m6 = mixers.create("fit_local", 8, num_heads=2, group_size=6)
    with pytest.raises(ValueError, match=r"window: expected \(h, w\) for a 2-D grid: group_size=6 is not a square"):
        m6(torch.randn(1, 16, 8), grid=(4, 4))
    with pytest.raises(TypeError, match="window: expected None, a positive int or"):
        mixers.create("fit", 8, window=(2, 0))
    with pytest.raises(ValueError, match="latents_per_group: expected a positive int"):
        mixers.create("fit", 8, latents_per_group=0)


@pytest.mark.parametrize("causal", [False, True])
def test_a_group_of_trailing_padding_is_the_same_as_truncation(causal):
    """Found by the fuzz test: the latent of a group holding only padding was still a key of the global layers,
    so padding a sequence past a group boundary changed its real tokens' outputs."""
    torch.manual_seed(0)
    m = mixers.create("fit", 16, num_heads=2, group_size=4, global_layers=2).double().eval()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    kpm = torch.ones(2, 12, dtype=torch.bool)
    kpm[:, 8:] = False                      # the third group is all padding
    kpm[1, 6:] = False                      # and half of the second one in row 1
    padded = m(x, causal=causal, key_padding_mask=kpm)
    torch.testing.assert_close(padded[0, :8], m(x[:1, :8], causal=causal)[0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(padded[1, :6], m(x[1:, :6], causal=causal)[0], atol=1e-12, rtol=1e-12)
