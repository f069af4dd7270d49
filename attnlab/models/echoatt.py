"""EchoAtt students (P14: Rajabzadeh et al. 2024): groups of consecutive layers share the first layer's attention map.

In a student, each group of consecutive layers ``(l0, l1, ..., lk)`` computes softmax attention once, in
its first layer l0 (which keeps its W_Q, W_K); the other layers have no W_Q, W_K: they apply l0's
attention probabilities to their own values, with their own W_V, W_O and MLP. Everything else is the
teacher's network, and every weight the student keeps is inherited from the teacher (W_V and W_O of a
follower are the V slice of the teacher's fused ``qkv`` projection and its ``proj``).

* :func:`echoatt_student` — the student of a ``SequenceModel`` whose shared layers use a softmax-family
  mixer (any mixer whose attention op records its probabilities and that projects q, k, v with one fused
  ``qkv`` linear layer and its output with ``proj``: softmax, softmax_qknorm, sliding_window, ssa,
  complex_attention, ...), in one of two ways of sharing, with the same parameters and the same outputs:

  - ``share="map"`` (the paper's computation): the leader's attention probabilities exist as a tensor
    and the followers multiply them with their values: the followers skip W_Q, W_K, Q K^T and the
    softmax, but the map is materialised (O(N^2) memory, and the leader cannot use a fused kernel);
  - ``share="qk"``: the followers get the leader's (normed, rotated) queries and keys and recompute the
    same map inside SDPA on their own values: they skip W_Q and W_K only, never materialise the map,
    and run the fused kernel (for mixers whose attention goes through ``attnlab.ops.attention``:
    softmax, softmax_qknorm, ssa in eval, complex_attention).
* :class:`SharedAttentionLeader`, :class:`SharedAttentionFollower` — the token mixers of a group;
* :func:`check_groups` — groups as disjoint runs of consecutive layers inside the depth;
* :func:`removed_attention_flops` — the fraction of the forward's multiply-adds the followers skip.

With ``share="map"`` the leader runs its mixer with ``attnlab.record_attention(detach=False)``, so its ops
take their explicit path and the map stays differentiable; with ``share="qk"`` it runs it inside
``attnlab.ops.capture_attention_inputs``. What is shared travels from the leader to its followers through a
small object the group holds, in the order the blocks run; a follower called before its leader in the
same forward raises an error.
"""
from __future__ import annotations

import copy

import torch
from einops import rearrange
from torch import nn

from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.ops.attention import attention
from attnlab.ops.recording import AttentionInputs, capture_attention_inputs, record, record_attention
from attnlab.utils.checks import check_choice, describe, fail

__all__ = ["echoatt_student", "SharedAttentionLeader", "SharedAttentionFollower", "check_groups",
           "removed_attention_flops", "reshare", "SHARE_MODES"]

SHARE_MODES = ("map", "qk")


class _SharedMap:
    """What a group's leader shares with its followers during one forward: its (B, H, N, N) probabilities
    (``share="map"``) or its attention inputs (``share="qk"``)."""

    def __init__(self, size: int, mode: str):
        self.size, self.mode, self.item, self.readers = size, check_choice("share", mode, SHARE_MODES), None, 0

    def put(self, item) -> None:
        self.item, self.readers = item, 0

    def take(self, x: torch.Tensor):
        if self.item is None:
            fail("forward", "the group's leader to run before its followers in each forward",
                 "a follower called first")
        item = self.item
        b, n = (item.q.shape[0], item.q.shape[2]) if isinstance(item, AttentionInputs) else \
            (item.shape[0], item.shape[-1])
        if (b, n) != tuple(x.shape[:2]):
            fail("x", f"the leader's batch and length {(b, n)}", tuple(x.shape[:2]))
        self.readers += 1
        if self.readers == self.size - 1:  # the last follower: release it
            self.item = None
        return item


