"""P17 module importance: a 2-token, 2-dim case by hand; SequenceModel and Hugging Face models against
references built without the scoring hooks; the drop choice on hand-written scores; bad input."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.analysis.module_drop import DropPlan, drop_modules
from attnlab.analysis.redundancy import RedundancyScores, choose_drops, random_drops, redundancy_scores
from attnlab.layers import MixerBlock
from attnlab.models import SequenceModel


class _Const(nn.Module):
    """A sub-layer whose output is a fixed (N, C) tensor, whatever its input."""

    def __init__(self, value):
        super().__init__()
        self.register_buffer("value", torch.tensor(value, dtype=torch.float32))

    def forward(self, x, **_):
        return self.value.expand_as(x)


class _ToyLM(nn.Module):
    """Fixed residual stream h (N=2, C=2) through blocks with constant attention and MLP outputs."""

    def __init__(self, h, subs, head_dim=2):
        super().__init__()
        self.register_buffer("h", torch.tensor(h, dtype=torch.float32))
        self.blocks = nn.ModuleList()
        for a, m in subs:
            blk = MixerBlock(2, _Const(a))
            blk.ffn = _Const(m)
            self.blocks.append(blk)
        self.head = nn.Linear(2, head_dim)

    def forward(self, ids, key_padding_mask=None):
        h = self.h.expand(ids.shape[0], -1, -1)
        for blk in self.blocks:
            h = blk(h)
        return self.head(h)


IDS = torch.zeros(1, 2, dtype=torch.long)


def test_two_tokens_two_dims_by_hand():
    # h = [(1, 0), (0, 1)]; A = [(0, 1), (1, 1)] -> h' = [(1, 1), (1, 2)]; M = [(-1, 0), (0, -2)] -> h'' = [(0, 1), (1, 0)]
    model = _ToyLM([[1, 0], [0, 1]], [([[0, 1], [1, 1]], [[-1, 0], [0, -2]])])
    s = redundancy_scores(model, [IDS])
    assert s.tokens == 2 and s.depth == 1
    attn = 1 - (1 / math.sqrt(2) + 2 / math.sqrt(5)) / 2      # cos((1,0),(1,1)), cos((0,1),(1,2))
    mlp = 1 - (1 / math.sqrt(2) + 1 / math.sqrt(5)) / 2       # cos((1,1),(0,1)), cos((1,2),(1,0))
    block = 1 - (0 + 0) / 2                                    # cos((1,0),(0,1)), cos((0,1),(1,0))
    assert float(s.attn[0]) == pytest.approx(attn, abs=1e-7)
    assert float(s.mlp[0]) == pytest.approx(mlp, abs=1e-7)
    assert float(s.block[0]) == pytest.approx(block, abs=1e-7)


def test_consecutive_by_hand_and_padding_excluded():
    # two blocks: h0 = [(1, 0), (0, 1)] -> h1 = [(1, 1), (0, 2)] -> h2 = [(1, 2), (1, 2)]
    model = _ToyLM([[1, 0], [0, 1]], [([[0, 1], [0, 1]], [[0, 0], [0, 0]]), ([[0, 1], [1, 0]], [[0, 0], [0, 0]])])
    s = redundancy_scores(model, [IDS], consecutive=True)
    c01, c12 = (1 / math.sqrt(2) + 1) / 2, (3 / math.sqrt(10) + 2 / math.sqrt(5)) / 2
    c02 = (1 / math.sqrt(5) + 2 / math.sqrt(5)) / 2
    torch.testing.assert_close(s.consecutive[:, 0], torch.tensor([1 - c01, 1 - c12], dtype=torch.float64), atol=1e-7,
                               rtol=0)
    assert float(s.consecutive[0, 1]) == pytest.approx(1 - c02, abs=1e-7) and math.isnan(float(s.consecutive[1, 1]))
    torch.testing.assert_close(s.consecutive[:, 0], s.block)
    # the second token masked out: only the first token's cosines count
    masked = redundancy_scores(model, [{"input_ids": IDS, "attention_mask": torch.tensor([[1, 0]])}])
    assert masked.tokens == 1 and float(masked.block[0]) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-7)


@torch.no_grad()
def _reference_scores(model: SequenceModel, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Walk the blocks by hand (no hooks): importance from the residual states."""
    h = model.embed(ids) + model.pos_embed[:, : ids.shape[1]]
    out = {"attn": [], "mlp": [], "block": []}
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=-1).mean())  # noqa: E731
    for blk in model.blocks:
        h1 = h + blk.mixer(blk.norm1(h), causal=True)
        h2 = h1 + blk.ffn(blk.norm2(h1))
        out["attn"].append(1 - cos(h, h1))
        out["mlp"].append(1 - cos(h1, h2))
        out["block"].append(1 - cos(h, h2))
        h = h2
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


