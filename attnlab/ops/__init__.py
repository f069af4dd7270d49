"""Pure tensor kernels: each fast op with its obvious reference beside it.

Layout is (B, H, N, D), as in ``torch.nn.functional.scaled_dot_product_attention``.
"""
from attnlab.ops.attention import attention, attention_logits, attention_reference, build_attention_mask
from attnlab.ops.recording import (AttentionInputs, AttentionRecorder, capture_attention_inputs, is_recording,
                                   pause_recording, record, record_attention)

__all__ = [
    "attention",
    "attention_reference",
    "attention_logits",
    "build_attention_mask",
    "record_attention",
    "AttentionRecorder",
    "is_recording",
    "record",
    "pause_recording",
    "capture_attention_inputs",
    "AttentionInputs",
]
