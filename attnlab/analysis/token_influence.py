"""The token-influence map of any mixer: how much output token i depends on input token j (P06's unified view).

P06 ("A Unified View of Long-Sequence Models") writes every token mixer as

    y_i = sum_j alpha(i, j) W_V x_j

and the mechanisms differ only in alpha: dense softmax, masked / sparse, kernelised, long
convolution or SSM (alpha Toeplitz in i - j). :func:`token_influence` returns the N x N map for
any registered mixer (or any module with the mixer contract) on a given input:

- ``"exact"``: alpha itself, where the mixer is linear in its values. The mixer runs under
  ``record_attention``; if it records exactly one (B, H, N, N) probability map and its output is
  rebuilt from that map and its own value and output projections (``qkv`` or ``v``, then ``proj``)
  to within 1e-4 relative, the map is exact (per head, and the head mean). Otherwise (several maps,
  reduced keys, an extra path such as a local convolution) it is not used.
- ``"jacobian"``: for every other mixer, the Frobenius norm of each C x C block of the Jacobian,
  ``||d y_i / d x_j||_F``, per example (autograd), normalised to sum 1 over j. It is an estimate of
  influence: it also counts how x_j moves alpha itself (through queries and keys), and it is zero
  exactly where y_i cannot depend on x_j (causality, windows), which is what the tests check.

``method="auto"`` takes the exact map when it exists. :func:`plot_influence` draws a map.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from attnlab.ops.recording import record_attention
from attnlab.utils.checks import check_choice, check_tensor, describe, fail

__all__ = ["InfluenceMap", "token_influence", "exact_alpha", "jacobian_influence", "plot_influence", "METHODS"]

METHODS = ("auto", "exact", "jacobian")
#: how closely alpha and the projections must rebuild the mixer's output for the map to count as exact
REBUILD_RTOL = 1e-4


@dataclass
class InfluenceMap:
    """The influence of input token j on output token i.

    Attributes:
        map: (B, N, N), row i sums to 1 over j (the head mean of alpha, or the normalised Jacobian norms).
        per_head: (B, H, N, N) alpha of each head (``"exact"`` only, else None).
        raw: (B, N, N) before normalisation (``"jacobian"``: the Frobenius norms; ``"exact"``: equals ``map``).
        method: ``"exact"`` or ``"jacobian"``.
    """

    map: torch.Tensor
    per_head: torch.Tensor | None
    raw: torch.Tensor
    method: str


def _value_projection(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The mixer's value vectors (B, N, C), from a fused ``qkv`` (q, k, v in that order) or a separate ``v``."""
    qkv, v = getattr(mixer, "qkv", None), getattr(mixer, "v", None)
    if isinstance(qkv, nn.Linear) and qkv.out_features == 3 * x.shape[-1]:
        return qkv(x)[..., 2 * x.shape[-1]:]
    if isinstance(v, nn.Linear) and v.out_features == x.shape[-1]:
        return v(x)
    return None


@torch.no_grad()
def exact_alpha(mixer: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor | None:
    """alpha (B, H, N, N) of ``mixer`` on ``x`` when the mixer is linear in its values (see the module doc), else None.

    ``kwargs`` go to the mixer (``grid``, ``causal``, ``key_padding_mask``).
    """
    with record_attention(mixer) as rec:
        y = mixer(x, **kwargs)
    maps = [m for ms in rec.maps.values() for m in ms]
    b, n = x.shape[:2]
    if len(maps) != 1 or maps[0].dim() != 4 or maps[0].shape[0] != b or tuple(maps[0].shape[2:]) != (n, n):
        return None
    alpha, values, proj = maps[0], _value_projection(mixer, x), getattr(mixer, "proj", None)
    if values is None or not isinstance(proj, nn.Module) or x.shape[-1] % alpha.shape[1]:
        return None
    heads = rearrange(values, "b n (h d) -> b h n d", h=alpha.shape[1])
    rebuilt = proj(rearrange(alpha.to(heads.dtype) @ heads, "b h n d -> b n (h d)"))
    if (rebuilt - y).abs().max() > REBUILD_RTOL * (1.0 + y.abs().max()):
        return None
    return alpha


def jacobian_influence(mixer: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    """``||d y_i / d x_j||_F`` (B, N, N): the Jacobian of the mixer, one example at a time, blocks reduced to norms.

    Uses vectorised autograd where the mixer's ops support it, else one backward pass per output entry.
    """
    mask = kwargs.pop("key_padding_mask", None)
    out = []
    for b in range(x.shape[0]):
        kw = dict(kwargs, key_padding_mask=None if mask is None else mask[b: b + 1])

        def f(xb, kw=kw):
            return mixer(xb[None], **kw)[0]

        xb = x[b].detach()
        try:
            jac = torch.autograd.functional.jacobian(f, xb, vectorize=True)
        except RuntimeError:  # an op without a batching rule: loop over the outputs
            jac = torch.autograd.functional.jacobian(f, xb)
        out.append(jac.detach().pow(2).sum(dim=(1, 3)).sqrt())  # (N, C, N, C) -> (N, N)
    return torch.stack(out)


def token_influence(mixer: nn.Module | str, x: torch.Tensor, *, grid=None, causal: bool = False,
                    key_padding_mask: torch.Tensor | None = None, method: str = "auto",
                    mixer_kwargs: dict | None = None) -> InfluenceMap:
    """The N x N influence map of ``mixer`` on ``x`` (B, N, C); see the module docstring for the two methods.

    ``mixer``: a module with the mixer contract, or a registered name (built at width C with
    ``mixer_kwargs``, seeded by the caller's RNG state). The mixer runs in eval mode (restored afterwards).
    ValueError for an unknown ``method``, or ``method="exact"`` on a mixer that is not linear in its values.
    """
    check_choice("method", method, METHODS)
    check_tensor("x", x, ndim=3, floating=True)
    if isinstance(mixer, str):
        import attnlab.mixers as mixers

        mixer = mixers.create(mixer, x.shape[-1], **(mixer_kwargs or {})).to(x.dtype)
    if not isinstance(mixer, nn.Module):
        fail("mixer", "a token mixer module or a registered mixer name", describe(mixer), TypeError)
    kwargs = {"grid": grid, "causal": causal, "key_padding_mask": key_padding_mask}
    was_training = mixer.training
    mixer.eval()
    try:
        alpha = exact_alpha(mixer, x, **kwargs) if method in ("auto", "exact") else None
        if alpha is not None:
            mean = alpha.mean(dim=1)
            return InfluenceMap(map=mean, per_head=alpha, raw=mean, method="exact")
        if method == "exact":
            fail("method", "'exact' only for a mixer linear in its values (one recorded (B, H, N, N) attention map "
                 "that rebuilds its output); use 'jacobian' or 'auto'", f"'exact' for {type(mixer).__name__}")
        raw = jacobian_influence(mixer, x, **kwargs)
    finally:
        mixer.train(was_training)
    total = raw.sum(dim=-1, keepdim=True)
    return InfluenceMap(map=raw / torch.where(total > 0, total, torch.ones_like(total)), per_head=None, raw=raw,
                        method="jacobian")


def plot_influence(imap: InfluenceMap, path, *, example: int = 0, title: str = "") -> str:
    """Draw ``imap.map[example]`` (rows: output token i, columns: input token j) and save it to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(imap.map[example].detach().float().numpy(), cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("input token j")
    ax.set_ylabel("output token i")
    ax.set_title(title or f"token influence ({imap.method})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
