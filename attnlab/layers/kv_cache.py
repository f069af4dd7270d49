"""The key-value cache of the softmax-family mixers' decoding step (``init_state`` / ``step``).

A cache is a dict ``{"k": (B, H, T', Dk), "v": (B, H, T', Dv), "pos": T}``: the keys (already
rotated, for RoPE / CMHA) and values of the last T' <= T tokens decoded so far, and T, the number
of tokens decoded, which is the position of the next token. :func:`attend_with_cache` appends the
new token's key and value and lets its query attend to the cached entries (every cached token is
in the past, so no causal mask is needed), which is exactly what the causal full forward computes
for that position. With ``window=w`` only the last w tokens (the new one included) are attended
to and kept, as in sliding-window attention. Appending copies the cache (O(T) per step): simple
and exact; decoding speed is not what these mixers are for.
"""
from __future__ import annotations

import torch

from attnlab.ops.alibi import alibi_attention
from attnlab.ops.attention import attention
from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["empty_kv_cache", "cache_length", "attend_with_cache", "check_token"]


def empty_kv_cache(batch_size: int, heads: int, k_dim: int, v_dim: int | None = None, *, device=None,
                   dtype=None) -> dict:
    """An empty cache for ``batch_size`` sequences: ``{"k": (B, H, 0, k_dim), "v": (B, H, 0, v_dim), "pos": 0}``."""
    check_positive_int("batch_size", batch_size)
    v_dim = k_dim if v_dim is None else v_dim
    return {"k": torch.zeros(batch_size, heads, 0, k_dim, device=device, dtype=dtype),
            "v": torch.zeros(batch_size, heads, 0, v_dim, device=device, dtype=dtype), "pos": 0}


def cache_length(state: object) -> int:
    """Tokens decoded so far (the position of the next token); TypeError unless ``state`` is a cache dict."""
    if not isinstance(state, dict) or not isinstance(state.get("k"), torch.Tensor) or \
            not isinstance(state.get("v"), torch.Tensor) or not isinstance(state.get("pos"), int):
        fail("state", "a key-value cache dict {'k', 'v', 'pos'} from init_state()", describe(state), TypeError)
    return state["pos"]


def check_token(x_t: object, dim: int) -> torch.Tensor:
    """A decoding step's input: one token per sequence, a float tensor (B, dim)."""
    x_t = check_tensor("x_t", x_t, ndim=2, floating=True)
    if x_t.shape[1] != dim:
        fail("x_t", f"one token per sequence, shape (B, {dim})", describe(x_t))
    return x_t


def attend_with_cache(q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, state: dict, *,
                      scale: float | None = None, window: int | None = None,
                      alibi_slopes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """One decoding step: q_t, k_t (B, H, Dk), v_t (B, H, Dv) of the new token -> ((B, H, Dv), new cache).

    The new key and value join the cache; the query attends to every cached entry (the last ``window``
    only, when given) with logit scale ``scale`` (default Dk^-1/2). With ``alibi_slopes`` (H,) the logits get
    ALiBi's bias -m_h (T - j) for the query's position T (the cache length) and each cached key's position j.
    """
    pos = cache_length(state)
    k_all = torch.cat([state["k"], k_t[:, :, None]], dim=2)
    v_all = torch.cat([state["v"], v_t[:, :, None]], dim=2)
    if k_all.shape[:2] != q_t.shape[:2]:
        fail("state", f"a cache of (B, H) = {tuple(q_t.shape[:2])}", describe(state["k"]))
    if window is not None:
        k_all, v_all = k_all[:, :, -window:], v_all[:, :, -window:]
    if alibi_slopes is None:
        out = attention(q_t[:, :, None], k_all, v_all, scale=scale)
    else:
        out = alibi_attention(q_t[:, :, None], k_all, v_all, alibi_slopes, scale=scale,
                              q_positions=torch.tensor([pos], device=q_t.device),
                              k_positions=torch.arange(pos + 1 - k_all.shape[2], pos + 1, device=q_t.device))
    return out[:, :, 0], {"k": k_all, "v": v_all, "pos": pos + 1}
