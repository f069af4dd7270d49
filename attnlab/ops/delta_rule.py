"""The delta rule (DeltaNet, P12: Yang et al. 2024): recurrence, chunkwise WY form, decoding step.

Layout (B, H, N, D); beta (B, H, N) in [0, 1]. State S (B, H, Dk, Dv), S_0 = 0 unless given:

    S_t = (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,      o_t = scale * S_t^T q_t

(scale defaults to Dk^-1/2, as in the paper's layer). Keys are expected
L2-normalised (the mixer does it) so that I - beta k k^T has eigenvalues in [0, 1].

Chunkwise form (the paper's Algorithm, WY/UT representation). Per chunk of C
tokens with K, V, Q (C x D) and beta:

    T = (I + strict_tril(diag(beta) K K^T))^{-1} diag(beta)     (unit lower-triangular solve)
    W = T K,  U = T V
    S_next = S + K^T (U - W S)
    O      = Q S + (Q K^T masked causally, diagonal included) (U - W S)

T, W, U, the masked Q K^T and the chunk transitions M = I - K^T W, K^T U are computed for
every chunk at once (T by matmul-only block inversion, no LAPACK solve); only the state
recurrence S_next = M S + K^T U runs sequentially, one small product per chunk. A custom autograd Function carries a hand-derived backward
(a reverse chunk loop for dL/dS, everything else batched over chunks; no backward through
the triangular inverse), which is ~2x cheaper than autograd through the same forward.
N that is not a multiple of C is padded with beta = 0, k = 0 tokens, which leave the state
unchanged, so results equal the recurrence.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import lower_precision_op, upcast
from attnlab.ops.attention import check_self_qkv

__all__ = ["delta_rule_chunkwise", "delta_rule_recurrent", "delta_rule_step", "unit_lower_inverse"]


def _check(q, k, v, beta, initial_state):
    check_self_qkv(q, k, v)
    beta = check_tensor("beta", beta, ndim=3, floating=True)
    if beta.shape != q.shape[:3]:
        fail("beta", f"shape (B, H, N) = {tuple(q.shape[:3])}", describe(beta))
    if beta.dtype != q.dtype:
        fail("beta", f"dtype {q.dtype} (as q)", describe(beta), TypeError)
    if initial_state is not None:
        want = (q.shape[0], q.shape[1], q.shape[3], v.shape[3])
        initial_state = check_tensor("initial_state", initial_state, ndim=4, floating=True)
        if tuple(initial_state.shape) != want:
            fail("initial_state", f"shape (B, H, Dk, Dv) = {want}", describe(initial_state))
    return q, k, v, beta


@lower_precision_op
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
    bf16 inputs are computed in fp32 (o is cast back; the state stays fp32).
    """
    q, k, v, beta = _check(q, k, v, beta, initial_state)
    b, h, n, dk = q.shape
    out_dtype = q.dtype
    q, k, v, beta = (upcast(t) for t in (q, k, v, beta))
    scale = dk**-0.5 if scale is None else scale
    s = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else upcast(initial_state)
    outs = []
    for q_t, k_t, v_t, b_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), beta.unbind(2)):
        o_t, s = delta_rule_step(q_t, k_t, v_t, b_t, s, scale=scale)
        outs.append(o_t)
    return torch.stack(outs, dim=2).to(out_dtype), s


