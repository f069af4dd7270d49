"""P21's ConvTTrans layers: ConvTSA against convolutions + the reference frame attention, per-frame normalisation
(no frame leaks into another), the decoder's masked self-attention, bad memory."""
from __future__ import annotations

import pytest
import torch

from attnlab.models.conv_temporal_transformer import (ConvFFN, ConvTSA, ConvTTransDecoderLayer,
                                                      ConvTTransEncoderLayer, FrameNorm, per_frame)
from attnlab.ops.frame_attention import frame_attention_reference


def test_convtsa_is_conv_qkv_then_frame_attention_then_conv(assert_close):
    torch.manual_seed(0)
    m = ConvTSA(4, 2).double()
    x = torch.randn(2, 5, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(2, 3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    for memory, causal in ((None, False), (None, True), (mem, False)):
        src = x if memory is None else memory
        ref = per_frame(m.out, frame_attention_reference(per_frame(m.q, x), per_frame(m.k, src), per_frame(m.v, src),
                                                         num_heads=2, causal=causal))
        assert_close(m(x, memory, causal=causal), ref, atol=1e-12, rtol=1e-12,
                     grads_of=[x] + ([mem] if memory is not None else []))


def test_normalisation_and_ffn_act_on_each_frame_alone():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 5, 5)
    x2 = x.clone()
    x2[:, 2] = 10 * torch.randn_like(x2[:, 2])
    for m in (FrameNorm(6), ConvFFN(6)):
        y, y2 = m(x), m(x2)
        keep = [0, 1, 3]
        torch.testing.assert_close(y2[:, keep], y[:, keep], atol=0, rtol=0)


def test_decoder_frame_i_sees_decoder_frames_up_to_i_and_all_memory():
    torch.manual_seed(0)
    layer = ConvTTransDecoderLayer(4, 2)
    x, mem = torch.randn(2, 4, 4, 3, 3), torch.randn(2, 6, 4, 3, 3)
    y = layer(x, mem)
    x2 = x.clone()
    x2[:, 2:] += torch.randn_like(x2[:, 2:])
    y2 = layer(x2, mem)
    torch.testing.assert_close(y2[:, :2], y[:, :2], atol=0, rtol=0)
    assert (y2[:, 2:] - y[:, 2:]).abs().max() > 1e-2
    y3 = layer(x, mem + 1.0)  # every frame reads the whole memory
    assert ((y3 - y).abs().amax(dim=(2, 3, 4)) > 1e-3).all()
    with pytest.raises(ValueError, match="memory: expected encoder output"):
        layer(x, mem[:, :, :2])


def test_encoder_layer_mixes_frames():
    torch.manual_seed(0)
    layer = ConvTTransEncoderLayer(4, 2)
    x = torch.randn(1, 3, 4, 3, 3)
    x2 = x.clone()
    x2[:, 2] = torch.randn_like(x2[:, 2])
    assert ((layer(x2) - layer(x))[:, :2].abs().max()) > 1e-3  # frame 2 reaches frames 0 and 1 (no mask)
