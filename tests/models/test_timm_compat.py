"""Same weights, same outputs: attnlab's ConViT / CrossViT / TNT / SHViT against timm's.

A randomly initialised timm model (pretrained=False) is perturbed away from its
init (so that gates, BatchNorm statistics and zero-initialised branches all
matter), its state dict is loaded into attnlab's model of the same
configuration through ``attnlab.models.timm_compat`` (strict), and logits and
input gradients must agree to 1e-5 (fp32). Skipped only if timm cannot be
imported; install with
``pip install "timm==1.0.31" "torchvision==0.28.0" -c <(echo torch==2.13.0)``.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.models.timm_compat import KEY_MAPPINGS, convert_timm_state_dict, import_timm, load_timm_state_dict

try:
    timm = import_timm()
except ImportError as e:  # pragma: no cover - exercised only where timm is missing
    pytest.skip(f"timm not importable: {e}", allow_module_level=True)

from attnlab.models.convit import ConViT  # noqa: E402
from attnlab.models.crossvit import CROSSVIT_CONFIGS, CrossViT  # noqa: E402
from attnlab.models.shvit import SHVIT_CONFIGS, SHViT  # noqa: E402
from attnlab.models.tnt import TNT, TNT_CONFIGS  # noqa: E402

TOL = 1e-5
pytestmark = pytest.mark.peer


@torch.no_grad()
def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter and BatchNorm statistic away from its (often symmetric) init."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))
        elif name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))


def _compare(ours, theirs, design: str, x: torch.Tensor) -> None:
    _perturb(theirs)
    load_timm_state_dict(ours, design, theirs.state_dict())
    ours.eval()
    theirs.eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = ours(xa), theirs(xb)
    assert ya.shape == yb.shape
    assert (ya - yb).abs().max().item() < TOL * max(1.0, yb.abs().max().item())
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert (xa.grad - xb.grad).abs().max().item() < TOL * max(1.0, xb.grad.abs().max().item())


@pytest.mark.parametrize("num_heads,local", [(4, 4), (9, 2)])
def test_convit_matches_timm(num_heads, local):
    torch.manual_seed(0)
    per_head = 8
    ours = ConViT(img_size=32, patch_size=4, num_classes=7, embed_dim=per_head * num_heads, depth=5,
                  num_heads=num_heads, local_up_to_layer=local)
    theirs = timm.create_model("convit_tiny", pretrained=False, img_size=32, patch_size=4, num_classes=7,
                               embed_dim=per_head, num_heads=num_heads, depth=5, local_up_to_layer=local)
    _compare(ours, theirs, "convit", torch.randn(3, 3, 32, 32))


def test_crossvit_matches_timm():
    torch.manual_seed(0)
    c = CROSSVIT_CONFIGS["tiny"]
    ours = CrossViT(img_size=32, num_classes=7, **c)
    theirs = timm.models.crossvit.CrossVit(
        img_size=32, img_scale=(1.0, 1.0), num_classes=7, patch_size=list(c["patch_size"]),
        embed_dim=list(c["embed_dim"]), depth=[list(d) for d in c["depth"]], num_heads=list(c["num_heads"]),
        mlp_ratio=list(c["mlp_ratio"]),
    )
    _compare(ours, theirs, "crossvit", torch.randn(3, 3, 32, 32))


def test_tnt_matches_timm_with_fused_qkv():
    torch.manual_seed(0)
    c = TNT_CONFIGS["tiny"]
    ours = TNT(img_size=32, num_classes=7, **c)
    theirs = timm.models.tnt.TNT(img_size=32, num_classes=7, **c)
    sd = theirs.state_dict()
    converted = convert_timm_state_dict("tnt", sd)
    # The mapping really rewrites the attention keys (and nothing else goes missing).
    assert "blocks.0.attn_in.qkv.weight" in converted and "blocks.0.attn_in.qk.weight" not in converted
    assert len(converted) == len(sd) - 2 * c["depth"]
    _compare(ours, theirs, "tnt", torch.randn(3, 3, 32, 32))


def test_shvit_matches_timm():
    torch.manual_seed(0)
    c = {k: v for k, v in SHVIT_CONFIGS["tiny"].items() if k != "stem_convs"}
    # timm's stem is the paper's four stride-2 convolutions: 128 px -> 8x8 tokens, then 4x4 and 2x2.
    ours = SHViT(num_classes=7, stem_convs=4, **c)
    theirs = timm.models.shvit.SHViT(num_classes=7, **c)
    _compare(ours, theirs, "shvit", torch.randn(3, 3, 128, 128))


def test_unknown_design_is_named():
    with pytest.raises(KeyError, match="design: expected one of"):
        convert_timm_state_dict("deit", {})
    assert set(KEY_MAPPINGS) == {"convit", "crossvit", "tnt", "shvit"}
