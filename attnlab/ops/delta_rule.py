"""The delta rule (DeltaNet, P12: Yang et al. 2024): recurrence, chunkwise WY form, decoding step.

Layout (B, H, N, D); beta (B, H, N) in [0, 1]. State S (B, H, Dk, Dv), S_0 = 0 unless given:

    S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,      o_t = scale * S_t^T q_t

(scale defaults to Dk^-1/2, as in the paper's layer). Keys are expected
L2-normalised (the mixer does it) so that I - beta k k^T has eigenvalues in [0, 1].

Chunkwise form (the paper's Algorithm, WY/UT representation). Per chunk of C
tokens with K, V, Q (C x D) and beta:

    T = (I + strict_tril(diag(beta) K K^T))^{-1} diag(beta)     (unit lower-triangular solve)
    W = T K,  U = T V
    S_next = S + K^T (U - W S) = (I - K^T W) S + K^T U
    O      = Q S + (Q K^T masked causally, diagonal included) (U - W S)

All per-chunk quantities (T, W, U, K^T W, K^T U, the masked Q K^T) are computed
for every chunk at once; only S_next = S - (K^T W) S + K^T U runs sequentially,
one (Dk x Dk)(Dk x Dv) product per chunk. The states entering each chunk are
kept (N/C states of Dk x Dv: O(N Dk Dv / C) memory, the same order as q for
C = Dk). N that is not a multiple of C is padded with beta = 0, k = 0 tokens,
which leave the state unchanged, so results equal the recurrence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab._checks import check_positive_int, check_tensor, describe, fail

__all__ = ["delta_rule_chunkwise", "delta_rule_recurrent", "delta_rule_step"]


def _check(q, k, v, beta, initial_state):
    q = check_tensor("q", q, ndim=4, floating=True)
    k = check_tensor("k", k, ndim=4, floating=True)
    v = check_tensor("v", v, ndim=4, floating=True)
    beta = check_tensor("beta", beta, ndim=3, floating=True)
    if k.shape != q.shape:
        fail("k", f"shape {tuple(q.shape)} (as q)", describe(k))
    if v.shape[:3] != q.shape[:3]:
        fail("v", f"shape {tuple(q.shape[:3])} + (Dv,) (as q in B, H, N)", describe(v))
    if beta.shape != q.shape[:3]:
        fail("beta", f"shape (B, H, N) = {tuple(q.shape[:3])}", describe(beta))
    for name, t in (("k", k), ("v", v), ("beta", beta)):
        if t.dtype != q.dtype:
            fail(name, f"dtype {q.dtype} (as q)", describe(t), TypeError)
    if initial_state is not None:
        want = (q.shape[0], q.shape[1], q.shape[3], v.shape[3])
        initial_state = check_tensor("initial_state", initial_state, ndim=4, floating=True)
        if tuple(initial_state.shape) != want:
            fail("initial_state", f"shape (B, H, Dk, Dv) = {want}", describe(initial_state))
    return q, k, v, beta


def delta_rule_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the token-by-token delta-rule recurrence (unbind/stack, no slice writes).

    q, k (B, H, N, Dk), v (B, H, N, Dv), beta (B, H, N) -> (o (B, H, N, Dv), final state (B, H, Dk, Dv)).
    """
    q, k, v, beta = _check(q, k, v, beta, initial_state)
    b, h, n, dk = q.shape
    scale = dk**-0.5 if scale is None else scale
    s = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for q_t, k_t, v_t, b_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2)):
        o_t, s = delta_rule_step(q_t, k_t, v_t, b_t, s, scale=scale)
        outs.append(o_t)
    return torch.stack(outs, dim=2), s


def delta_rule_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    beta_t: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One delta-rule step: q_t, k_t (B, H, Dk), v_t (B, H, Dv), beta_t (B, H), state (B, H, Dk, Dv).

    Returns (o_t (B, H, Dv), new state). O(Dk Dv) per token, independent of t.
    """
    scale = q_t.shape[-1] ** -0.5 if scale is None else scale
    # v_old = S^T k: what the memory currently returns for this key; write the correction
    v_old = torch.einsum("bhde,bhd->bhe", state, k_t)
    delta = beta_t.unsqueeze(-1) * (v_t - v_old)
    state = state + k_t.unsqueeze(-1) * delta.unsqueeze(-2)
    o_t = torch.einsum("bhde,bhd->bhe", state, q_t) * scale
    return o_t, state


def delta_rule_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    chunk_size: int = 64,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Delta rule, chunkwise-parallel WY form (P12 Sec. 3). Same signature/result as :func:`delta_rule_recurrent`.

    q, k (B, H, N, Dk), v (B, H, N, Dv), beta (B, H, N) -> (o (B, H, N, Dv), final state (B, H, Dk, Dv)).
    """
    q, k, v, beta = _check(q, k, v, beta, initial_state)
    check_positive_int("chunk_size", chunk_size)
    b, h, n, dk = q.shape
    dv = v.shape[-1]
    scale = dk**-0.5 if scale is None else scale
    c = min(chunk_size, n)
    pad = (-n) % c
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        beta = F.pad(beta, (0, pad))
    nc = (n + pad) // c
    qc, kc, vc = (t.reshape(b, h, nc, c, t.shape[-1]) for t in (q, k, v))
    bc = beta.reshape(b, h, nc, c, 1)
    kb = kc * bc
    eye = torch.eye(c, dtype=q.dtype, device=q.device)
    # batched tril() is slow on CPU; multiplying by a fixed 0/1 mask is not
    lower = torch.ones(c, c, dtype=q.dtype, device=q.device).tril()
    # I + strict_tril(diag(beta) K K^T): unit lower triangular, inverted by one batched solve
    a = (kb @ kc.transpose(-1, -2)) * (lower - eye) + eye
    wu = torch.linalg.solve_triangular(a, torch.cat([kb, vc * bc], dim=-1), upper=False, unitriangular=True)
    w, u = wu[..., :dk], wu[..., dk:]
    kt = kc.transpose(-1, -2)
    # per-chunk transition I - K^T W and input K^T U, flattened over (B, H) for baddbmm
    trans = (torch.eye(dk, dtype=q.dtype, device=q.device) - kt @ w).permute(2, 0, 1, 3, 4).reshape(nc, b * h, dk, dk)
    inp = (kt @ u).permute(2, 0, 1, 3, 4).reshape(nc, b * h, dk, dv)
    s = q.new_zeros(b * h, dk, dv) if initial_state is None else initial_state.reshape(b * h, dk, dv)
    entering = []
    for a_i, g_i in zip(trans.unbind(0), inp.unbind(0)):
        entering.append(s)
        s = torch.baddbmm(g_i, a_i, s)
    # state entering each chunk, back to (b, h, nc, dk, dv)
    s_in = torch.stack(entering, dim=0).reshape(nc, b, h, dk, dv).permute(1, 2, 0, 3, 4)
    s = s.reshape(b, h, dk, dv)
    qs = qc * scale
    u_new = u - w @ s_in
    attn = (qs @ kt) * lower
    o = qs @ s_in + attn @ u_new
    return o.reshape(b, h, nc * c, dv)[:, :, :n], s
