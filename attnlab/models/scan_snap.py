"""P05's one-layer transformer in its reparameterised form (Scan and Snap, Tian et al. 2023, Sec. 3-4).

Tokens are one-hot; the last token of a sequence is the query m, the others are the context.
With Z (V, V) the pairwise attention logits and Y (V, V) the decoder:

    b_t   = softmax_t Z[m, x_t]                  (attention of the query to context token t)
    u     = sum_t b_t e_{x_t}                     (the attention-weighted bag of context tokens)
    u_hat = u / ||u||                              (P05's normalisation, a stand-in for LayerNorm)
    logits_n = sum_l Y[n, l] u_hat_l             (next-token logits)

No positional encoding; the query is not among the keys (the official ``Model2`` with
``attn_include_base_token=False``, ``residual=False``). Y and Z start at zero, as in P05. P05 trains
them with SGD at separate learning rates eta_Y and eta_Z (:func:`yz_optimizers`); its theorems
assume the decoder learns faster (eta_Y >> eta_Z).
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["ScanSnapModel", "yz_optimizers"]


class ScanSnapModel(nn.Module):
    """(B, T) token ids (query last) -> (B, V) next-token logits, through Z (attention) and Y (decoder). Paper P05."""

    def __init__(self, vocab_size: int):
        super().__init__()
        v = check_positive_int("vocab_size", vocab_size)
        self.Y = nn.Parameter(torch.zeros(v, v))
        self.Z = nn.Parameter(torch.zeros(v, v))

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        """b (B, T-1): the query's attention over the context positions."""
        check_tensor("tokens", tokens, ndim=2)
        if tokens.is_floating_point() or tokens.shape[1] < 2:
            fail("tokens", "integer ids of shape (B, T) with T >= 2 (context, then the query)", describe(tokens))
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.Z.shape[0]:
            fail("tokens", f"ids in [0, {self.Z.shape[0]})", f"ids in [{int(tokens.min())}, {int(tokens.max())}]")
        context, query = tokens[:, :-1], tokens[:, -1]
        return self.Z[query[:, None], context].softmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, V)."""
        b = self.attention(tokens)
        u = torch.zeros(tokens.shape[0], self.Z.shape[0], dtype=b.dtype, device=b.device)
        u = u.scatter_add(1, tokens[:, :-1], b)  # sum_t b_t e_{x_t}
        return (u / u.norm(dim=-1, keepdim=True)) @ self.Y.T


def yz_optimizers(model: ScanSnapModel, *, lr_z: float, ratio: float, momentum: float = 0.9
                  ) -> tuple[torch.optim.SGD, torch.optim.SGD]:
    """P05's training: SGD on Y at ``lr_z * ratio`` and on Z at ``lr_z`` (ratio = eta_Y / eta_Z), no weight decay."""
    if not (lr_z > 0 and ratio > 0):
        fail("lr_z, ratio", "positive numbers", f"{lr_z!r}, {ratio!r}")
    return (torch.optim.SGD([model.Y], lr=lr_z * ratio, momentum=momentum),
            torch.optim.SGD([model.Z], lr=lr_z, momentum=momentum))
