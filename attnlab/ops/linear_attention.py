"""Linear attention (Katharopoulos et al. 2020; the baseline of P12): chunkwise op and references.

Layout (B, H, N, D). With a feature map phi applied to queries and keys,

    causal:      o_i = phi(q_i)^T S_i / (phi(q_i)^T z_i),   S_i = sum_{j<=i} phi(k_j) v_j^T,  z_i = sum_{j<=i} phi(k_j)
    non-causal:  the same with sums over all j.

``normalize=False`` drops the denominator (the form used by DeltaNet's baseline
and fla's ``linear_attn`` without normalisation) and scales queries by
``scale`` (default D^-1/2). With ``normalize=True`` the scale cancels except
against ``eps``, so it is not applied.

Three implementations, equal up to rounding:

* :func:`linear_attention` — chunkwise: within a chunk of C tokens the masked
  (C x C) product, across chunks the exclusive prefix sum of per-chunk states.
  Time O(N C D + N D^2), memory O(N D + N D^2 / C).
* :func:`linear_attention_recurrent` — token by token (unbind/stack), the
  recurrent reference; also the decoding path through :func:`linear_attention_step`.
* :func:`linear_attention_quadratic` — the masked O(N^2) form, a second reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_choice, check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import lower_precision_op, upcast
from attnlab.ops.attention import check_self_qkv

__all__ = [
    "FEATURE_MAPS",
    "feature_map",
    "linear_attention",
    "linear_attention_recurrent",
    "linear_attention_quadratic",
    "linear_attention_step",
]

FEATURE_MAPS = ("elu+1", "identity", "relu")


def feature_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Apply the positive feature map ``kind`` elementwise: ``elu+1`` (Katharopoulos), ``relu`` or ``identity``."""
    check_choice("feature_map", kind, FEATURE_MAPS)
    if kind == "elu+1":
        return F.elu(x) + 1.0
    if kind == "relu":
        return F.relu(x)
    return x


def _prepare(q, k, v, fmap, normalize, scale, key_mask):
    """Feature-mapped q, k and the value tensor (with a ones column for the denominator when normalising)."""
    check_choice("feature_map", fmap, FEATURE_MAPS)
    q, k = feature_map(q, fmap), feature_map(k, fmap)
    if key_mask is not None:
        key_mask = check_tensor("key_mask", key_mask, ndim=2, dtype=torch.bool)
        if tuple(key_mask.shape) != (q.shape[0], q.shape[2]):
            fail("key_mask", f"shape (B, N) = {(q.shape[0], q.shape[2])}", describe(key_mask))
        # a padded key contributes neither to the numerator nor to the normaliser
        k = k * key_mask[:, None, :, None].to(k.dtype)
    if normalize:
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    else:
        q = q * (q.shape[-1] ** -0.5 if scale is None else scale)
    return q, k, v


def _finish(o, normalize, eps):
    """Divide by the normaliser (the last column), in fp32 for bf16 inputs."""
    if not normalize:
        return o
    o32 = upcast(o)
    return (o32[..., :-1] / (o32[..., -1:] + eps)).to(o.dtype)


