"""Fast gradient sign (Goodfellow et al., 2015), batched."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fgs_direction(model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
    """``sign(grad_x CE(model(x), labels))``: the FGS direction, which does not depend on epsilon."""
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgs(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Tensor:
    """FGS adversarial inputs ``clip(x + eps * sign(grad_x CE), bounds)``.

    ``eps`` is an L-infinity budget in input units ([0, 1] pixels with a NormalizedModel); the loss uses the true
    ``labels``. Returns the adversarial inputs, not the perturbation.
    """
    adv = inputs.detach() + eps * fgs_direction(model, inputs, labels)
    return adv if bounds is None else adv.clamp(*bounds)