class SharedAttentionLeader(TokenMixer):
    """The first layer of an EchoAtt group: runs ``mixer`` (keeping its W_Q, W_K) and shares its probabilities.

    x (B, N, C) -> ``mixer``'s output; the (B, H, N, N) probabilities go to the group's followers.
    """

    def __init__(self, mixer: TokenMixer, shared: _SharedMap):
        super().__init__(mixer.dim)
        self.mixer = mixer
        self.shared = shared
        self.capabilities = Capabilities(**{**mixer.capabilities.as_dict(), "recurrent": False})

    def mix(self, x, *, grid, causal, key_padding_mask):
        if self.shared.mode == "qk":
            with capture_attention_inputs() as captured:
                out = self.mixer(x, grid=grid, causal=causal, key_padding_mask=key_padding_mask)
            if len(captured) != 1:
                fail("mixer", "a mixer whose attention runs through attnlab.ops.attention once per call (share='qk')",
                     f"{type(self.mixer).__name__} made {len(captured)} such calls")
            self.shared.put(captured[0])
            return out
        with record_attention(None, detach=False) as rec:
            out = self.mixer(x, grid=grid, causal=causal, key_padding_mask=key_padding_mask)
        maps = [m for ms in rec.maps.values() for m in ms]
        if len(maps) != 1:
            fail("mixer", "a softmax-family mixer whose attention op records one probability map per call",
                 f"{type(self.mixer).__name__} recorded {len(maps)}")
        self.shared.put(maps[0])
        record(maps[0])  # for an enclosing record_attention (analysis of the student)
        return out


