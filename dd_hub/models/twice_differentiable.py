"""Layers whose backward pass has no derivative of its own, replaced by exact equivalents that have one.

Deep Defense differentiates through input gradients (double backward). torch implements the second derivative of
every activation timm uses except ``hardsigmoid`` ("derivative for aten::hardsigmoid_backward is not implemented"),
the gate of MobileNetV3's and EfficientNet-lite's squeeze-excitation. ``relu6(x + 3) / 6`` is the same function built
from ops that do have one. The layers have no parameters, so weights and exported checkpoints are unchanged; the
outputs agree to float rounding.

``nn.MultiheadAttention`` (torchvision's ViT, Swin and MaxViT blocks) calls ``scaled_dot_product_attention``, whose
fused CPU/GPU kernels have no double backward either; its layers are switched to the math kernel, the composite of
matmuls and softmax (timm's attention is switched the same way, with ``timm.layers.set_fused_attn(False)``). Only
the class changes: parameters, state-dict keys and outputs stay the same.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch import Tensor, nn


class HardSigmoid(nn.Module):
    """``relu6(x + 3) / 6``: ``nn.Hardsigmoid`` with a twice-differentiable backward."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) / 6.0


class MathMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` on the math attention kernel, which has a double backward."""

    def forward(self, *args, **kwargs):
        with sdpa_kernel(SDPBackend.MATH):
            return super().forward(*args, **kwargs)


def make_twice_differentiable(model: nn.Module) -> int:
    """Replace, in place, every ``nn.Hardsigmoid`` of ``model`` by :class:`HardSigmoid` and switch every
    ``nn.MultiheadAttention`` to :class:`MathMultiheadAttention`; returns how many layers changed."""
    replaced = 0
    for module in list(model.modules()):
        if type(module) is nn.MultiheadAttention:
            module.__class__ = MathMultiheadAttention
            replaced += 1
        for name, child in list(module.named_children()):
            if type(child) is nn.Hardsigmoid:
                setattr(module, name, HardSigmoid())
                replaced += 1
    return replaced