@lower_precision_op
def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    feature_map: str = "elu+1",
    normalize: bool = True,
    scale: float | None = None,
    eps: float = 1e-6,
    chunk_size: int = 64,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear attention, chunkwise. q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv).

    ``key_mask`` (B, N) bool, True = real key: padded keys are ignored; a causal query with no real
    key at or before it gets zeros (and passes no gradient on). N need not be a multiple of
    ``chunk_size`` (padded inside with zero keys). bf16 inputs: products in bf16, the chunk-state
    prefix sums and the normalisation in fp32, output bf16.
    """
    check_self_qkv(q, k, v)
    check_positive_int("chunk_size", chunk_size)
    fmap = feature_map
    q, k, v = _prepare(q, k, v, fmap, normalize, scale, key_mask)
    if not causal:
        state = torch.einsum("bhnd,bhne->bhde", k, v)
        return _finish(torch.einsum("bhnd,bhde->bhne", q, state), normalize, eps)
    b, h, n, d = q.shape
    c = min(chunk_size, n)
    pad = (-n) % c
    if pad:
        # zero keys/values after the end change no state; their outputs are cut off
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    nc = (n + pad) // c
    qc, kc, vc = (t.reshape(b, h, nc, c, t.shape[-1]) for t in (q, k, v))
    chunk_states = torch.einsum("bhncd,bhnce->bhnde", kc[:, :, :-1], vc[:, :, :-1])
    # Exclusive prefix over chunks (the state entering chunk i) as a shifted cumsum, accumulated in
    # fp32. Not cumsum - chunk_states: a query with no real key before it (leading padding) has a
    # zero normaliser, so its rows get an upstream gradient ~1/eps, and the subtraction's backward
    # cancels those huge terms against each other and leaves rounding noise in every real token's
    # gradient (10-35 % errors in fp32).
    prev = F.pad(torch.cumsum(upcast(chunk_states), dim=2), (0, 0, 0, 0, 1, 0)).to(q.dtype)
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    scores = torch.einsum("bhncd,bhnmd->bhncm", qc, kc).masked_fill(~mask, 0.0)
    o = torch.einsum("bhncm,bhnme->bhnce", scores, vc) + torch.einsum("bhncd,bhnde->bhnce", qc, prev)
    o = o.reshape(b, h, nc * c, -1)[:, :, :n]
    return _finish(o, normalize, eps)


@lower_precision_op
def linear_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    feature_map: str = "elu+1",
    normalize: bool = True,
    scale: float | None = None,
    eps: float = 1e-6,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference: the causal token-by-token recurrence S_t = S_{t-1} + phi(k_t) v_t^T (unbind/stack).

    Non-causal is the sum over all tokens followed by one read-out per query.
    Same arguments and result as :func:`linear_attention`.
    """
    check_self_qkv(q, k, v)
    q, k, v = _prepare(q, k, v, feature_map, normalize, scale, key_mask)
    b, h, n, d = q.shape
    state = q.new_zeros(b, h, d, v.shape[-1])
    outs, states = [], []
    for q_t, k_t, v_t in zip(q.unbind(2), k.unbind(2), v.unbind(2)):
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        outs.append(torch.einsum("bhd,bhde->bhe", q_t, state))
    if not causal:
        outs = [torch.einsum("bhd,bhde->bhe", q_t, state) for q_t in q.unbind(2)]
    return _finish(torch.stack(outs, dim=2), normalize, eps)


@lower_precision_op
def linear_attention_quadratic(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    feature_map: str = "elu+1",
    normalize: bool = True,
    scale: float | None = None,
    eps: float = 1e-6,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference: the O(N^2) form (phi(Q) phi(K)^T, causally masked) V. Same result as :func:`linear_attention`."""
    check_self_qkv(q, k, v)
    q, k, v = _prepare(q, k, v, feature_map, normalize, scale, key_mask)
    a = q @ k.transpose(-1, -2)
    if causal:
        n = q.shape[2]
        a = a.masked_fill(~torch.ones(n, n, dtype=torch.bool, device=q.device).tril(), 0.0)
    return _finish(a @ v, normalize, eps)


@lower_precision_op
def linear_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: torch.Tensor,
    *,
    feature_map: str = "elu+1",
    normalize: bool = True,
    scale: float | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step. q_t, k_t (B, H, D), v_t (B, H, Dv), state (B, H, D, Dv [+1 if normalize]).

    Returns (o_t (B, H, Dv), new state); cost O(D Dv) per token whatever t is.
    """
    q, k, v = _prepare(q_t[:, :, None], k_t[:, :, None], v_t[:, :, None], feature_map, normalize, scale, None)
    state = state + k[:, :, 0].unsqueeze(-1) * v[:, :, 0].unsqueeze(-2)
    o = torch.einsum("bhd,bhde->bhe", q[:, :, 0], state)
    return _finish(o, normalize, eps), state
