"""FOD: Focus the Discrepancy, intra- and inter-correlation learning for image anomaly detection (P16, Yao et al.
ICCV 2023), and the small convolutional feature extractor this CPU-scale version runs on.

FOD reconstructs the patch features of a frozen extractor with a transformer whose attentions are
I2Correlation layers (:class:`I2CorrelationLayer`):

* intra-correlation: self-attention over the image's patches;
* inter-correlation: cross-attention from the patches to a *reference* of normal features, the per-position
  mean of the training (normal) features, embedded by a learned linear map plus the 2-D sin-cos positions;
* each attention (:class:`CorrelationAttention`) also predicts, per head and per query patch, two widths
  sigma that define a Gaussian target correlation over the grid (:mod:`attnlab.ops.correlation_target`);
* the layer's update is ``(x + intra(x)) - (x + inter(x, ref))``: the residual cancels, so the patch must be
  rebuilt from what the attentions bring; then LayerNorm, an MLP and LayerNorm (post-norm, as the paper).

Training (:func:`fod_losses`, :func:`fod_train_step`): two losses into one Adam step (the paper's code runs
two backward passes; one backward of their sum gives the same gradients). With KL_sym
the symmetric KL divergence and H the entropy, averaged over layers, heads and patches, and rec = MSE +
(1 - cosine) of the reconstruction,

    loss1 = rec + l1 KL_sym(T_intra, A_intra.detach()) - l1 KL_sym(T_inter, A_inter.detach())
    loss2 = rec - l1 KL_sym(T_intra.detach(), A_intra) - l2 H(A_intra) + l1 KL_sym(T_inter.detach(), A_inter)
                + l2 H(A_inter)

(loss1 trains the widths, loss2 the attentions; the entropy terms are the paper's entropy constraint). The
anomaly score of a patch (:func:`fod_patch_scores`) is its reconstruction error times ``max - softmax(-KL_sym(
A_inter, T_inter))`` over the image's patches; :func:`anomaly_maps` upsamples it to the image and blurs it.

``mode="reconstruction"`` is the paper's patch-wise reconstruction baseline: the same network with plain
self-attention in a residual (``x + attn(x)``), no targets, trained by ``rec`` alone and scored by the
reconstruction error. ``mode="i2c_rec"`` keeps the I2Correlation layers but drops the correlation terms
(losses and score): an ablation that isolates them.

Unlike the paper's official code (whose ``Attention2D`` computes ``out_projection(out)`` and discards the
result), the output projection of every attention is applied. Deviations (CPU scale): the features come from
:class:`FeatureExtractor`, a small autoencoder trained on the normal images (no pretrained WideResNet-50 can be
downloaded here), one feature level instead of two, widths 64 instead of 256/512.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.layers import Mlp
from attnlab.models.registry import register_model
from attnlab.ops.correlation_target import correlation_terms, fod_sigma, gaussian_target, symmetric_kl
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["FOD", "CorrelationAttention", "I2CorrelationLayer", "FeatureExtractor", "FODOutput", "fod_losses",
           "fod_train_step", "fod_patch_scores", "anomaly_maps", "sincos_2d", "MODES", "fod_tiny"]

#: FOD and its two baselines (module docstring)
MODES = ("fod", "reconstruction", "i2c_rec")


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """(h w, dim) fixed 2-D sin-cos positions: half the channels encode the column, half the row (dim % 4 == 0)."""
    if dim % 4:
        fail("dim", "a multiple of 4 for 2-D sin-cos positions", dim)
    h, w = grid
    quarter = dim // 4
    freq = torch.exp(-math.log(1e4) * torch.arange(quarter, dtype=torch.float64) / quarter)
    ys = torch.arange(h, dtype=torch.float64).repeat_interleave(w)[:, None] * freq
    xs = torch.arange(w, dtype=torch.float64).repeat(h)[:, None] * freq
    return torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1).float()


class CorrelationAttention(nn.Module):
    """Multi-head softmax attention over a patch grid that also predicts Gaussian target correlations.

    ``forward(queries (B, L, dim), keys (B, L, dim), with_target)`` -> (output (B, L, dim) after the output
    projection, attention probabilities (B, H, L, L), targets (B, H, L, L) or None). The widths come from a
    linear map of the queries to 2 per head, through :func:`~attnlab.ops.correlation_target.fod_sigma`.
    """

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        if dim % num_heads:
            fail("num_heads", f"a divisor of dim={dim}", num_heads)
        self.num_heads, self.grid = num_heads, tuple(grid)
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.sigma = nn.Linear(dim, 2 * num_heads)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, with_target: bool = True):
        """See the class docstring."""
        h = self.num_heads
        q, k, v = (rearrange(f(t), "b l (h d) -> b h l d", h=h) for f, t in ((self.q, queries), (self.k, keys),
                                                                              (self.v, keys)))
        probs = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
        out = self.out(rearrange(probs @ v, "b h l d -> b l (h d)"))
        target = None
        if with_target:
            sigma = fod_sigma(rearrange(self.sigma(queries), "b l (h two) -> b h l two", two=2))
            target = gaussian_target(sigma, self.grid)
        return out, probs, target


class I2CorrelationLayer(nn.Module):
    """One FOD encoder layer (module docstring): ``forward(x (B, L, dim), ref (B, L, dim) or None)`` ->
    (x', [(intra probs, intra target)] or [], [(inter probs, inter target)] or [])."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], mode: str = "fod", mlp_ratio: float = 4.0):
        super().__init__()
        self.mode = check_choice("mode", mode, MODES)
        self.intra = CorrelationAttention(dim, num_heads, grid)
        self.inter = CorrelationAttention(dim, num_heads, grid) if mode != "reconstruction" else None
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None):
        """See the class docstring."""
        targets = self.mode == "fod"
        intra, p_intra, t_intra = self.intra(x, x, with_target=targets)
        if self.inter is None:
            new = x + intra
            corr_intra, corr_inter = [], []
        else:
            inter, p_inter, t_inter = self.inter(x, ref, with_target=targets)
            new = (x + intra) - (x + inter)
            corr_intra, corr_inter = ([(p_intra, t_intra)], [(p_inter, t_inter)]) if targets else ([], [])
        x = self.norm1(new)
        return self.norm2(x + self.mlp(x)), corr_intra, corr_inter


