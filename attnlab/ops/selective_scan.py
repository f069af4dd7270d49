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
oracle). :func:`selective_scan` is the fast path, a two-level (chunked) scan:
the sequence is cut into chunks of T tokens; (1) a T-step scan from zero state
runs for all chunks at once (tensors (..., L/T, N) per step); (2) a short carry
over the L/T chunk ends gives each chunk's entering state s_c; (3) every token
adds exp(cumsum(delta A) within its chunk) . s_c, computed for all tokens at
once. T + L/T sequential steps instead of L, only products of decays in (0, 1]
(no division by decays, so no overflow for large delta A). Long sequences are
processed in segments under activation checkpointing so that autograd keeps
O(B D L) instead of O(B D L N) (the scan's states are recomputed in backward,
the same trade Mamba's kernel makes).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from attnlab._checks import check_positive_int, check_tensor, describe, fail

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


def _scan_segment(u, delta, A, Bv, Cv, h0, chunk):
    """Two-level scan of one segment; u, delta (B, G, Dg, L) with L % chunk == 0 -> (y (B, G, Dg, L), h_last).

    Internally the position inside the chunk is the leading axis, (T, B, G, Dg, nc, N), so that every
    step of the in-chunk loop works on one contiguous block (strided per-step slices are ~10x slower on CPU).
    """
    b, g, dg, l = u.shape
    nc = l // chunk

    def lead(t):  # (..., L[, N]) with L on axis 3 -> (T, ..., nc[, N])
        return t.unflatten(3, (nc, chunk)).movedim(4, 0)

    log_a = lead(delta).unsqueeze(-1) * A.unsqueeze(-2)  # (T, B, G, Dg, nc, N), contiguous
    inp = lead(delta * u).unsqueeze(-1) * (lead(Bv) if Bv.shape[3] > 1 else Bv.unsqueeze(0))
    a = torch.exp(log_a)
    # (1) scan inside every chunk from a zero state, all chunks at once
    hs = []
    h = None
    for a_t, x_t in zip(a.unbind(0), inp.unbind(0)):
        h = x_t if h is None else torch.addcmul(x_t, a_t, h)
        hs.append(h)
    h_loc = torch.stack(hs, dim=0)
    decay = torch.exp(torch.cumsum(log_a, dim=0))  # product of a within the chunk up to t, in (0, 1]
    # (2) carry the state across chunk ends (chunk axis first: contiguous steps)
    s = h0 if h0 is not None else u.new_zeros(b, g, dg, A.shape[-1])
    entering = []
    for p_c, e_c in zip(decay[-1].movedim(3, 0).contiguous().unbind(0), h_loc[-1].movedim(3, 0).contiguous().unbind(0)):
        entering.append(s)
        s = torch.addcmul(e_c, p_c, s)
    s_in = torch.stack(entering, dim=3)  # (B, G, Dg, nc, N), broadcast over T
    # (3) add the entering state's contribution to every token, then read out with C
    h_all = torch.addcmul(h_loc, decay, s_in)
    Cc = lead(Cv) if Cv.shape[3] > 1 else Cv.unsqueeze(0)
    y = (h_all * Cc).sum(-1)  # (T, B, G, Dg, nc)
    return y.movedim(0, 4).flatten(3), s


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None,
                   return_last_state=False, chunk_size=None, segment_len=2048):
    """Selective scan, chunked fast path (see the module doc); same arguments and result as the reference.

    Args beyond the reference's:
        chunk_size: tokens per chunk T (default: about sqrt(segment length), between 8 and 128).
        segment_len: with gradients enabled, sequences longer than this run in segments of this many
            tokens under activation checkpointing (memory O(B D L) instead of O(B D L N)); None disables.
    """
    uc, dc, Ac, Bv, Cv, h, dims = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    b, d, l, n, g = dims
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    if segment_len is not None:
        check_positive_int("segment_len", segment_len)
    seg = l if segment_len is None or not torch.is_grad_enabled() else min(segment_len, l)
    chunk = chunk_size or max(8, min(128, 2 ** round(math.log2(max(seg, 1)) / 2)))
    chunk = min(chunk, seg)
    seg = math.ceil(seg / chunk) * chunk
    pad = (-l) % seg
    ud, dd = uc, dc
    if pad:  # delta = 0 on padding: decay 1 and no input, the state passes through unchanged
        ud, dd = F.pad(uc, (0, pad)), F.pad(dc, (0, pad))
        if Bv.shape[3] > 1:
            Bv = F.pad(Bv, (0, 0, 0, pad))
        if Cv.shape[3] > 1:
            Cv = F.pad(Cv, (0, 0, 0, pad))
    total = l + pad
    ys = []
    use_ckpt = total > seg
    for start in range(0, total, seg):
        sl = slice(start, start + seg)
        args = (ud[..., sl], dd[..., sl], Ac, Bv[:, :, :, sl] if Bv.shape[3] > 1 else Bv,
                Cv[:, :, :, sl] if Cv.shape[3] > 1 else Cv, h)
        if use_ckpt:
            y, h = checkpoint(_scan_segment, *args, chunk, use_reentrant=False)
        else:
            y, h = _scan_segment(*args, chunk)
        ys.append(y)
    y = torch.cat(ys, dim=3)[..., :l] if len(ys) > 1 or pad else ys[0]
    out = _finish(y, uc, D, z, dims)
    return (out, h.reshape(b, d, n)) if return_last_state else out


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