@lower_precision_op
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

    Returns (o_t (B, H, Dv), new state). O(Dk Dv) per token, independent of t. bf16 inputs are
    computed in fp32: o_t is cast back, the new state is fp32.
    """
    out_dtype = q_t.dtype
    q_t, k_t, v_t, beta_t, state = (upcast(t) for t in (q_t, k_t, v_t, beta_t, state))
    scale = q_t.shape[-1] ** -0.5 if scale is None else scale
    # v_old = S^T k: what the memory currently returns for this key; write the correction
    v_old = torch.einsum("bhde,bhd->bhe", state, k_t)
    delta = beta_t.unsqueeze(-1) * (v_t - v_old)
    state = state + k_t.unsqueeze(-1) * delta.unsqueeze(-2)
    o_t = torch.einsum("bhde,bhd->bhe", state, q_t) * scale
    return o_t.to(out_dtype), state


def unit_lower_inverse(strict_l, leaf=16):
    """T = (I + L)^-1 for strictly lower-triangular L (..., C, C), any C.

    Batched LAPACK triangular solves of 64 x 64 cost ~5x their flops here, so T is built from
    matmuls: diagonal leaf blocks by the exact product (I - L)(I + L^2)(I + L^4)... (L nilpotent),
    then block doubling T21 = -T22 L21 T11. C is padded with zeros to a power of two.
    """
    *batch, c0, _ = strict_l.shape
    c = 1 << (c0 - 1).bit_length()   # the doubling works on powers of two: pad with zero rows/cols
    l2 = strict_l.reshape(-1, c0, c0)
    if c != c0:
        l2 = F.pad(l2, (0, c - c0, 0, c - c0))
    b = l2.shape[0]
    leaf = min(leaf, c)
    t = torch.zeros_like(l2)
    m = c // leaf
    lv = l2.view(b, m, leaf, m, leaf).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
    tv = t.view(b, m, leaf, m, leaf).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
    p = -lv
    inv = torch.eye(leaf, dtype=l2.dtype, device=l2.device) + p
    e = 2
    while e < leaf:
        p = p @ p
        inv = torch.baddbmm(inv.reshape(-1, leaf, leaf), inv.reshape(-1, leaf, leaf), p.reshape(-1, leaf, leaf)).view(b, m, leaf, leaf)
        e *= 2
    tv.copy_(inv)
    s = leaf
    while s < c:
        m = c // (2 * s)
        lv = l2.view(b, m, 2 * s, m, 2 * s).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
        tv = t.view(b, m, 2 * s, m, 2 * s).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
        tv[..., s:, :s].copy_(-(tv[..., s:, s:] @ (lv[..., s:, :s] @ tv[..., :s, :s])))
        s *= 2
    if c != c0:
        t = t[:, :c0, :c0].contiguous()
    return t.view(*batch, c0, c0)


class _DeltaRuleChunkwise(torch.autograd.Function):
    """Chunkwise delta rule on chunk-major inputs (nc, B*H, C, D), with a hand-derived backward.

    Forward, per chunk i with state S_i entering it (Kb = diag(beta) K, Vb = diag(beta) V):
        T = (I + strict_tril(Kb K^T))^-1,  W = T Kb,  U = T Vb        (all chunks at once)
        M_i = I - K^T W,  B_i = K^T U                                  (all chunks at once)
        S_{i+1} = S_i + K^T (U - W S_i) = M_i S_i + B_i                 (the only sequential part: one product)
        Unew = U - W S_i,  O = Q S_i + (Q K^T * lower) Unew             (all chunks at once)
    Backward, with G_i = dL/dS_i (G_nc = grad of the final state):
        dUnew = (Q K^T * lower)^T dO + K G_{i+1}
        G_i = G_{i+1} + Q^T dO - W^T dUnew = M_i^T G_{i+1} + R_i,  R_i = Q^T dO - W^T (Q K^T * lower)^T dO
        (R for all chunks at once, then one product per chunk in a reverse loop);
        dV~ = T^T dUnew for V~ = Vb - Kb S_i; then dA = -(dV~ Unew^T) * strict, so the
        triangular inverse needs no backward of its own (dT T^T folds into Unew = T V~);
        dKb = -dV~ S_i^T + dA K, dK += dA^T Kb + beta dKb + (dP^T Q) + Unew G_{i+1}^T, dVb = dV~.
    Saved: T, W|U, Unew, M, the chunk-entry states and the masked Q K^T (each O(N (C + D)) per head).

    Only the state recurrences are sequential, one (Dk x Dk) x (Dk x Dv) product per chunk each way;
    everything else is a product batched over chunks (before: two products, a copy and an add per chunk).

    bf16 inputs (the AMX fast path): every batched product runs in bf16 (fp32 accumulation inside
    the matmul), while the states S_i, their gradients G_i and the recurrences (M_i with its identity
    added in fp32, B_i, R_i) are fp32 (``s0.dtype``); the batched products read the states rounded to bf16.
    """

    @staticmethod
    def forward(ctx, q, k, v, beta, s0, c):
        # q (pre-scaled), k (nc, BH, C, Dk), v (nc, BH, C, Dv), beta (nc, BH, C, 1), s0 (BH, Dk, Dv) in the
        # state dtype (fp32 for bf16 inputs, else the inputs' dtype)
        nc, bh, _, dk = q.shape
        dv = v.shape[-1]
        kt = k.transpose(-1, -2)
        tmat = unit_lower_inverse((k @ kt).mul_(beta).tril_(-1))    # rows of K K^T scaled: Kb K^T
        tb = tmat * beta.transpose(-1, -2)                  # T diag(beta): W = T Kb = (T diag(beta)) K, U likewise
        w, u = tb @ k, tb @ v
        states = s0.new_empty(nc + 1, bh, dk, dv)
        states[0] = s0
        if s0.dtype != q.dtype:
            # bf16 inputs: S_{i+1} = M_i S_i + B_i, one fp32 product per chunk. M_i = I - K^T W in fp32 (one
            # promoting subtraction: M rounded to bf16 would lose the I), B_i = K^T U (fp32 from here on)
            trans = torch.eye(dk, dtype=s0.dtype, device=s0.device) - kt @ w
            states[1:] = kt @ u
            for i, (m_i, s_i) in enumerate(zip(trans.unbind(0), states.unbind(0))):
                states[i + 1].baddbmm_(m_i, s_i)
            s_in = states[:nc].to(q.dtype)                  # the state entering each chunk, inputs' dtype
            unew = torch.baddbmm(u.view(-1, c, dv), w.view(-1, c, dk), s_in.view(-1, dk, dv),
                                 alpha=-1).view(nc, bh, c, dv)
        else:
            # one dtype (fp32, fp64): two products per chunk; the batched K^T W of the form above measured
            # ~10 % slower overall in fp32 at C = 32 and 64 than this loop
            trans, s_in, unew = None, states[:nc], torch.empty_like(u)
            for i in range(nc):
                torch.baddbmm(u[i], w[i], states[i], alpha=-1, out=unew[i])
                torch.baddbmm(states[i], kt[i], unew[i], out=states[i + 1])
        attn = (q @ kt).tril_()
        o = q @ s_in
        o.view(-1, c, dv).baddbmm_(attn.view(-1, c, c), unew.view(-1, c, dv))
        ctx.save_for_backward(q, k, v, beta, tmat, w, unew, s_in, attn, trans)
        ctx.c = c
        return o, states[nc].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, do, ds):
        q, k, v, beta, tmat, w, unew, s_in, attn, trans = ctx.saved_tensors
        c = ctx.c
        nc, bh, _, dk = q.shape
        dv = v.shape[-1]
        if do is None:
            do = torch.zeros_like(unew)
        do = do.contiguous()
        kb = k * beta
        dunew = attn.transpose(-1, -2) @ do                 # dUnew from the outputs
        qtdo = q.transpose(-1, -2) @ do                     # dS_in from the outputs
        gs = q.new_empty(nc + 1, bh, dk, dv, dtype=s_in.dtype if trans is None else trans.dtype)  # dL/dS_i
        if ds is None:
            gs[nc].zero_()
        else:
            gs[nc] = ds
        if trans is not None:
            # G_i = M_i^T G_{i+1} + R_i, R_i = Q^T dO - W^T dUnew_out (all chunks at once), in fp32
            gs[:nc] = torch.baddbmm(qtdo.view(-1, dk, dv), w.transpose(-1, -2).reshape(-1, dk, c),
                                    dunew.view(-1, c, dv), alpha=-1).view(nc, bh, dk, dv)
            g_list, trans_t = gs.unbind(0), trans.transpose(-1, -2).unbind(0)
            for i in range(nc - 1, -1, -1):
                g_list[i].baddbmm_(trans_t[i], g_list[i + 1])
            g_next = gs[1:].to(q.dtype)                     # G_{i+1} in the inputs' dtype
            dunew.view(-1, c, dv).baddbmm_(k.view(-1, c, dk), g_next.view(-1, dk, dv))
        else:
            gs[:nc] = qtdo
            g_next, wt = gs[1:], w.transpose(-1, -2)
            for i in range(nc - 1, -1, -1):
                dunew[i].baddbmm_(k[i], g_next[i])
                gs[i].add_(gs[i + 1]).baddbmm_(wt[i], dunew[i], alpha=-1)
        s_t = s_in.transpose(-1, -2)
        # Unew = T (Vb - Kb S): gradient of the inner V~ = Vb - Kb S
        dvt = tmat.transpose(-1, -2) @ dunew
        da = (dvt @ unew.transpose(-1, -2)).tril_(-1)      # -dA (A = I + strict_tril(Kb K^T))
        dkb = torch.baddbmm((dvt @ s_t).view(-1, c, dk), da.view(-1, c, c), k.view(-1, c, dk)).view(nc, bh, c, dk).neg_()
        dp = (do @ unew.transpose(-1, -2)).tril_()
        dq = do @ s_t
        dq.view(-1, c, dk).baddbmm_(dp.view(-1, c, c), k.view(-1, c, dk))
        dk_ = dp.transpose(-1, -2) @ q
        dk_.view(-1, c, dk).baddbmm_(unew.view(-1, c, dv), g_next.transpose(-1, -2).reshape(-1, dv, dk))
        dk_.view(-1, c, dk).baddbmm_(da.transpose(-1, -2).reshape(-1, c, c), kb.view(-1, c, dk), alpha=-1)
        dk_.addcmul_(beta, dkb)
        dbeta = dkb.mul_(k).sum(-1, keepdim=True) + (dvt * v).sum(-1, keepdim=True)
        return dq, dk_, dvt.mul_(beta), dbeta, gs[0], None


@lower_precision_op
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
    """Delta rule, chunkwise-parallel WY form (P12 Sec. 3) with a hand-derived backward.

    Same signature/result as :func:`delta_rule_recurrent`: q, k (B, H, N, Dk), v (B, H, N, Dv),
    beta (B, H, N) -> (o (B, H, N, Dv), final state (B, H, Dk, Dv)); gradients flow to q, k, v,
    beta and initial_state (first order only). bf16 inputs take the AMX path: batched products in
    bf16, states and their gradients in fp32 (the final state is returned in fp32); see
    :class:`_DeltaRuleChunkwise`.
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

    def to_chunks(t):
        # chunk index first: the sequential loop then reads contiguous (B*H, C, D) blocks
        return t.reshape(b * h, nc, c, t.shape[-1]).transpose(0, 1).contiguous()

    state_dtype = upcast(q).dtype
    s0 = (q.new_zeros(b * h, dk, dv, dtype=state_dtype) if initial_state is None
          else initial_state.reshape(b * h, dk, dv).to(state_dtype))
    o, s = _DeltaRuleChunkwise.apply(to_chunks(q * scale), to_chunks(k), to_chunks(v), to_chunks(beta.unsqueeze(-1)), s0, c)
    return o.transpose(0, 1).reshape(b, h, nc * c, dv)[:, :, :n], s.reshape(b, h, dk, dv)
