"""Selective scan (Mamba's S6, surveyed in P23): chunked fast path, sequential reference, decoding step.

Layout as in mamba-ssm's ``selective_scan_ref`` (channels first):

* ``u``, ``delta``, ``z``: (B, D, L); ``A``: (D, N) real (negative for a stable scan);
* ``B``, ``C``: (D, N) time-invariant, (B, N, L) input-dependent, or (B, G, N, L)
  input-dependent per group of D / G channels;
* ``D``, ``delta_bias``: (D,); state (B, D, N).

Semantics (zero-order hold on A, Euler on B, as in Mamba):

    delta <- softplus(delta + delta_bias)        (each part optional)
    h_t = exp(delta_t A) . h_{t-1} + delta_t B_t u_t        (h_0 = initial_state or 0)
    y_t = <C_t, h_t> + D u_t;   out = y . SiLU(z)             (D, z optional)

:func:`selective_scan_reference` runs this token by token (unbind/stack, the
oracle, differentiated by autograd). :func:`selective_scan` has two fast paths for CPUs.
When one token's (B, D, N) block is wide and all states fit in memory, the token loop
with a hand-written backward (``method="loop"``, :class:`_SelectiveScanLoopFn`): every
op works on one token's block in cache, with the channels innermost, and the states are
saved; 1.9x faster than autograd's loop at Mamba's training sizes. Otherwise chunks of T tokens,
processed one after another with the position inside the chunk as the leading
axis; per chunk, exp(delta A) and delta B u are computed for all T tokens at once,
the recurrence is one fused multiply-add per token on a contiguous (B, D, N) block,
and the read-out with C is one vectorised reduction. Its backward (a custom
autograd Function) recomputes each chunk's states from the state entering it
(saved per chunk), runs the adjoint recurrence g_{t-1} += exp(delta_t A) g_t in
the same fused form, and forms all parameter gradients per chunk at once. Memory:
O(B D L + B D N L / T) instead of the reference's O(B D N L); the chunk is sized
so that its (T, B, D, N) blocks stay cache-sized (about 2 MB). This is the
recomputation trade of Mamba's kernel, in PyTorch. A parallel-in-time form over
the whole sequence (log-space cumulative sums, or a Hillis-Steele scan) was
measured slower on CPU: it streams several (B, D, L, N) tensors through memory,
whereas the per-token blocks stay in cache (see docs/notes/ssm_hyena.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import fp32_op

__all__ = ["selective_scan", "selective_scan_reference", "selective_scan_step"]


def _canon_bc(x, name, b, d, n, l):
    """B or C to a view broadcastable against (B, G, Dg, L, N); returns (view, groups)."""
    x = check_tensor(name, x, floating=True)
    if x.dim() == 2:
        if tuple(x.shape) != (d, n):
            fail(name, f"shape (D, N) = {(d, n)} (time-invariant)", describe(x))
        return x, 0
    if x.dim() == 3:
        if tuple(x.shape) != (b, n, l):
            fail(name, f"shape (B, N, L) = {(b, n, l)} (input-dependent)", describe(x))
        return x.transpose(1, 2).reshape(b, 1, 1, l, n), 1
    if x.dim() == 4:
        g = x.shape[1]
        if x.shape[0] != b or x.shape[2:] != (n, l) or g < 1 or d % g:
            fail(name, f"shape (B, G, N, L) = ({b}, G, {n}, {l}) with G dividing D={d}", describe(x))
        return x.transpose(2, 3).reshape(b, g, 1, l, n), g
    fail(name, "a tensor (D, N), (B, N, L) or (B, G, N, L)", describe(x))
    raise AssertionError


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    """Validate, apply delta_bias/softplus, and reshape everything to (B, G, Dg, L[, N])."""
    u = check_tensor("u", u, ndim=3, floating=True)
    b, d, l = u.shape
    delta = check_tensor("delta", delta, ndim=3, floating=True)
    if delta.shape != u.shape:
        fail("delta", f"shape (B, D, L) = {tuple(u.shape)} (as u)", describe(delta))
    A = check_tensor("A", A, ndim=2, floating=True)
    if A.shape[0] != d:
        fail("A", f"shape (D, N) with D={d}", describe(A))
    n = A.shape[1]
    Bv, gb = _canon_bc(B, "B", b, d, n, l)
    Cv, gc = _canon_bc(C, "C", b, d, n, l)
    g = max(gb, gc, 1)
    if gb > 1 and gc > 1 and gb != gc:
        fail("C", f"the same number of groups as B ({gb})", gc)
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C)):
        if t.dtype != u.dtype:
            fail(name, f"dtype {u.dtype} (as u)", describe(t), TypeError)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            check_tensor(name, t, ndim=1, floating=True)
            if t.shape[0] != d:
                fail(name, f"shape (D,) = ({d},)", describe(t))
    if z is not None:
        check_tensor("z", z, ndim=3, floating=True)
        if z.shape != u.shape:
            fail("z", f"shape (B, D, L) = {tuple(u.shape)} (as u)", describe(z))
    if initial_state is not None:
        check_tensor("initial_state", initial_state, ndim=3, floating=True)
        if tuple(initial_state.shape) != (b, d, n):
            fail("initial_state", f"shape (B, D, N) = {(b, d, n)}", describe(initial_state))
    if delta_bias is not None:
        delta = delta + delta_bias.view(1, d, 1)
    if delta_softplus:
        delta = F.softplus(delta)
    dg = d // g

    def split(t):  # (B, D, ...) -> (B, G, Dg, ...)
        return t.reshape(t.shape[0], g, dg, *t.shape[2:])

    if gb == 0:
        Bv = B.reshape(1, g, dg, 1, n)
    if gc == 0:
        Cv = C.reshape(1, g, dg, 1, n)
    h0 = None if initial_state is None else split(initial_state)
    return split(u), split(delta), A.reshape(g, dg, n), Bv, Cv, h0, (b, d, l, n, g)


def _finish(y, u, D, z, dims):
    """y (B, G, Dg, L) -> (B, D, L) with the D skip and the SiLU(z) gate."""
    b, d, l, n, g = dims
    y = y.reshape(b, d, l)
    if D is not None:
        y = y + u.reshape(b, d, l) * D.view(1, d, 1)
    if z is not None:
        y = y * F.silu(z)
    return y


@fp32_op
def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             initial_state=None, return_last_state=False):
    """Reference selective scan: the token-by-token loop (unbind/stack), mamba-ssm's ``selective_scan_ref`` semantics.

    Shapes in the module doc. Returns out (B, D, L), and the final state (B, D, N)
    when ``return_last_state``.
    """
    uc, dc, Ac, Bv, Cv, h, dims = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    b, d, l, n, g = dims
    if h is None:
        h = uc.new_zeros(b, g, d // g, n)
    Bs = Bv.unbind(3) if Bv.shape[3] > 1 else [Bv[:, :, :, 0]] * l
    Cs = Cv.unbind(3) if Cv.shape[3] > 1 else [Cv[:, :, :, 0]] * l
    ys = []
    for u_t, d_t, b_t, c_t in zip(uc.unbind(3), dc.unbind(3), Bs, Cs):
        h = torch.exp(d_t.unsqueeze(-1) * Ac) * h + (d_t * u_t).unsqueeze(-1) * b_t
        ys.append((h * c_t).sum(-1))
    out = _finish(torch.stack(ys, dim=3), uc, D, z, dims)
    return (out, h.reshape(b, d, n)) if return_last_state else out


def _lead(t, sl):
    """Slice positions ``sl`` of a (..., L, N) broadcast view (L on axis 3) and put them first: (T, ..., N)."""
    if t.shape[3] == 1:
        return t.movedim(3, 0)
    return t[:, :, :, sl].movedim(3, 0).contiguous()


def _chunk_inputs(u, delta, A, Bv, sl):
    """Per chunk, position first: a = exp(delta A), x = delta u B (T, B, G, Dg, N), and delta, delta*u (T, B, G, Dg)."""
    d_c = delta[..., sl].movedim(3, 0).contiguous()
    du_c = (u[..., sl] * delta[..., sl]).movedim(3, 0).contiguous()
    log_a = d_c.unsqueeze(-1) * A
    return torch.exp(log_a), du_c.unsqueeze(-1) * _lead(Bv, sl), d_c, du_c


def _scan_chunk(a, x, h, out):
    """out[t] = a[t] * out[t-1] + x[t] with out[-1] = h: one fused op per step on a contiguous block."""
    for t in range(a.shape[0]):
        h = torch.addcmul(x[t], a[t], h, out=out[t]) if h is not None else out[t].copy_(x[t])
    return h


class _SelectiveScanFn(torch.autograd.Function):
    """Chunked selective scan with a hand-written chunked backward (see :func:`selective_scan`)."""

    @staticmethod
    def forward(ctx, u, delta, A, Bv, Cv, h0, chunk):
        b, g, dg, l = u.shape
        n = A.shape[-1]
        y = u.new_empty(b, g, dg, l)
        h = h0
        starts = []
        with torch.no_grad():
            for c0 in range(0, l, chunk):
                sl = slice(c0, min(c0 + chunk, l))
                a, x, _, _ = _chunk_inputs(u, delta, A, Bv, sl)
                starts.append(h)
                hs = torch.empty_like(x)
                h = _scan_chunk(a, x, h, hs).clone()
                y[..., sl] = (hs * _lead(Cv, sl)).sum(-1).movedim(0, 3)
        ctx.chunk, ctx.has_h0 = chunk, h0 is not None
        zero = u.new_zeros(b, g, dg, n)
        ctx.save_for_backward(u, delta, A, Bv, Cv, *[zero if s is None else s for s in starts])
        return y, h

    @staticmethod
    def backward(ctx, gy, gh_last):
        u, delta, A, Bv, Cv, *starts = ctx.saved_tensors
        chunk = ctx.chunk
        l = u.shape[3]
        gu, gdelta = torch.zeros_like(u), torch.zeros_like(delta)
        gA, gB, gC = torch.zeros_like(A), torch.zeros_like(Bv), torch.zeros_like(Cv)
        carry = gh_last  # gradient w.r.t. the state leaving the current chunk
        bounds = list(range(0, l, chunk))
        for ci in reversed(range(len(bounds))):
            sl = slice(bounds[ci], min(bounds[ci] + chunk, l))
            with torch.no_grad():
                a, x, d_c, du_c = _chunk_inputs(u, delta, A, Bv, sl)
                hs = torch.empty_like(x)
                _scan_chunk(a, x, starts[ci] if ci or ctx.has_h0 else None, hs)
                c_c = _lead(Cv, sl)
                gy_c = gy[..., sl].movedim(3, 0).unsqueeze(-1)  # (T, B, G, Dg, 1)
                gh = gy_c * c_c  # direct dy_t / dh_t, then the reverse recurrence gh[t] += a[t+1] gh[t+1]
                if carry is not None:
                    gh[-1] += carry
                for t in range(gh.shape[0] - 2, -1, -1):
                    torch.addcmul(gh[t], a[t + 1], gh[t + 1], out=gh[t])
                h_prev = torch.cat([starts[ci].unsqueeze(0), hs[:-1]], dim=0)
                carry = gh[0] * a[0]
                glog_a = gh * h_prev * a
                gx = gh * _lead(Bv, sl)  # dL/d(delta u) per state, summed over N below
                gx_sum = gx.sum(-1)
                gdelta[..., sl] = ((glog_a * A).sum(-1) + gx_sum * u[..., sl].movedim(3, 0)).movedim(0, 3)
                gu[..., sl] = (gx_sum * d_c).movedim(0, 3)
                gA += (glog_a * d_c.unsqueeze(-1)).sum(0).sum(0)
                gb_full = gh * du_c.unsqueeze(-1)
                gc_full = gy_c * hs
                if Bv.shape[3] == 1:
                    gB += gb_full.sum(0, keepdim=True).movedim(0, 3).sum_to_size(gB.shape)
                else:
                    gB[:, :, :, sl] = gb_full.movedim(0, 3).sum_to_size(gB[:, :, :, sl].shape)
                if Cv.shape[3] == 1:
                    gC += gc_full.sum(0, keepdim=True).movedim(0, 3).sum_to_size(gC.shape)
                else:
                    gC[:, :, :, sl] = gc_full.movedim(0, 3).sum_to_size(gC[:, :, :, sl].shape)
        gh0 = carry if ctx.has_h0 else None
        return gu, gdelta, gA, gB, gC, gh0, None


def _bc_tokens(v, per_token: bool):
    """A B or C view from :func:`_prepare` in the loop's layout, N before Dg: (L, B, G or 1, N, 1) per token, or
    (1, G, N, Dg) time-invariant (index it with :func:`_at`)."""
    return v.movedim(3, 0).transpose(-1, -2) if per_token else v[:, :, :, 0].transpose(-1, -2)


def _at(v, t: int, per_token: bool):
    """Token ``t``'s slice of a :func:`_bc_tokens` view (the whole view when time-invariant)."""
    return v[t] if per_token else v


