"""Small shared nn.Modules below the mixers: norms, short convolution, MLPs, DropPath, patch embedding, the block.

Layering: ``utils <- ops <- layers <- mixers <- models``. A layer may use ops
(pure tensor functions) but never a mixer or a model; mixers and models build
on these. One job per module:

    norm.py         RMSNorm, ChannelLayerNorm, make_norm
    short_conv.py   ShortConv (causal depthwise conv with a decoding step)
    mlp.py          Mlp, GluMlp, make_ffn
    drop_path.py    DropPath, drop_path_rates
    patch_embed.py  PatchEmbed, check_img_patch
    conv_lstm.py    ConvLSTM (P21's layer-interactive ConvLSTM)
    block.py        MixerBlock (the backbones' block), Block (timm-named block of the vision designs)
    weight_init.py  trunc_normal_init_ (the ViT-style initialisation of the vision designs)
    rotary.py       RotaryEmbedding, make_rope (RoPE for the attention mixers, a growing cos/sin cache)
    heads.py        split_qkv (the fused qkv projection as heads, qk norms, RoPE)
    kv_cache.py     empty_kv_cache, attend_with_cache (the softmax-family mixers' decoding step)
"""
from attnlab.layers.block import Block, MixerBlock
from attnlab.layers.conv_lstm import ConvLSTM
from attnlab.layers.drop_path import DropPath, drop_path_rates
from attnlab.layers.mlp import FFN_CHOICES, GluMlp, Mlp, make_ffn
from attnlab.layers.norm import NORM_CHOICES, ChannelLayerNorm, RMSNorm, make_norm
from attnlab.layers.patch_embed import PatchEmbed, check_img_patch
from attnlab.layers.short_conv import ShortConv
from attnlab.layers.weight_init import trunc_normal_init_
from attnlab.layers.rotary import RotaryEmbedding, make_rope
from attnlab.layers.heads import split_qkv
from attnlab.layers.kv_cache import attend_with_cache, cache_length, check_token, empty_kv_cache

__all__ = [
    "Block", "MixerBlock", "ConvLSTM", "DropPath", "drop_path_rates", "FFN_CHOICES", "GluMlp", "Mlp", "make_ffn",
    "NORM_CHOICES", "ChannelLayerNorm", "RMSNorm", "make_norm", "PatchEmbed", "check_img_patch", "ShortConv",
    "trunc_normal_init_", "RotaryEmbedding", "make_rope", "attend_with_cache", "cache_length", "check_token",
    "empty_kv_cache", "split_qkv",
]
