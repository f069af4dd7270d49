"""Vision token mixers: spectral gating (P04), Activator GLU (P07), GPSA (P11).

Each fast form is compared with an explicit reference written from the paper's
formula (dense DFT matrices, per-head loops), in float64 with a 1e-10 tolerance
and in float32 with 1e-5, plus the structural properties the papers rely on.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab import mixers
from attnlab.mixers.gpsa import relative_indices
from attnlab.ops.recording import record_attention

torch.manual_seed(0)


# ---------------------------------------------------------------- spectral gating
def _spectral_reference(x: torch.Tensor, weight: torch.Tensor, grid) -> torch.Tensor:
    """y = Re(IDFT2(DFT2(x) * W_full)) with dense DFT matrices; W_full is the Hermitian extension of W."""
    b, n, c = x.shape
    h, w = grid
    wc = torch.view_as_complex(weight.to(torch.float64).contiguous())  # (h, w//2+1, c)
    full = torch.zeros(h, w, c, dtype=torch.complex128)
    for u in range(h):
        for v in range(w):
            if v <= w // 2:
                full[u, v] = wc[u, v]
            else:  # conjugate symmetry of the real-signal spectrum
                full[u, v] = wc[(-u) % h, (-v) % w].conj()
    fh = torch.exp(-2j * math.pi * torch.outer(torch.arange(h), torch.arange(h)).to(torch.complex128) / h) / math.sqrt(h)
    fw = torch.exp(-2j * math.pi * torch.outer(torch.arange(w), torch.arange(w)).to(torch.complex128) / w) / math.sqrt(w)
    xg = x.to(torch.complex128).reshape(b, h, w, c)
    spec = torch.einsum("uh,bhwc,vw->buvc", fh, xg, fw)
    y = torch.einsum("uh,buvc,vw->bhwc", fh.conj(), spec * full, fw.conj())
    return y.real.reshape(b, n, c)


@pytest.mark.parametrize("grid", [(4, 4), (3, 5), (5, 6)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_spectral_gating_matches_dense_dft_reference(grid, dtype, tol):
    m = mixers.create("spectral_gating", 6, size=grid).to(dtype)
    with torch.no_grad():
        m.complex_weight.normal_()  # a generic filter, not the near-zero init
    x = torch.randn(2, grid[0] * grid[1], 6, dtype=dtype)
    y = m(x, grid=grid)
    ref = _spectral_reference(x, m.complex_weight.detach(), grid)
    assert (y.double() - ref).abs().max().item() < tol * max(1.0, ref.abs().max().item())


def test_spectral_gating_commutes_with_cyclic_shifts():
    grid = (4, 6)
    m = mixers.create("spectral_gating", 5, size=grid)
    with torch.no_grad():
        m.complex_weight.normal_()
    x = torch.randn(2, 24, 5)
    shift = lambda t: torch.roll(t.reshape(2, 4, 6, 5), shifts=(1, 2), dims=(1, 2)).reshape(2, 24, 5)  # noqa: E731
    assert torch.allclose(m(shift(x), grid=grid), shift(m(x, grid=grid)), atol=1e-5)


def test_spectral_gating_resizes_filter_for_a_new_grid():
    m = mixers.create("spectral_gating", 4, size=(4, 4))
    assert m.filter_for((4, 4)).shape == (4, 3, 4)
    assert torch.equal(torch.view_as_real(m.filter_for((4, 4))), m.complex_weight.detach())
    # A constant filter stays constant when resized, so the layer stays a scaled identity.
    with torch.no_grad():
        m.complex_weight.zero_()
        m.complex_weight[..., 0] = 0.5
    x = torch.randn(1, 48, 4)
    assert torch.allclose(m(x, grid=(6, 8)), 0.5 * x, atol=1e-6)


def test_spectral_gating_bad_size_is_named():
    with pytest.raises(ValueError, match="size: expected"):
        mixers.create("spectral_gating", 4, size=(4, 0))


# ---------------------------------------------------------------- activator GLU
def test_activator_glu_matches_formula_and_is_per_token():
    m = mixers.create("activator_glu", 8, hidden_ratio=1.5).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    ln = lambda t: torch.nn.functional.layer_norm(t, (m.hidden,), m.norm.weight, m.norm.bias)  # noqa: E731
    ref = m.proj(ln(torch.nn.functional.gelu(m.gate_proj(x))) * ln(m.value_proj(x)))
    assert (m(x) - ref).abs().max().item() < 1e-12
    perm = torch.randperm(7)
    # No token mixing: permuting tokens permutes outputs exactly (the note's surprise about the official model).
    assert (m(x[:, perm]) - m(x)[:, perm]).abs().max().item() < 1e-12


# ---------------------------------------------------------------- GPSA
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