class FODOutput:
    """What :class:`FOD` returns: ``recon`` (B, L, in_dim) and, per layer, (probs, target) of the intra- and the
    inter-correlation attentions (empty lists in the baselines)."""

    def __init__(self, recon: torch.Tensor, intra: list, inter: list):
        self.recon, self.intra, self.inter = recon, intra, inter


class FOD(nn.Module):
    """FOD's reconstruction network over the (h, w) grid of ``in_dim``-channel patch features (module docstring).

    ``forward(features (B, L, in_dim))`` -> :class:`FODOutput`. Call :meth:`set_reference` with the normal
    training features (or their per-position mean) before training (modes other than "reconstruction").

    Args:
        in_dim: channels of the extractor's features; grid: (h, w), L = h w.
        dim, num_heads, depth: the transformer (paper: 256/512, 8 heads, 3 layers).
        mode: ``"fod"``, ``"reconstruction"`` (the paper's baseline) or ``"i2c_rec"`` (module docstring).
    """

    def __init__(self, *, in_dim: int, grid: tuple[int, int], dim: int = 64, num_heads: int = 4, depth: int = 3,
                 mode: str = "fod"):
        super().__init__()
        check_positive_int("in_dim", in_dim)
        self.grid = tuple(check_positive_int("grid", g) for g in grid)
        self.mode = check_choice("mode", mode, MODES)
        n = self.grid[0] * self.grid[1]
        self.embed = nn.Linear(in_dim, dim)
        self.register_buffer("pos", sincos_2d(self.grid, dim)[None], persistent=False)
        self.ref_embed = nn.Linear(in_dim, dim) if mode != "reconstruction" else None
        self.register_buffer("reference", torch.zeros(n, in_dim))
        self.layers = nn.ModuleList(I2CorrelationLayer(dim, num_heads, self.grid, mode)
                                    for _ in range(check_positive_int("depth", depth)))
        self.norm = nn.LayerNorm(dim)
        self.project = nn.Linear(dim, in_dim)

    @torch.no_grad()
    def set_reference(self, features: torch.Tensor) -> None:
        """The reference: the per-position mean of normal features (B, L, in_dim) (or an (L, in_dim) mean)."""
        ref = features.mean(0) if features.dim() == 3 else features
        if tuple(ref.shape) != tuple(self.reference.shape):
            fail("features", f"(B, L, in_dim) or (L, in_dim) with (L, in_dim) = {tuple(self.reference.shape)}",
                 describe(features))
        self.reference.copy_(ref)

    def forward(self, features: torch.Tensor) -> FODOutput:
        """Features (B, L, in_dim) -> their reconstruction and the correlations (see :class:`FODOutput`)."""
        if not isinstance(features, torch.Tensor) or features.dim() != 3 \
                or tuple(features.shape[1:]) != tuple(self.reference.shape):
            fail("features", f"(B, L, in_dim) = (B, {self.reference.shape[0]}, {self.reference.shape[1]})",
                 describe(features))
        x = self.embed(features) + self.pos
        ref = None
        if self.ref_embed is not None:
            ref = (self.ref_embed(self.reference) + self.pos).expand(features.shape[0], -1, -1)
        intra, inter = [], []
        for layer in self.layers:
            x, ci, ce = layer(x, ref)
            intra += ci
            inter += ce
        return FODOutput(self.project(self.norm(x)), intra, inter)


