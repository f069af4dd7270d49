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

T, W, U and the masked Q K^T are computed for every chunk at once (T by matmul-only block
inversion, no LAPACK solve); only the state recurrence runs sequentially: in fp32 / fp64 two
small products per chunk (U - W S, then S + K^T (U - W S)), in bf16 one fp32 product per chunk,
S_next = M S + K^T U with M = I - K^T W and K^T U batched. A custom autograd Function carries a
hand-derived backward (a reverse chunk loop for dL/dS, everything else batched over chunks; no
backward through the triangular inverse), which is ~2x cheaper than autograd through the same forward.
N that is not a multiple of C is padded with beta = 0, k = 0 tokens, which leave the state
unchanged, so results equal the recurrence.

bf16 inputs take their own Function (:class:`_DeltaRuleChunkwiseLowPrecision`): the same algebra
in the inputs' (B*H, nc, C, D) layout (no chunk-major copies), batched products in bf16 over blocks
of ~256 chunks, states and the recurrences in fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import is_low_precision, lower_precision_op, upcast
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
    """Chunkwise delta rule on chunk-major inputs (nc, B*H, C, D) of one dtype (fp32, fp64), hand-derived backward.

    Forward, per chunk i with state S_i entering it (Kb = diag(beta) K, Vb = diag(beta) V):
        T = (I + strict_tril(Kb K^T))^-1,  W = T Kb,  U = T Vb        (all chunks at once)
        Unew = U - W S_i,  S_{i+1} = S_i + K^T Unew                      (the sequential part: two products per chunk)
        O = Q S_i + (Q K^T * lower) Unew                                (all chunks at once)
    Backward, with G_i = dL/dS_i (G_nc = grad of the final state):
        dUnew = (Q K^T * lower)^T dO + K G_{i+1}
        G_i = G_{i+1} + Q^T dO - W^T dUnew                              (reverse loop, one chunk at a time)
        dV~ = T^T dUnew for V~ = Vb - Kb S_i; then dA = -(dV~ Unew^T) * strict, so the
        triangular inverse needs no backward of its own (dT T^T folds into Unew = T V~);
        dKb = -dV~ S_i^T + dA K, dK += dA^T Kb + beta dKb + (dP^T Q) + Unew G_{i+1}^T, dVb = dV~.
    Saved: T, W, Unew, the chunk-entry states and the masked Q K^T (each O(N (C + D)) per head).
    The batched form of the recurrence (M_i = I - K^T W for all chunks, one product per chunk; see
    :class:`_DeltaRuleChunkwiseLowPrecision`) measured ~10 % slower overall in fp32 at C = 32 and 64 than this loop.
    """

    @staticmethod
    def forward(ctx, q, k, v, beta, s0, c):
        # q (pre-scaled), k (nc, BH, C, Dk), v (nc, BH, C, Dv), beta (nc, BH, C, 1), s0 (BH, Dk, Dv)
        nc, bh, _, dk = q.shape
        dv = v.shape[-1]
        kt = k.transpose(-1, -2)
        tmat = unit_lower_inverse((k @ kt).mul_(beta).tril_(-1))    # rows of K K^T scaled: Kb K^T
        tb = tmat * beta.transpose(-1, -2)                  # T diag(beta): W = T Kb = (T diag(beta)) K, U likewise
        w, u = tb @ k, tb @ v
        states = s0.new_empty(nc + 1, bh, dk, dv)
        states[0] = s0
        unew = torch.empty_like(u)
        for i in range(nc):
            torch.baddbmm(u[i], w[i], states[i], alpha=-1, out=unew[i])
            torch.baddbmm(states[i], kt[i], unew[i], out=states[i + 1])
        s_in = states[:nc]
        attn = (q @ kt).tril_()
        o = q @ s_in
        o.view(-1, c, dv).baddbmm_(attn.view(-1, c, c), unew.view(-1, c, dv))
        ctx.save_for_backward(q, k, v, beta, tmat, w, unew, s_in, attn)
        ctx.c = c
        return o, states[nc].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, do, ds):
        q, k, v, beta, tmat, w, unew, s_in, attn = ctx.saved_tensors
        c = ctx.c
        nc, bh, _, dk = q.shape
        dv = v.shape[-1]
        if do is None:
            do = torch.zeros_like(unew)
        do = do.contiguous()
        kb = k * beta
        dunew = attn.transpose(-1, -2) @ do                 # dUnew from the outputs
        gs = q.new_empty(nc + 1, bh, dk, dv)                # dL/dS_i
        if ds is None:
            gs[nc].zero_()
        else:
            gs[nc] = ds
        gs[:nc] = q.transpose(-1, -2) @ do                  # dS_in from the outputs
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