@pytest.mark.parametrize("mixer", ["softmax", "deltanet,sliding_window"])
def test_sequence_model_matches_a_hand_walk(mixer):
    model = SequenceModel(vocab_size=40, dim=16, depth=3, num_heads=2, mixer=mixer).eval()
    ids = torch.randint(0, 40, (3, 13))
    s = redundancy_scores(model, [ids[:2], ids[2:]])      # two batches: the mean runs over all tokens
    ref = _reference_scores(model, ids)
    for kind in ("attn", "mlp", "block"):
        torch.testing.assert_close(getattr(s, kind), ref[kind], atol=2e-6, rtol=1e-5)
    assert s.tokens == 3 * 13 and s.family == "MixerBlock" and s.block_names[2] == "blocks.2"


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral", "qwen3"])
@torch.no_grad()
def test_hf_scores_match_hidden_states(family, hf_lm):
    """Reference without the scoring hooks: HF's own hidden states, with MLP i dropped for h + A."""
    model = hf_lm(family)
    ids = torch.randint(0, 64, (2, 11))
    s = redundancy_scores(model, [ids], consecutive=True)
    hs = model(input_ids=ids, output_hidden_states=True).hidden_states  # the last one is after the final norm
    cos = lambda a, b: float(F.cosine_similarity(a, b, dim=-1).mean())  # noqa: E731
    depth = len(hs) - 1
    for i in range(depth - 1):
        assert float(s.block[i]) == pytest.approx(1 - cos(hs[i], hs[i + 1]), abs=2e-6)
        with drop_modules(model, DropPlan(mlp=(i,))):
            h_attn = model(input_ids=ids, output_hidden_states=True).hidden_states[i + 1]
        assert float(s.attn[i]) == pytest.approx(1 - cos(hs[i], h_attn), abs=2e-6)
        assert float(s.mlp[i]) == pytest.approx(1 - cos(h_attn, hs[i + 1]), abs=2e-6)
    assert float(s.consecutive[0, 1]) == pytest.approx(1 - cos(hs[0], hs[2]), abs=2e-6)
    assert s.family == family and s.depth == 3


def _scores(attn, mlp, block=None, consecutive=None) -> RedundancyScores:
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return RedundancyScores(attn=t(attn), mlp=None if mlp is None else t(mlp), block=t(block or attn),
                            consecutive=None if consecutive is None else t(consecutive), tokens=1, family="toy",
                            block_names=tuple(f"b{i}" for i in range(len(attn))))


def test_choose_drops_on_hand_written_scores():
    s = _scores([0.3, 0.1, 0.2, 0.4], [0.05, 0.5, 0.6, 0.7], block=[0.9, 0.2, 0.8, 0.1],
                consecutive=[[0.9, 0.5, 0.4, 0.3], [0.2, 0.6, 0.7, math.nan], [0.8, 0.1, math.nan, math.nan],
                             [0.1, math.nan, math.nan, math.nan]])
    assert choose_drops(s, 2, "attn") == DropPlan(attn=(1, 2))
    assert choose_drops(s, 1, "mlp") == DropPlan(mlp=(0,))
    assert choose_drops(s, 2, "block") == DropPlan(attn=(1, 3), mlp=(1, 3))
    assert choose_drops(s, 3, "joint") == DropPlan(attn=(1, 2), mlp=(0,))   # 0.05 (mlp 0), 0.1 (attn 1), 0.2 (attn 2)
    assert choose_drops(s, 2, "consecutive") == DropPlan(attn=(2, 3), mlp=(2, 3))  # column n-1 = 1: 0.1 at i = 2
    assert choose_drops(s, 0, "attn") == DropPlan()
    assert choose_drops(s, 4, "attn").attn == (0, 1, 2, 3)


def test_choose_drops_skips_dropped_and_refuses_too_many():
    s = _scores([math.nan, 0.1, 0.2], [0.3, 0.2, 0.1])
    assert choose_drops(s, 2, "attn") == DropPlan(attn=(1, 2))
    with pytest.raises(ValueError, match=r"n: expected 0 <= n <= 2 \(the attention modules that can be dropped\), "
                                         r"received 3"):
        choose_drops(s, 3, "attn")
    with pytest.raises(ValueError, match=r"n: expected 0 <= n <= 5"):
        choose_drops(s, 6, "joint")
    with pytest.raises(TypeError, match="n: expected an int"):
        choose_drops(s, 1.0, "attn")
    with pytest.raises(ValueError, match="target: expected one of"):
        choose_drops(s, 1, "heads")
    with pytest.raises(ValueError, match="scores: expected scores computed with consecutive=True"):
        choose_drops(s, 1, "consecutive")
    with pytest.raises(ValueError, match="target: expected attn, block or consecutive"):
        choose_drops(_scores([0.1, 0.2], None), 1, "mlp")


def test_random_drops_reproducible_and_sized():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = random_drops(8, 2, "attn", generator=g()), random_drops(8, 2, "attn", generator=g())
    assert a == b and len(a.attn) == 2 and not a.mlp
    j = random_drops(4, 8, "joint", generator=g())
    assert j == DropPlan(attn=(0, 1, 2, 3), mlp=(0, 1, 2, 3))
    with pytest.raises(ValueError, match="n: expected 0 <= n <= 4"):
        random_drops(4, 5, "block")


def test_refuses_non_residual_blocks_and_empty_data():
    model = _ToyLM([[1, 0], [0, 1]], [([[0, 1], [1, 1]], [[-1, 0], [0, -2]])])
    handle = model.blocks[0].register_forward_hook(lambda _m, _a, out: out * 1.5)  # output != h + A + M
    with pytest.raises(ValueError, match=r"model: expected sequential pre-norm residual blocks .* differs from that "
                                         r"sum by 3\.33e-01"):
        redundancy_scores(model, [IDS])
    handle.remove()
    with pytest.raises(ValueError, match="batches: expected at least one batch with a real token"):
        redundancy_scores(model, [])
    with pytest.raises(TypeError, match=r"batch: expected token ids of shape \(B, N\)"):
        redundancy_scores(model, [torch.zeros(1, 2, 2)])
