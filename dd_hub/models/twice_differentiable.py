"""Layers whose backward pass has no derivative of its own, replaced by exact equivalents that have one.

Deep Defense differentiates through input gradients (double backward). torch implements the second derivative of
every activation timm uses except ``hardsigmoid`` ("derivative for aten::hardsigmoid_backward is not implemented"),
the gate of MobileNetV3's and EfficientNet-lite's squeeze-excitation. ``relu6(x + 3) / 6`` is the same function built
from ops that do have one. The layers have no parameters, so weights and exported checkpoints are unchanged; the
outputs agree to float rounding.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class HardSigmoid(nn.Module):
    """``relu6(x + 3) / 6``: ``nn.Hardsigmoid`` with a twice-differentiable backward."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) / 6.0


def make_twice_differentiable(model: nn.Module) -> int:
    """Replace, in place, every ``nn.Hardsigmoid`` of ``model`` by :class:`HardSigmoid`; returns how many."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Hardsigmoid:
                setattr(module, name, HardSigmoid())
                replaced += 1
    return replaced
