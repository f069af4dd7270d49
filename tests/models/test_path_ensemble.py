"""Path-ensemble ViT (P31): the rewrite is exact, pruning and EnsembleScale act only on the classifier's sum."""
from __future__ import annotations

import pytest
import torch

from attnlab.models import ViT, create
from attnlab.models.path_ensemble import PathEnsembleViT, block_paths

CFG = dict(img_size=16, patch_size=4, num_classes=5, dim=32, depth=3, num_heads=2)


def _pair(**kw):
    torch.manual_seed(0)
    vit = ViT(**CFG).double().eval()
    pe = PathEnsembleViT(**CFG, **kw).double().eval()
    missing, unexpected = pe.load_state_dict(vit.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"path_mask", "ensemble_scale"}
    return vit, pe


def test_block_is_the_sum_of_its_three_parallel_paths():
    vit, _ = _pair()
    x = torch.randn(2, 16, 32, dtype=torch.float64)
    for blk in vit.blocks:
        a, f = block_paths(blk, x, vit.grid)
        torch.testing.assert_close(blk(x, grid=vit.grid), x + a + f, rtol=0, atol=1e-12)
        x = blk(x, grid=vit.grid)


@pytest.mark.parametrize("escale", [False, True])
def test_unpruned_ensemble_is_exactly_the_vit(escale):
    """EnsembleScale starts at 1, so with nothing pruned the classifier input is the stream x_L."""
    vit, pe = _pair(ensemble_scale=escale)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(pe(x), vit(x), rtol=0, atol=1e-10)
    paths = pe.paths(x)
    assert len(paths) == 2 * CFG["depth"] + 1 == pe.num_paths
    torch.testing.assert_close(pe.norm(torch.stack(paths).sum(0)), vit.forward_features(x), rtol=0, atol=1e-10)


def test_pruning_removes_only_the_direct_vote():
    vit, pe = _pair(ensemble_scale=False, prune=["attn0", 4])
    assert pe.pruned() == ["attn0", "ffn1"]
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    p = pe.paths(x)
    # The stream the blocks read is untouched: removing the votes equals subtracting them from x_L.
    h = torch.stack(p).sum(0) - p[1] - p[4]
    expected = vit.head(vit.norm(h).mean(dim=1))
    torch.testing.assert_close(pe(x), expected, rtol=0, atol=1e-10)
    assert (pe(x) - vit(x)).abs().max() > 1e-3
    pe.set_pruned([])
    torch.testing.assert_close(pe(x), vit(x), rtol=0, atol=1e-10)


def test_a_pruned_path_still_feeds_later_blocks_but_the_last_one_learns_nothing():
    torch.manual_seed(0)
    last = f"ffn{CFG['depth'] - 1}"
    pe = PathEnsembleViT(**CFG, ensemble_scale=False, prune=["attn0", last])
    pe(torch.randn(4, 3, 16, 16)).sum().backward()
    first_attn = pe.blocks[0].mixer.qkv.weight.grad
    assert first_attn is not None and first_attn.abs().sum() > 0  # still used by the longer paths
    last_ffn = pe.blocks[-1].ffn.fc1.weight.grad
    assert last_ffn is None or last_ffn.abs().sum() == 0  # its only consumer was the classifier


def test_ensemble_scale_is_learned_and_reweights_paths():
    torch.manual_seed(0)
    pe = PathEnsembleViT(**CFG)
    x = torch.randn(4, 3, 16, 16)
    pe(x).sum().backward()
    assert pe.ensemble_scale.grad is not None and pe.ensemble_scale.grad.abs().sum() > 0
    assert "ensemble_scale" in pe.no_weight_decay()
    before = [p.detach().clone() for p in pe.eval().paths(x)]
    with torch.no_grad():
        pe.ensemble_scale[2].mul_(0.0)
    after = pe.paths(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # the paths themselves do not change
    with torch.no_grad():
        weighted = pe(x)
        pe.ensemble_scale[2].fill_(1.0)
        pe.set_pruned(["ffn0"])
    torch.testing.assert_close(weighted, pe(x), rtol=1e-5, atol=1e-6)  # scale 0 == pruned


def test_cls_pooling_and_registered_configs():
    torch.manual_seed(0)
    pe = PathEnsembleViT(**CFG, pool="cls")
    assert pe(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    tiny = create("path_ensemble_tiny", img_size=32, in_chans=1, num_classes=10)
    assert tiny.num_paths == 13 and tiny(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_bad_prune_is_named():
    with pytest.raises(ValueError, match="prune: expected path indices in \\[0, 7\\)"):
        PathEnsembleViT(**CFG, prune=["mlp9"])
    with pytest.raises(ValueError, match="prune: expected path indices"):
        PathEnsembleViT(**CFG, prune=[7])
    with pytest.raises(ValueError, match="prune: expected at most 6 of the 7 paths"):
        PathEnsembleViT(**CFG, prune=range(7))