def _rec_per_patch(recon: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return (recon - features).pow(2).mean(-1) + 1 - F.cosine_similarity(recon, features, dim=-1)


def fod_losses(out: FODOutput, features: torch.Tensor, lambda1: float = 0.5, lambda2: float = 0.5
               ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """FOD's two losses (module docstring) and their parts as floats; the baselines: ``(rec, 0, parts)``."""
    rec = F.mse_loss(out.recon, features) + (1 - F.cosine_similarity(out.recon, features, dim=-1)).mean()
    if not out.intra:
        return rec, rec.new_zeros(()), {"rec": float(rec.detach())}

    def terms(pairs):  # (KL trained into the widths, KL trained into the attention, entropy), layer means
        per_layer = [[x.mean() for x in correlation_terms(p, t)] for p, t in pairs]
        return [torch.stack(col).mean() for col in zip(*per_layer)]

    s_intra, a_intra, h_intra = terms(out.intra)
    s_inter, a_inter, h_inter = terms(out.inter)
    loss1 = rec + lambda1 * s_intra - lambda1 * s_inter
    loss2 = rec - lambda1 * a_intra - lambda2 * h_intra + lambda1 * a_inter + lambda2 * h_inter
    parts = {k: float(v.detach()) for k, v in (("rec", rec), ("kl_intra", a_intra), ("kl_inter", a_inter),
                                               ("entropy_intra", h_intra), ("entropy_inter", h_inter))}
    return loss1, loss2, parts


def fod_train_step(model: FOD, features: torch.Tensor, optimizer: torch.optim.Optimizer, lambda1: float = 0.5,
                   lambda2: float = 0.5, two_pass: bool = False) -> dict:
    """One training step of FOD's two losses into one optimizer step; returns the loss parts.

    ``two_pass=True`` is the paper's code literally: ``loss1.backward(retain_graph=True)``, then
    ``loss2.backward()`` into the same gradients. The default backpropagates ``loss1 + loss2`` once: the same
    gradients (the detaches inside the losses route each term, and gradients add; tested), half the backward
    work. The baselines backpropagate ``rec``.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss1, loss2, parts = fod_losses(model(features), features, lambda1, lambda2)
    if model.mode == "fod" and two_pass:
        loss1.backward(retain_graph=True)
        loss2.backward()
    else:
        (loss1 + loss2).backward()
    optimizer.step()
    return parts


@torch.no_grad()
def fod_patch_scores(model: FOD, features: torch.Tensor) -> torch.Tensor:
    """Anomaly score per patch (B, L): reconstruction error (MSE over channels + 1 - cosine), times, in FOD mode,
    ``max - softmax_L(-KL_sym(A_inter, T_inter))`` (KL averaged over layers) per image."""
    model.eval()
    out = model(features)
    rec = _rec_per_patch(out.recon, features)
    if model.mode != "fod":
        return rec
    kl = torch.stack([symmetric_kl(p, t) for p, t in out.inter]).mean(0)  # (B, L)
    inter = torch.softmax(-kl, dim=-1)
    return rec * (inter.max(dim=-1, keepdim=True).values - inter)


def anomaly_maps(scores: torch.Tensor, grid: tuple[int, int], img_size: int, blur_sigma: float) -> torch.Tensor:
    """Patch scores (B, h w) -> anomaly maps (B, img_size, img_size): bilinear upsampling (corners aligned, as the
    paper), then a Gaussian blur of ``blur_sigma`` px (scipy; the paper: 4 px at 256 px)."""
    b = scores.shape[0]
    up = F.interpolate(scores.reshape(b, 1, *grid).float(), size=(img_size, img_size), mode="bilinear",
                       align_corners=True)[:, 0].numpy()
    if blur_sigma > 0:
        from scipy.ndimage import gaussian_filter  # lazy: scipy.ndimage costs ~0.3 s at `attnlab list`

        up = np.stack([gaussian_filter(m, sigma=blur_sigma) for m in up])
    return torch.from_numpy(up)


class FeatureExtractor(nn.Module):
    """A small convolutional autoencoder; its encoder gives the patch features FOD reads (module docstring).

    ``encode(images (B, 3, S, S))`` -> (B, L, channels) features of the (S/4, S/4) grid, 3x3 average-pooled
    (as the paper pools its backbone's features); ``forward`` reconstructs the images (its training
    objective, on normal images only).
    """

    def __init__(self, in_chans: int = 3, channels: int = 32):
        super().__init__()
        c = check_positive_int("channels", channels)

        def conv(a, b, stride=1):
            return nn.Sequential(nn.Conv2d(a, b, 3, stride, 1), nn.GELU())

        self.encoder = nn.Sequential(conv(in_chans, c // 2), conv(c // 2, c, 2), conv(c, c), conv(c, c, 2), conv(c, c))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(c, c, 4, 2, 1), nn.GELU(), nn.ConvTranspose2d(c, c // 2, 4, 2, 1),
                                     nn.GELU(), nn.Conv2d(c // 2, in_chans, 3, 1, 1))
        self.channels = c

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructed images (B, 3, S, S)."""
        return self.decoder(self.encoder(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, (S/4)^2, channels) pooled features (no gradient: the extractor is frozen)."""
        f = F.avg_pool2d(self.encoder(images), 3, 1, 1)
        return f.flatten(2).transpose(1, 2)


@register_model("fod_tiny", paper="P16")
def fod_tiny(**kwargs) -> FOD:
    """FOD tiny: 3 I2Correlation layers of width 64, 4 heads, over a 16x16 grid of 32-channel features (64 px)."""
    return FOD(**{"in_dim": 32, "grid": (16, 16), "dim": 64, "num_heads": 4, "depth": 3, **kwargs})
