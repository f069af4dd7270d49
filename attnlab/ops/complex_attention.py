"""ComplexFormer's complex multi-head attention (CMHA, P18: Shao et al. 2025): fast path through SDPA and the
literal formula.

Each head reads its query and key as D/2 complex numbers z = a + i b, with a the first half of the head's
channels and b the second half (the official code's ``torch.split``): magnitude r = |z|, phase
theta = atan2(b, a). The score of query m and key n is

    S_mn = sum_k r_qk r_kk cos(delta_k (theta_qk - theta_kk) + b_k + (m - n) g_k),    g_k = base^(-2k / D),

with learnable per-head delta and b (shape (H, D/2), as in the official code), no 1/sqrt(D) scaling, and
softmax over the keys. Because cos(x - y) = cos x cos y + sin x sin y, S is a dot product of rotated
vectors: with phi_q = delta theta_q + b + m g and phi_k = delta theta_k + n g,

    q' = [r_q cos phi_q, r_q sin phi_q],   k' = [r_k cos phi_k, r_k sin phi_k],   S_mn = q'_m . k'_n,

so the attention runs through SDPA with scale 1: O(N D) extra work, O(N) memory, any mask SDPA takes.
The position term is RoPE's angle (``attnlab.ops.rope``, half-split layout): with delta = 1 and b = 0 the
rotated vector is RoPE itself. The angles m g_k are formed in float64 and reduced modulo 2 pi before
they are cast, so that adding them to delta theta in float32 loses nothing at large m.

Numerics. r and theta are not differentiable at z = 0 (atan2's gradient grows like 1/r), but their
products are: d(r cos(delta theta + c)) has norm <= 1 + |delta|. :func:`polar` therefore treats a pair
whose r^2 underflows (below the dtype's smallest normal number, r < ~1e-19 in fp32) as the origin,
with r = 0, theta = 0 and zero gradient, and computes r and theta through ``torch.where`` so that no
inf or NaN reaches the backward. The official code adds 1e-9 under the square root instead, which
keeps r >= 3e-5 at the origin and makes the gradient grow like sqrt(1e-9) / r near it; ``eps`` gives
that variant (default 0).

Branch cut. theta is torch.atan2's principal value in [-pi, pi]: +pi just above the negative real axis
(b = +0), -pi just below (b = -0). For integer delta the score is continuous across the axis; for other
delta, as in the paper's formula, it jumps there (by changing delta (theta_q - theta_k) by 2 pi delta).
Fast path and reference use the same theta, so they agree on either side.
"""
from __future__ import annotations

import math

import torch

from attnlab.ops.attention import attention, build_attention_mask, check_qkv, masked_softmax
from attnlab.ops.rope import check_positions, rope_inv_freq
from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["polar", "complex_rotate", "complex_attention", "complex_scores_reference", "complex_attention_reference"]


