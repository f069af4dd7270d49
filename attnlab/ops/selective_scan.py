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
oracle). :func:`selective_scan` is the fast path for CPUs: chunks of T tokens,
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


def _auto_chunk(b, d, n):
    """Chunk length whose (T, B, D, N) blocks stay around 2 MB (fp32): 8..128, a power of two."""
    target = 2**19 / max(b * d * n, 1)
    return int(max(8, min(128, 2 ** round(math.log2(max(target, 1))))))


#: with ``method="auto"``, the token loop is used when one step's (B, D, N) block has at least this many
#: elements and L is at most LOOP_MAX_LEN: per-op overhead is then amortised and the loop makes fewer passes
#: (measured at B=32, D=128, N=16, L=128: loop 101 ms vs chunked 135 ms fwd+bwd; at B=1, D=512, L>=2048 the
#: chunked path is 3x faster than the loop)
LOOP_MIN_BLOCK = 2**15
LOOP_MAX_LEN = 1024


@fp32_op
def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None,
                   return_last_state=False, chunk_size=None, method="auto"):
    """Selective scan, chunked fast path (see the module doc); same arguments and result as the reference.

    ``chunk_size``: tokens per chunk T (default: blocks of about 2 MB, 8 to 128 tokens). The backward
    pass recomputes each chunk's states from the state entering it, so memory is O(B D L + B D N L / T).
    ``method``: ``"chunked"``, ``"loop"`` (the reference) or ``"auto"``: the loop for short sequences with
    wide steps (B D N >= LOOP_MIN_BLOCK and L <= LOOP_MAX_LEN), where it measured faster on CPU.
    """
    if method not in ("auto", "chunked", "loop"):
        fail("method", "'auto', 'chunked' or 'loop'", repr(method))
    if method == "loop" or (method == "auto" and chunk_size is None and u.dim() == 3 and A.dim() == 2
                            and u.shape[0] * u.shape[1] * A.shape[1] >= LOOP_MIN_BLOCK and u.shape[2] <= LOOP_MAX_LEN):
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                        return_last_state)
    uc, dc, Ac, Bv, Cv, h, dims = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    b, d, l, n, g = dims
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