class SharedAttentionFollower(TokenMixer):
    """A later layer of an EchoAtt group: its own W_V and W_O applied with the leader's probabilities; no W_Q, W_K.

    x (B, N, C) -> proj(concat_h(P_h V_h)), P the leader's (B, H, N, N) map of this forward.

    Args:
        dim: width C; num_heads: heads H (the leader's); shared: the group's map holder.
        qkv_bias, proj_bias: biases on the value and output projections.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, paper="P14")

    def __init__(self, dim: int, num_heads: int, shared: _SharedMap, qkv_bias: bool = False, proj_bias: bool = True):
        super().__init__(dim)
        self.num_heads, self.shared = num_heads, shared
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        shared = self.shared.take(x)
        v = rearrange(self.v(x), "b n (h d) -> b h n d", h=self.num_heads)
        if isinstance(shared, AttentionInputs):  # the same map, recomputed in SDPA on this layer's values
            o = attention(shared.q, shared.k, v, causal=shared.causal, key_padding_mask=shared.key_padding_mask,
                          attn_mask=shared.attn_mask, scale=shared.scale)
        else:
            record(shared)
            o = shared.to(v.dtype) @ v
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))


def check_groups(groups: object, depth: int) -> list[tuple[int, ...]]:
    """``groups`` as a list of tuples of >= 2 consecutive layer indices in [0, depth), pairwise disjoint."""
    if not isinstance(groups, (list, tuple)) or not groups:
        fail("groups", "a non-empty list of runs of consecutive layer indices, e.g. [(1, 2, 3)]", describe(groups),
             TypeError)
    out, used = [], set()
    for g in groups:
        if not isinstance(g, (list, tuple)) or len(g) < 2 or \
                any(isinstance(i, bool) or not isinstance(i, int) for i in g):
            fail("groups", "runs of at least two int layer indices", describe(g), TypeError)
        g = tuple(g)
        if any(b != a + 1 for a, b in zip(g, g[1:])):
            fail("groups", "consecutive layer indices in increasing order", g)
        if g[0] < 0 or g[-1] >= depth:
            fail("groups", f"layer indices in [0, {depth}) (the model's depth)", g)
        if used & set(g):
            fail("groups", "disjoint groups", f"{g} overlaps layers {sorted(used & set(g))}")
        used |= set(g)
        out.append(g)
    return out


def _fused_qkv(mixer: nn.Module, layer: int) -> tuple[nn.Linear, nn.Linear, int]:
    qkv, proj, heads = getattr(mixer, "qkv", None), getattr(mixer, "proj", None), getattr(mixer, "num_heads", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int)
            and qkv.out_features == 3 * mixer.dim):
        fail("teacher", f"a softmax-family mixer with a fused qkv projection (3C outputs), proj and num_heads at "
             f"layer {layer}", type(mixer).__name__, TypeError)
    return qkv, proj, heads


@torch.no_grad()
def echoatt_student(teacher: nn.Module, groups: list[tuple[int, ...]], *, share: str = "map") -> nn.Module:
    """The EchoAtt student of ``teacher`` (a ``SequenceModel``): in each group only the first layer computes
    attention, the others reuse its probabilities with their inherited W_V, W_O (see the module docstring).

    ``share``: ``"map"`` (the paper's: the probabilities are materialised and shared) or ``"qk"`` (the same map
    recomputed by the followers in SDPA from the leader's queries and keys). The teacher is not changed; the
    student is a deep copy with the followers' mixers replaced. Convert an untrained model of the teacher's
    configuration to get the same architecture trained from scratch; :func:`reshare` switches a student's mode.
    """
    blocks = getattr(teacher, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        fail("teacher", "a model with a ModuleList of blocks (attnlab.models.SequenceModel)", type(teacher).__name__,
             TypeError)
    groups = check_groups(groups, len(blocks))
    check_choice("share", share, SHARE_MODES)
    student = copy.deepcopy(teacher)
    for g in groups:
        shared = _SharedMap(len(g), share)
        leader = student.blocks[g[0]].mixer
        _fused_qkv(leader, g[0])
        student.blocks[g[0]].mixer = SharedAttentionLeader(leader, shared)
        for layer in g[1:]:
            qkv, proj, heads = _fused_qkv(teacher.blocks[layer].mixer, layer)
            if heads != leader.num_heads:
                fail("teacher", f"the leader's head count {leader.num_heads} at layer {layer}", heads)
            c = qkv.in_features
            f = SharedAttentionFollower(c, heads, shared, qkv_bias=qkv.bias is not None, proj_bias=proj.bias is not None)
            f.v.weight.copy_(qkv.weight[2 * c:])
            if qkv.bias is not None:
                f.v.bias.copy_(qkv.bias[2 * c:])
            f.proj.load_state_dict(proj.state_dict())
            student.blocks[layer].mixer = f.to(device=qkv.weight.device, dtype=qkv.weight.dtype)
    return student


def reshare(student: nn.Module, share: str) -> nn.Module:
    """A deep copy of an EchoAtt student sharing its groups' maps the other way (``"map"`` or ``"qk"``): the same
    parameters and outputs, another computation (e.g. train with one, time the other)."""
    check_choice("share", share, SHARE_MODES)
    out = copy.deepcopy(student)
    for mod in out.modules():
        if isinstance(mod, (SharedAttentionLeader, SharedAttentionFollower)):
            mod.shared.mode = share
    return out


def removed_attention_flops(*, depth: int, dim: int, n: int, followers: int, mlp_ratio: float = 4.0,
                            vocab_size: int = 0, share: str = "map") -> dict[str, float]:
    """Multiply-adds per token of a pre-norm transformer's forward and what ``followers`` shared layers skip.

    Per layer: q, k, v, o projections 4 C^2, scores Q K^T N C, weights times V N C (counted in full, as SDPA
    and the explicit path compute them), MLP 2 mlp_ratio C^2; plus the output head C V. A follower skips its
    q and k projections (2 C^2) and, with ``share="map"``, its scores Q K^T (N C; with ``"qk"`` it recomputes
    them). Returns ``{"total", "removed", "fraction"}`` (per token).
    """
    check_choice("share", share, SHARE_MODES)
    per_layer = 4 * dim * dim + 2 * n * dim + 2 * mlp_ratio * dim * dim
    total = depth * per_layer + dim * vocab_size
    removed = followers * (2 * dim * dim + (n * dim if share == "map" else 0))
    return {"total": float(total), "removed": float(removed), "fraction": removed / total}
