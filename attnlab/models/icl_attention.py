"""The single-layer multi-head attention of P24 for in-context linear regression."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, describe, fail
from attnlab.ops.attention import attention

__all__ = ["ICLAttention"]


class ICLAttention(nn.Module):
    """One multi-head attention layer reading a query token against L context tokens (P24's model).

    Input z (B, L + 1, d + 1): context tokens (x_i, y_i) then the query (x_q, 0).
    Each head h has full-width projections W_Q^h, W_K^h, W_V^h in R^{(d+1) x (d+1)}
    and a readout W_O^h in R^{(d+1) x 1}; the query is NOT among the keys:

        yhat = sum_h  W_O^h^T  sum_i  a_h(i) W_V^h^T z_i,   a_h = softmax_i(z_q^T W_Q^h W_K^h^T z_i / sqrt(d+1))

    (``kind="linear"``: a_h(i) = z_q^T W_Q^h W_K^h^T z_i / (sqrt(d+1) n), the linear-attention
    counterpart P24 compares with; n = ``length_norm`` when given — a fixed constant, the
    training context length, as in a linear transformer without a normaliser — else the
    actual context length L). Output (B, L + 1, 1): the prediction sits at the last
    position (the other positions are 0), as ``attnlab.tasks`` "icl_regression" scores it.
    ``kq()`` returns the H products W_Q^h W_K^h^T (H, d+1, d+1) and ``ov()`` the H vectors
    W_V^h W_O^h (H, d+1), whose emergent structure P24 describes.
    """

    def __init__(self, dim: int, num_heads: int = 4, kind: str = "softmax", bias: bool = False,
                 length_norm: int | None = None):
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.kind = check_choice("kind", kind, ("softmax", "linear"))
        self.length_norm = None if length_norm is None else check_positive_int("length_norm", length_norm)
        e = dim + 1
        self.q_proj = nn.Linear(e, e * num_heads, bias=bias)
        self.k_proj = nn.Linear(e, e * num_heads, bias=bias)
        self.v_proj = nn.Linear(e, e * num_heads, bias=bias)
        self.o_proj = nn.Linear(e * num_heads, 1, bias=bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, L + 1, d + 1) -> (B, L + 1, 1), the prediction for the query at the last position."""
        if not isinstance(z, torch.Tensor) or z.dim() != 3 or z.shape[-1] != self.dim + 1 or z.shape[1] < 2:
            fail("z", f"a tensor (B, L + 1, {self.dim + 1}) with L >= 1", describe(z))
        ctx, query = z[:, :-1], z[:, -1:]
        split = "b n (h e) -> b h n e"
        q = rearrange(self.q_proj(query), split, h=self.num_heads)
        k = rearrange(self.k_proj(ctx), split, h=self.num_heads)
        v = rearrange(self.v_proj(ctx), split, h=self.num_heads)
        if self.kind == "softmax":
            o = attention(q, k, v)
        else:
            n = self.length_norm or ctx.shape[1]
            scores = q @ k.transpose(-2, -1) * (self.dim + 1) ** -0.5 / n
            o = scores @ v
        pred = self.o_proj(rearrange(o, "b h n e -> b n (h e)"))  # (B, 1, 1)
        out = torch.zeros(z.shape[0], z.shape[1], 1, dtype=pred.dtype, device=pred.device)
        return torch.cat([out[:, :-1], pred], dim=1)

    def kq(self) -> torch.Tensor:
        """Per-head KQ matrices W_Q^h W_K^h^T as (H, d+1, d+1) (row: query feature, column: key feature)."""
        e = self.dim + 1
        wq = self.q_proj.weight.detach().view(self.num_heads, e, e)  # (h, out, in)
        wk = self.k_proj.weight.detach().view(self.num_heads, e, e)
        return wq.transpose(1, 2) @ wk

    def ov(self) -> torch.Tensor:
        """Per-head OV vectors W_V^h W_O^h as (H, d+1) (entry j: weight of value feature j in the output)."""
        e = self.dim + 1
        wv = self.v_proj.weight.detach().view(self.num_heads, e, e)  # (h, out, in)
        wo = self.o_proj.weight.detach().view(1, self.num_heads, e)[0]  # (h, e)
        return torch.einsum("hoi,ho->hi", wv, wo)
