"""Every vision design (tiny configs, 16 px) as a model: it learns a fixed batch, every parameter gets a
gradient, and a patch size that does not divide the image is refused with a clear error."""
from __future__ import annotations

import pytest
import torch

from attnlab.models.activator import Activator
from attnlab.models.biformer import BiFormer
from attnlab.models.convit import ConViT
from attnlab.models.crossvit import CrossViT
from attnlab.models.dinat import DiNAT
from attnlab.models.fit import FITImageClassifier
from attnlab.models.hyena_vit import HyenaViT
from attnlab.models.path_ensemble import PathEnsembleViT
from attnlab.models.s2aformer import S2AFormer
from attnlab.models.shvit import SHViT
from attnlab.models.spectformer import SpectFormer
from attnlab.models.tnt import TNT


DESIGNS = {
    "spectformer": lambda **k: SpectFormer(embed_dim=32, depth=2, num_spectral=1, num_heads=2, **k),
    "activator": lambda **k: Activator(embed_dim=32, depth=2, **k),
    "convit": lambda **k: ConViT(embed_dim=32, depth=3, num_heads=4, local_up_to_layer=2, **k),
    "crossvit": lambda **k: CrossViT(embed_dim=(16, 32), depth=((1, 1, 0),), num_heads=(2, 2), **k),
    "tnt": lambda **k: TNT(embed_dim=32, inner_dim=8, depth=2, num_heads_inner=2, num_heads_outer=2, **k),
    "shvit": lambda **k: SHViT(embed_dim=(16, 24, 32), partial_dim=(4, 8, 8), depth=(1, 1, 1), **k),
    "path_ensemble": lambda **k: PathEnsembleViT(dim=32, depth=2, num_heads=2, **k),
    "biformer": lambda **k: BiFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), n_win=(2, 1), topk=(2, -1),
                                     **k),
    "dinat": lambda **k: DiNAT(embed_dim=(16, 32), depth=(2, 1), num_heads=(1, 2), dilations=((1, 2), (1,)), **k),
    "s2aformer": lambda **k: S2AFormer(embed_dim=(16, 32), depth=(1, 1), num_heads=(1, 2), sr_ratio=(2, 1), **k),
    "hyena_vit": lambda **k: HyenaViT(dim=32, depth=2, num_heads=2, hyena_kwargs={"filter_width": 16}, **k),
    "hyena_hybrid": lambda **k: HyenaViT(dim=32, depth=2, num_hyena=1, num_heads=2, hyena_kwargs={"filter_width": 16},
                                         **k),
    "fit": lambda **k: FITImageClassifier(dim=32, num_heads=2, latent_dim=32, latents_per_group=2, **k),
}


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_design_learns_a_fixed_batch(name):
    """Any img_size / num_classes; 25 Adam steps on one batch must cut the loss by more than half."""
    torch.manual_seed(0)
    model = DESIGNS[name](img_size=16, num_classes=5)
    x = torch.randn(16, 3, 16, 16)
    y = torch.arange(16) % 5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x).shape == (16, 5)
    assert loss.item() < 0.5 * first, (name, first, loss.item())


@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = DESIGNS[name](img_size=16, num_classes=3).train()
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("name", ["spectformer", "activator", "convit", "crossvit", "tnt"])
def test_patch_size_must_divide_image(name):
    with pytest.raises(ValueError, match="patch_size: expected a divisor of img_size=30"):
        DESIGNS[name](img_size=30, num_classes=3)