# Sums over N or Dg below are a product into a reused buffer and a sum: batched matmuls of one token's
# (1 x N) @ (N x Dg) blocks measured ~20x slower here (batch of B G tiny products, with per-batch copies).


class _SelectiveScanLoopFn(torch.autograd.Function):
    """The token loop with a hand-written backward (see :func:`selective_scan`, ``method="loop"``).

    Every op works on one token's (B, G, N, Dg) block, which stays in cache; the states are laid out with the Dg
    channels innermost so that each broadcast runs over a contiguous row. Forward, per token: exp(delta_t A) and
    delta_t u_t B_t into two reused buffers, one fused multiply-add into that token's slot of the saved states
    (L, B, G, N, Dg), and the read-out with C_t (a product into a reused buffer, summed over N). Backward, per
    token in reverse: g_t = dy_t C_t + a_{t+1} g_{t+1} (one fused multiply-add), a_t = exp(delta_t A) recomputed,
    and every input's gradient from g_t, g_t a_t h_{t-1} (the gradient of log a_t = delta_t A) and h_t, with the
    gradients of A (and of a
    time-invariant B or C) accumulated per batch row and summed once at the end. About 5 ops per token forward and
    14 backward; autograd's loop through :func:`selective_scan_reference` takes about 35, each with its own graph
    node. Memory: the saved states, B D N L (the reference's graph keeps several such tensors).
    """

    @staticmethod
    def forward(ctx, u, delta, A, Bv, Cv, h0, b_per_token, c_per_token):
        b, g, dg, l = u.shape
        n = A.shape[-1]
        dt = delta.movedim(3, 0).contiguous()           # (L, B, G, Dg)
        dut = (u * delta).movedim(3, 0).contiguous()
        at = A.transpose(-1, -2).contiguous()           # (G, N, Dg)
        bt, ct = _bc_tokens(Bv, b_per_token), _bc_tokens(Cv, c_per_token)
        hs = u.new_empty(l, b, g, n, dg)
        ys = u.new_empty(l, b, g, dg)
        a, x = u.new_empty(b, g, n, dg), u.new_empty(b, g, n, dg)
        h = None if h0 is None else h0.transpose(-1, -2).contiguous()
        for t in range(l):
            torch.mul(dt[t].unsqueeze(-2), at, out=a).exp_()
            torch.mul(dut[t].unsqueeze(-2), _at(bt, t, b_per_token), out=x)
            h = torch.addcmul(x, a, h, out=hs[t]) if h is not None else hs[t].copy_(x)
            torch.sum(torch.mul(h, _at(ct, t, c_per_token), out=x), -2, out=ys[t])
        ctx.has_h0, ctx.per_token = h0 is not None, (b_per_token, c_per_token)
        ctx.save_for_backward(u, delta, A, Bv, Cv, hs, *(() if h0 is None else (h0,)))
        return ys.movedim(0, 3), hs[-1].transpose(-1, -2).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, gh_last):
        u, delta, A, Bv, Cv, hs, *h0 = ctx.saved_tensors
        b_per_token, c_per_token = ctx.per_token
        l, b, g, n, dg = hs.shape
        dt = delta.movedim(3, 0).contiguous()
        ut = u.movedim(3, 0).contiguous()
        dut = ut * dt
        at = A.transpose(-1, -2).contiguous()
        bt, ct = _bc_tokens(Bv, b_per_token), _bc_tokens(Cv, c_per_token)
        gyt = torch.zeros_like(dt) if gy is None else gy.movedim(3, 0).contiguous()   # (L, B, G, Dg)
        gu, gdelta = torch.empty_like(dt), torch.empty_like(dt)
        gbt = u.new_empty(l, b, g, n) if b_per_token else None  # per token: sums over Dg
        gct = u.new_empty(l, b, g, n) if c_per_token else None
        ga_rows = torch.zeros_like(hs[0])               # per batch row; summed over B at the end
        gb_rows = None if b_per_token else torch.zeros_like(hs[0])
        gc_rows = None if c_per_token else torch.zeros_like(hs[0])
        a, gh, glog, tmp = (torch.empty_like(hs[0]) for _ in range(4))
        carry = None if gh_last is None else gh_last.transpose(-1, -2).contiguous()
        h_first = h0[0].transpose(-1, -2) if h0 else None
        for t in range(l - 1, -1, -1):
            gy_t, du_t = gyt[t].unsqueeze(-2), dut[t].unsqueeze(-2)   # (B, G, 1, Dg)
            c_t = _at(ct, t, c_per_token)
            if carry is None:
                torch.mul(gy_t, c_t, out=gh)
            else:
                torch.addcmul(carry, gy_t, c_t, out=gh)
            if c_per_token:
                torch.sum(torch.mul(hs[t], gy_t, out=tmp), -1, out=gct[t])
            else:
                gc_rows.addcmul_(hs[t], gy_t)
            s_b = torch.mul(gh, _at(bt, t, b_per_token), out=tmp).sum(-2)   # dL/d(delta_t u_t)
            if b_per_token:
                torch.sum(torch.mul(gh, du_t, out=tmp), -1, out=gbt[t])
            else:
                gb_rows.addcmul_(gh, du_t)
            torch.mul(s_b, dt[t], out=gu[t])
            torch.mul(s_b, ut[t], out=gdelta[t])
            torch.mul(dt[t].unsqueeze(-2), at, out=a).exp_()
            carry = gh.mul_(a)                          # g_t a_t = dL/dh_{t-1}; the next step adds to it in place
            h_prev = hs[t - 1] if t else h_first
            if h_prev is not None:
                torch.mul(carry, h_prev, out=glog)      # the gradient of log a_t = delta_t A
                ga_rows.addcmul_(glog, dt[t].unsqueeze(-2))
                gdelta[t] += glog.mul_(at).sum(-2)
        gA = ga_rows.sum(0).transpose(-1, -2)
        gB = (gbt.movedim(0, 2).unsqueeze(2).sum_to_size(Bv.shape) if b_per_token
              else gb_rows.sum(0).transpose(-1, -2).reshape(Bv.shape))
        gC = (gct.movedim(0, 2).unsqueeze(2).sum_to_size(Cv.shape) if c_per_token
              else gc_rows.sum(0).transpose(-1, -2).reshape(Cv.shape))
        gh0 = carry.transpose(-1, -2) if h0 else None
        return gu.movedim(0, 3), gdelta.movedim(0, 3), gA, gB, gC, gh0, None, None


