"""No-mixing baseline: each token passes through unchanged."""
from __future__ import annotations

from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register

__all__ = ["IdentityMixer"]


@register("identity")
class IdentityMixer(TokenMixer):
    """No token mixing (P08's "no mixing" ablation): returns x (B, N, C) unchanged.

    In a pre-norm block the layer then reduces to a per-token MLP, so a model
    built from it sees no other position. It is the floor every real mixer must
    beat on tasks that need context (e.g. associative recall).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N)", paper="P08")

    def mix(self, x, *, grid, causal, key_padding_mask):
        return x