#: chunks per block of the bf16 path's batched products. At B=1, H=4, N=8192, D=64, C=64: blocks of 32 and 64
#: chunks measured slower (more, smaller calls: a bf16 product call costs ~17 us before any work), 128 and 256
#: equal, the whole sequence (512) ~3 % slower; at training shapes (B=16, H=4, N=256, D=16) 256 took 0.92x the
#: previous op's time where 128 took 1.03x (one block of 64 heads instead of two)
_BLOCK_CHUNKS = 256


def _blocks(bh: int, nc: int, size: int) -> list[tuple[int, int, int, int]]:
    """Blocks (h0, h1, j0, j1) covering (B*H, nc) chunks: ranges of ``size`` chunks of one head when a head has at
    least ``size`` chunks, else groups of whole heads; either way ``t[h0:h1, j0:j1]`` of a (B*H, nc, ...) tensor is
    contiguous, so every block is a plain (n, C, D) batch for the products."""
    if nc >= size:
        return [(h, h + 1, j, min(j + size, nc)) for h in range(bh) for j in range(0, nc, size)]
    g = max(1, size // nc)
    return [(h, min(h + g, bh), 0, nc) for h in range(0, bh, g)]


def _block(t: torch.Tensor, blk: tuple[int, int, int, int]) -> torch.Tensor:
    """The block of a head-major (B*H, nc, R, D) tensor as a (n, R, D) view."""
    h0, h1, j0, j1 = blk
    return t[h0:h1, j0:j1].reshape(-1, *t.shape[2:])


class _DeltaRuleChunkwiseLowPrecision(torch.autograd.Function):
    """Chunkwise delta rule for bf16 (or fp16) inputs, the AMX path; hand-derived backward.

    Inputs are views of the caller's tensors in their own layout, q, k (B*H, nc, C, Dk), v (B*H, nc, C, Dv),
    beta (B*H, nc, C, 1), unscaled q; s0 (B*H, Dk, Dv) fp32. The algebra of :class:`_DeltaRuleChunkwise`, with the
    recurrence in batched form, S_{i+1} = M_i S_i + B_i, M_i = I - K^T W, B_i = K^T U, and its gradient
    G_i = M_i^T G_{i+1} + R_i, R_i = scale (Q^T dO - W^T (Q K^T * lower)^T dO):
      * every batched product runs in bf16 (fp32 accumulation inside the matmul), over blocks of
        :data:`_BLOCK_CHUNKS` chunks of the inputs' layout (no chunk-major copies of q, k, v, beta, the output
        or the gradients);
      * the states S_i, their gradients G_i and the two recurrences are fp32, one fp32 product per chunk each
        way, with M_i = I - P_i formed in fp32 at each step from the bf16 product P_i = K^T W (M_i rounded to
        bf16 would lose the I); B_i and R_i come out of bf16 products. Each step also writes its state rounded
        to bf16 into the (B*H, nc, Dk, Dv) buffer the batched products read, while it is in cache (a separate
        cast pass over all states measured slower);
      * the attention scale rides on the products' alpha/beta, never a pass over q or the output.
    Saved: T, W, Unew (in U's place), the masked Q K^T, P, the bf16 states (each O(N (C + D)) per head).
    """

    @staticmethod
    def forward(ctx, q, k, v, beta, s0, c, scale):
        bh, nc, _, dk = q.shape
        dv = v.shape[-1]
        eye = torch.eye(dk, dtype=s0.dtype, device=s0.device)
        pmat = q.new_empty(bh, nc, dk, dk)                  # P_i = K^T W; M_i = I - P_i
        bmat = q.new_empty(bh, nc, dk, dv)                  # B_i = K^T U
        blocks = _blocks(bh, nc, _BLOCK_CHUNKS)
        saved = []
        for blk in blocks:
            kb, vb, bb = _block(k, blk), _block(v, blk), _block(beta, blk)
            kt = kb.transpose(-1, -2)
            tmat = unit_lower_inverse((kb @ kt).mul_(bb).tril_(-1), leaf=32)
            tb = tmat * bb.transpose(-1, -2)                # T diag(beta): W = T Kb, U = T Vb
            w, u = tb @ kb, tb @ vb
            torch.bmm(kt, w, out=_block(pmat, blk))
            torch.bmm(kt, u, out=_block(bmat, blk))
            saved.append([tmat, w, u])
        s_in_all = q.new_empty(bh, nc, dk, dv)              # S_i entering chunk i, rounded to the inputs' dtype
        cur, nxt, m_i = s0.clone(), torch.empty_like(s0), s0.new_empty(bh, dk, dk)
        for p_i, b_i, s_i in zip(pmat.unbind(1), bmat.unbind(1), s_in_all.unbind(1)):
            s_i.copy_(cur)
            torch.sub(eye, p_i, out=m_i)                    # M_i in fp32: rounded to bf16 it would lose the I
            nxt.copy_(b_i).baddbmm_(m_i, cur)
            cur, nxt = nxt, cur
        o = q.new_empty(bh, nc, c, dv)
        for blk, sv in zip(blocks, saved):
            _, w, u = sv
            kb, qb, ob = _block(k, blk), _block(q, blk), _block(o, blk)
            s_in = _block(s_in_all, blk)
            unew = u.baddbmm_(w, s_in, alpha=-1)            # U - W S_i, in U's place
            attn = (qb @ kb.transpose(-1, -2)).tril_()      # unscaled
            torch.bmm(qb, s_in, out=ob)
            ob.baddbmm_(attn, unew, beta=scale, alpha=scale)
            sv.extend([s_in, attn])
        ctx.save_for_backward(q, k, v, beta, pmat)
        ctx.saved, ctx.blocks, ctx.scale = saved, blocks, scale
        return o, cur

    @staticmethod
    @once_differentiable
    def backward(ctx, do, ds):
        q, k, v, beta, pmat = ctx.saved_tensors
        blocks, saved, scale = ctx.blocks, ctx.saved, ctx.scale
        bh, nc, c, dk = q.shape
        dv = v.shape[-1]
        do = q.new_zeros(bh, nc, c, dv) if do is None else do.contiguous()
        rmat = q.new_empty(bh, nc, dk, dv)
        dunews = []
        for blk, (_, w, _, _, attn) in zip(blocks, saved):
            dob, qb = _block(do, blk), _block(q, blk)
            dunew = attn.transpose(-1, -2) @ dob            # dUnew from the outputs, / scale
            torch.bmm(w.transpose(-1, -2), dunew, out=_block(rmat, blk)).baddbmm_(qb.transpose(-1, -2), dob,
                                                                                   beta=-scale, alpha=scale)
            dunews.append(dunew)
        g_next_all = q.new_empty(bh, nc, dk, dv)            # G_{i+1}, rounded to the inputs' dtype
        cur = q.new_zeros(bh, dk, dv, dtype=torch.float32) if ds is None else ds.clone()
        nxt, m_t = torch.empty_like(cur), cur.new_empty(bh, dk, dk)
        eye = torch.eye(dk, dtype=cur.dtype, device=cur.device)
        for p_i, r_i, g_i in zip(reversed(pmat.unbind(1)), reversed(rmat.unbind(1)), reversed(g_next_all.unbind(1))):
            g_i.copy_(cur)
            torch.sub(eye, p_i, out=m_t)                    # M_i; M_i^T as a transposed operand (a transposing
            nxt.copy_(r_i).baddbmm_(m_t.transpose(-1, -2), cur)     # subtraction measured slower)
            cur, nxt = nxt, cur
        dq, dk_, dv_, dbeta = (torch.empty_like(t) for t in (q, k, v, beta))
        for blk, (tmat, _, unew, s_in, _), dunew in zip(blocks, saved, dunews):
            kb, qb, vb, bb, dob = (_block(t, blk) for t in (k, q, v, beta, do))
            g_next = _block(g_next_all, blk)
            dunew.baddbmm_(kb, g_next, beta=scale)
            s_t = s_in.transpose(-1, -2)
            dvt = tmat.transpose(-1, -2) @ dunew            # dV~, V~ = Vb - Kb S
            da = (dvt @ unew.transpose(-1, -2)).tril_(-1)   # -dA
            dkbn = (dvt @ s_t).baddbmm_(da, kb)             # -dKb
            dp = (dob @ unew.transpose(-1, -2)).tril_()     # / scale
            dqb, dkk, dbb = _block(dq, blk), _block(dk_, blk), _block(dbeta, blk)
            torch.bmm(dp, kb, out=dqb)
            dqb.baddbmm_(dob, s_t, beta=scale, alpha=scale)
            torch.bmm(dp.transpose(-1, -2), qb, out=dkk)
            dkk.baddbmm_(unew, g_next.transpose(-1, -2), beta=scale)
            dkk.baddbmm_(da.mul_(bb).transpose(-1, -2), kb, alpha=-1)
            dkk.addcmul_(bb, dkbn, value=-1)
            dvv = dvt * vb
            if dk == dv:
                torch.sum(dvv.addcmul_(dkbn, kb, value=-1), -1, keepdim=True, out=dbb)
            else:
                torch.sum(dvv, -1, keepdim=True, out=dbb).sub_(dkbn.mul_(kb).sum(-1, keepdim=True))
            torch.mul(dvt, bb, out=_block(dv_, blk))
        return dq, dk_, dv_, dbeta, cur, None, None


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
    :class:`_DeltaRuleChunkwiseLowPrecision`.
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
    state_dtype = torch.float32 if is_low_precision(q) else q.dtype
    s0 = (q.new_zeros(b * h, dk, dv, dtype=state_dtype) if initial_state is None
          else initial_state.reshape(b * h, dk, dv).to(state_dtype))
    if state_dtype != q.dtype:
        def heads(t):       # (B, H, N, D) -> (B*H, nc, C, D): a view of contiguous inputs
            return t.reshape(b * h, nc, c, t.shape[-1])

        o, s = _DeltaRuleChunkwiseLowPrecision.apply(heads(q), heads(k), heads(v), heads(beta.unsqueeze(-1)), s0, c,
                                                     scale)
        return o.view(b, h, nc * c, dv)[:, :, :n], s.reshape(b, h, dk, dv)

    def to_chunks(t):
        # chunk index first: the sequential loop then reads contiguous (B*H, C, D) blocks
        return t.reshape(b * h, nc, c, t.shape[-1]).transpose(0, 1).contiguous()

    o, s = _DeltaRuleChunkwise.apply(to_chunks(q * scale), to_chunks(k), to_chunks(v), to_chunks(beta.unsqueeze(-1)), s0, c)
    return o.transpose(0, 1).reshape(b, h, nc * c, dv)[:, :, :n], s.reshape(b, h, dk, dv)