def _auto_chunk(b, d, n):
    """Chunk length whose (T, B, D, N) blocks stay around 2 MB (fp32): 8..128, a power of two."""
    target = 2**19 / max(b * d * n, 1)
    return int(max(8, min(128, 2 ** round(math.log2(max(target, 1))))))


#: with ``method="auto"``, the token loop (:class:`_SelectiveScanLoopFn`) is used when one token's (B, D, N) block has
#: at least LOOP_MIN_BLOCK elements and the saved states, B D N L elements, at most LOOP_MAX_STATES (128 MiB in
#: fp32); otherwise the chunked path, whose memory is O(B D N L / T). Measured fwd+bwd, one thread (2026-12-05,
#: benchmarks/RESULTS.md): the loop beats the chunked path at blocks of 4096 (B=4, D=64, N=16, L=512: 55 vs 64 ms)
#: and above (B=64, D=128, N=16, L=64: 86 vs 236 ms; B=1, D=512, L=2048: 290 vs 351 ms); at blocks of 2048 and
#: 1024 the chunked path is 1.8x and 2.8x faster.
LOOP_MIN_BLOCK = 2**12
LOOP_MAX_STATES = 2**25


@fp32_op
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None,
                   return_last_state=False, chunk_size=None, method="auto"):
    """Selective scan, chunked fast path (see the module doc); same arguments and result as the reference.

    ``chunk_size``: tokens per chunk T (default: blocks of about 2 MB, 8 to 128 tokens). The backward
    pass recomputes each chunk's states from the state entering it, so memory is O(B D L + B D N L / T).
    ``method``: ``"chunked"``, ``"loop"`` (token by token with a hand-written backward, saving every state) or
    ``"auto"``: the loop for wide steps whose states fit (B D N >= LOOP_MIN_BLOCK and B D N L <= LOOP_MAX_STATES),
    where it measured faster on CPU, else the chunked path.
    """
    if method not in ("auto", "chunked", "loop"):
        fail("method", "'auto', 'chunked' or 'loop'", repr(method))
    loop = method == "loop" or (method == "auto" and chunk_size is None and u.dim() == 3 and A.dim() == 2
                                and u.shape[0] * u.shape[1] * A.shape[1] >= LOOP_MIN_BLOCK
                                and u.shape[0] * u.shape[1] * A.shape[1] * u.shape[2] <= LOOP_MAX_STATES)
    uc, dc, Ac, Bv, Cv, h, dims = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    b, d, l, n, g = dims
    if loop:
        y, h = _SelectiveScanLoopFn.apply(uc, dc, Ac, Bv, Cv, h, B.dim() > 2, C.dim() > 2)
        out = _finish(y, uc, D, z, dims)
        return (out, h.reshape(b, d, n)) if return_last_state else out
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    chunk = min(chunk_size or _auto_chunk(b, d, n), l)
    y, h = _SelectiveScanFn.apply(uc, dc, Ac, Bv, Cv, h, chunk)
    out = _finish(y, uc, D, z, dims)
    return (out, h.reshape(b, d, n)) if return_last_state else out


