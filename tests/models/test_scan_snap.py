"""P05's Y/Z model: the forward pass by hand, zero initialisation, the two learning rates, bad tokens."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.models.scan_snap import ScanSnapModel, yz_optimizers


def test_forward_by_hand():
    model = ScanSnapModel(4)
    assert not model.Y.detach().any() and not model.Z.detach().any()
    with torch.no_grad():
        model.Z[3, 0] = math.log(2.0)       # the query 3 weighs token 0 twice as much as token 1
        model.Y.copy_(torch.eye(4))
    tokens = torch.tensor([[0, 1, 0, 3]])    # context 0, 1, 0; query 3
    torch.testing.assert_close(model.attention(tokens), torch.tensor([[0.4, 0.2, 0.4]]))
    u = torch.tensor([0.8, 0.2, 0.0, 0.0])  # attention summed per token
    torch.testing.assert_close(model(tokens), (u / u.norm())[None])


def test_two_learning_rates():
    model = ScanSnapModel(5)
    opt_y, opt_z = yz_optimizers(model, lr_z=2.0, ratio=5.0)
    assert opt_y.param_groups[0]["lr"] == 10.0 and opt_z.param_groups[0]["lr"] == 2.0
    assert opt_y.param_groups[0]["params"][0] is model.Y and opt_z.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="lr_z, ratio: expected positive numbers"):
        yz_optimizers(model, lr_z=1.0, ratio=0.0)


def test_bad_tokens():
    model = ScanSnapModel(5)
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 5\), received ids in \[0, 7\]"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match=r"tokens: expected integer ids of shape \(B, T\) with T >= 2"):
        model(torch.tensor([[1]]))
