"""The spectral_gating mixer (P04, GFNet's global filter) beyond the registry contract: against a dense-DFT
reference written from the formula (fp64 1e-10, fp32 1e-5), commutation with cyclic shifts, filter resizing."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab import mixers


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