@fp32_op
def selective_scan_step(u_t, delta_t, A, B_t, C_t, state, D=None, z_t=None, delta_bias=None, delta_softplus=False):
    """One decoding step with carried state: O(D N) per token, independent of t.

    u_t, delta_t, z_t (B, D); A (D, N); B_t, C_t (B, N) or (B, G, N); state (B, D, N).
    Returns (y_t (B, D), new state (B, D, N)); equals position t of :func:`selective_scan_reference`.
    """
    u_t = check_tensor("u_t", u_t, ndim=2, floating=True)
    b, d = u_t.shape
    A = check_tensor("A", A, ndim=2, floating=True)
    n = A.shape[1]
    state = check_tensor("state", state, ndim=3, floating=True)
    if tuple(state.shape) != (b, d, n):
        fail("state", f"shape (B, D, N) = {(b, d, n)}", describe(state))

    def bc(x, name):
        x = check_tensor(name, x, floating=True)
        if x.dim() == 2 and tuple(x.shape) == (b, n):
            return x.unsqueeze(1)  # (B, 1, N): same for every channel
        if x.dim() == 3 and x.shape[0] == b and x.shape[2] == n and d % x.shape[1] == 0:
            return x.repeat_interleave(d // x.shape[1], dim=1)
        fail(name, f"shape (B, N) = {(b, n)} or (B, G, N) with G dividing D={d}", describe(x))

    Bt, Ct = bc(B_t, "B_t"), bc(C_t, "C_t")
    if delta_bias is not None:
        delta_t = delta_t + delta_bias
    if delta_softplus:
        delta_t = F.softplus(delta_t)
    state = torch.exp(delta_t.unsqueeze(-1) * A) * state + (delta_t * u_t).unsqueeze(-1) * Bt
    y = (state * Ct).sum(-1)
    if D is not None:
        y = y + u_t * D
    if z_t is not None:
        y = y * F.silu(z_t)
    return y, state
