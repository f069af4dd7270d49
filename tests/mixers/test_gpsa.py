"""The gpsa mixer (P11, ConViT) beyond the registry contract: against an explicit per-head reference (fp64
1e-10, fp32 1e-5), the local init, the gate between content and position, recording, relative indices."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab import mixers
from attnlab.mixers.gpsa import relative_indices
from attnlab.ops.recording import record_attention


def _gpsa_reference(m, x, grid):
    """Explicit ConViT formula with per-head loops and an explicit row renormalisation."""
    b, n, c = x.shape
    h = m.num_heads
    d = c // h
    qk = m.qk(x)
    q, k = qk[..., :c], qk[..., c:]
    v = m.v(x)
    rows = [(i // grid[1], i % grid[1]) for i in range(n)]
    rel = torch.tensor(
        [[[cj - ci, rj - ri, (cj - ci) ** 2 + (rj - ri) ** 2] for (rj, cj) in rows] for (ri, ci) in rows], dtype=x.dtype
    )
    outs = []
    for hh in range(h):
        sl = slice(hh * d, (hh + 1) * d)
        content = torch.softmax(q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(d), dim=-1)
        pos = torch.softmax(rel @ m.pos_proj.weight[hh] + m.pos_proj.bias[hh], dim=-1)
        g = torch.sigmoid(m.gating_param[hh])
        a = (1 - g) * content + g * pos
        a = a / a.sum(-1, keepdim=True)
        outs.append(a @ v[..., sl])
    return m.proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("grid", [(3, 3), (2, 5)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_gpsa_matches_explicit_reference(grid, dtype, tol):
    m = mixers.create("gpsa", 12, num_heads=4, local_init=False).to(dtype)
    with torch.no_grad():
        m.gating_param.normal_()
        m.pos_proj.weight.normal_()
    x = torch.randn(2, grid[0] * grid[1], 12, dtype=dtype)
    assert (m(x, grid=grid) - _gpsa_reference(m, x, grid)).abs().max().item() < tol


def test_gpsa_local_init_centres_each_head_on_its_offset():
    m = mixers.create("gpsa", 18, num_heads=9, locality_strength=5.0)
    grid = (7, 7)
    pos = m.positional_attention(grid)  # (H, N, N)
    centre = 3 * 7 + 3
    for h, (dx, dy) in enumerate(m.head_offsets()):
        peak = int(pos[h, centre].argmax())
        assert (peak // 7 - 3, peak % 7 - 3) == (dy, dx)
        assert pos[h, centre, peak] > 0.9  # alpha = 5 gives a sharp bump
    # W_v = I at init: with the gate fully positional the layer is a fixed convolution of x.
    assert torch.equal(m.v.weight, torch.eye(18))


def test_gpsa_gate_interpolates_between_content_and_position():
    m = mixers.create("gpsa", 8, num_heads=4)
    x = torch.randn(2, 9, 8)
    with torch.no_grad():
        m.gating_param.fill_(50.0)  # sigmoid ~ 1: purely positional, content-independent weights
    y1 = m(x, grid=(3, 3))
    with torch.no_grad():
        m.qk.weight.normal_()
    assert torch.allclose(m(x, grid=(3, 3)), y1, atol=1e-6)
    with torch.no_grad():
        m.gating_param.fill_(-50.0)  # purely content: changing positional weights changes nothing
    y2 = m(x, grid=(3, 3))
    with torch.no_grad():
        m.pos_proj.weight.normal_()
    assert torch.allclose(m(x, grid=(3, 3)), y2, atol=1e-6)


def test_gpsa_records_the_gated_attention_rows():
    m = mixers.create("gpsa", 8, num_heads=4).eval()
    x = torch.randn(2, 9, 8)
    with record_attention(m) as rec:
        y = m(x, grid=(3, 3))
    probs = rec.maps[next(iter(rec.maps))][-1]
    assert probs.shape == (2, 4, 9, 9)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 9), atol=1e-6)
    assert torch.allclose(y, m(x, grid=(3, 3)), atol=1e-6)  # the recording path gives the same output


def test_relative_indices_convention():
    rel = relative_indices((2, 3))
    # token 0 = (row 0, col 0), token 5 = (row 1, col 2): dx = 2, dy = 1
    assert rel[0, 5].tolist() == [2.0, 1.0, 5.0]
    assert rel[5, 0].tolist() == [-2.0, -1.0, 5.0]