def polar(x: torch.Tensor, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude and phase of the D/2 complex numbers of x (..., D) (real part: first half): each (..., D/2).

    Safe at the origin (see the module docstring): r = 0, theta = 0 and zero gradient where r^2
    underflows. ``eps > 0`` gives the official code's r = sqrt(a^2 + b^2 + eps) instead.
    """
    if x.shape[-1] % 2:
        fail("x", "an even head dim D (D/2 complex numbers per head)", describe(x))
    a, b = x.chunk(2, dim=-1)
    r2 = a * a + b * b
    origin = r2 < torch.finfo(x.dtype).tiny
    if not bool(origin.any()):  # the common case: every gradient is finite as is
        return torch.sqrt(r2 + eps) if eps > 0 else torch.sqrt(r2), torch.atan2(b, a)
    a_safe = torch.where(origin, 1.0, a)
    b_safe = torch.where(origin, 0.0, b)
    theta = torch.where(origin, 0.0, torch.atan2(b_safe, a_safe))
    if eps > 0:
        return torch.sqrt(r2 + eps), theta
    return torch.where(origin, 0.0, torch.hypot(a_safe, b_safe)), theta


def _check_params(x: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor | None) -> None:
    shape = (x.shape[1], x.shape[-1] // 2)
    for name, p in (("delta", delta), ("bias", bias)):
        if p is None:
            continue
        check_tensor(name, p, ndim=2, floating=True)
        if tuple(p.shape) != shape:
            fail(name, f"shape (H, D/2) = {shape}", describe(p))


def complex_rotate(x: torch.Tensor, positions: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor | None = None,
                   *, base: float = 10000.0, eps: float = 0.0) -> torch.Tensor:
    """x (B, H, N, D) -> [r cos phi, r sin phi] (B, H, N, D) with phi = delta theta (+ bias) + positions g.

    ``positions``: (N,) or (B, N) integers; ``delta``, ``bias``: (H, D/2) (the bias goes on the query side).
    """
    check_tensor("x", x, ndim=4, floating=True)
    _check_params(x, delta, bias)
    positions = check_positions(positions, x.shape[2], x.shape[0])
    r, theta = polar(x, eps)
    angle = torch.remainder(positions.to(x.device, torch.float64)[..., None] * rope_inv_freq(x.shape[-1], base),
                            2 * math.pi).to(x.dtype)
    phi = delta[:, None, :].to(x.dtype) * theta + (angle[:, None] if angle.dim() == 3 else angle)
    if bias is not None:
        phi = phi + bias[:, None, :].to(x.dtype)
    return torch.cat([r * phi.cos(), r * phi.sin()], dim=-1)


def _positions(positions, n, device):
    return torch.arange(n, device=device) if positions is None else positions


def complex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor, *,
                      causal: bool = False, key_padding_mask: torch.Tensor | None = None,
                      q_positions: torch.Tensor | None = None, k_positions: torch.Tensor | None = None,
                      base: float = 10000.0, eps: float = 0.0, dropout_p: float = 0.0) -> torch.Tensor:
    """CMHA through SDPA: q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv) -> (B, H, N, Dv).

    ``delta``, ``bias`` (H, D/2); positions default to 0 .. N-1 and 0 .. M-1 (pass them explicitly when
    decoding). ``causal`` (query i sees keys j <= i), ``key_padding_mask`` (B, M) and ``dropout_p`` as in
    :func:`attnlab.ops.attention.attention`; inside ``record_attention`` the probabilities are recorded.
    """
    check_qkv(q, k, v)
    qr = complex_rotate(q, _positions(q_positions, q.shape[2], q.device), delta, bias, base=base, eps=eps)
    kr = complex_rotate(k, _positions(k_positions, k.shape[2], k.device), delta, None, base=base, eps=eps)
    return attention(qr, kr, v, causal=causal, key_padding_mask=key_padding_mask, scale=1.0, dropout_p=dropout_p)


def complex_scores_reference(q: torch.Tensor, k: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor, *,
                             q_positions: torch.Tensor | None = None, k_positions: torch.Tensor | None = None,
                             base: float = 10000.0, eps: float = 0.0) -> torch.Tensor:
    """The paper's score, computed literally pair by pair: (B, H, N, M).

    Builds the (B, H, N, M, D/2) tensor of r_q r_k cos(delta (theta_q - theta_k) + b + (m - n) g) and sums it:
    O(N M D) memory (a reference, as the official code's chunked einsum).
    """
    check_tensor("q", q, ndim=4, floating=True)
    check_tensor("k", k, ndim=4, floating=True)
    _check_params(q, delta, bias)
    qp = check_positions(_positions(q_positions, q.shape[2], q.device), q.shape[2], q.shape[0])
    kp = check_positions(_positions(k_positions, k.shape[2], k.device), k.shape[2], k.shape[0])
    r_q, th_q = polar(q, eps)
    r_k, th_k = polar(k, eps)
    g = rope_inv_freq(q.shape[-1], base)
    rel = (qp.to(torch.float64)[..., :, None] - kp.to(torch.float64)[..., None, :])[..., None] * g  # (.., N, M, D/2)
    if rel.dim() == 4:  # per-sequence positions: broadcast over heads
        rel = rel[:, None]
    angle = (delta[:, None, None, :] * (th_q[..., :, None, :] - th_k[..., None, :, :]) + bias[:, None, None, :]
             + rel.to(q.dtype))
    return (r_q[..., :, None, :] * r_k[..., None, :, :] * torch.cos(angle)).sum(-1)


def complex_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, delta: torch.Tensor,
                                bias: torch.Tensor, *, causal: bool = False,
                                key_padding_mask: torch.Tensor | None = None, q_positions: torch.Tensor | None = None,
                                k_positions: torch.Tensor | None = None, base: float = 10000.0,
                                eps: float = 0.0) -> torch.Tensor:
    """softmax(literal CMHA scores, masked) V: the same arguments and result as :func:`complex_attention`."""
    check_qkv(q, k, v)
    s = complex_scores_reference(q, k, delta, bias, q_positions=q_positions, k_positions=k_positions, base=base,
                                 eps=eps)
    mask = build_attention_mask(q.shape[2], k.shape[2], causal=causal, key_padding_mask=key_padding_mask,
                                device=q.device)
    return masked_softmax(s, mask) @ v
