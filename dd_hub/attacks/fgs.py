"""Fast gradient sign (Goodfellow et al., 2015) and its L2 form, the fast gradient method, batched."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .result import AttackResult, check_norm, clip, forward_reusable, predictions


def fgs_direction(model: nn.Module, inputs: Tensor, labels: Tensor | None = None, *, norm: str = "linf",
                  logits: Tensor | None = None) -> Tensor:
    """The unit step of :func:`fgs`, which does not depend on ``eps``: ``sign(g)`` (``'linf'``) or ``g / ||g||_2``
    (``'l2'``), ``g`` the input gradient of the summed cross-entropy at ``labels`` (``None``: the predictions).
    ``logits``: the model's output at ``inputs`` with ``inputs`` requiring grad, reused (its graph kept) instead
    of a new forward."""
    check_norm(norm, "FGS")
    shared = forward_reusable(inputs, logits)
    if labels is None:
        labels = logits.detach().argmax(1) if shared else predictions(model, inputs)
    with torch.enable_grad():
        x = inputs if shared else inputs.detach().requires_grad_(True)
        loss = F.cross_entropy(logits if shared else model(x), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, retain_graph=shared)
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def fgs(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    eps: float,
    norm: str = "linf",
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> AttackResult:
    """One gradient step of size ``eps`` up the cross-entropy: ``clip(x + eps * fgs_direction(x), bounds)``.

    ``eps`` is an L-infinity (``norm='linf'``, FGS) or L2 (``'l2'``, fast gradient method) budget in input units;
    the loss uses ``labels`` (``None``: the predictions). ``iterations`` is ``None``. Costs one forward and backward,
    plus one forward for ``success``.
    """
    inputs = inputs.detach()
    if labels is None:
        labels = predictions(model, inputs)
    adversarial = clip(inputs + eps * fgs_direction(model, inputs, labels, norm=norm), bounds)
    return AttackResult(inputs, adversarial, predictions(model, adversarial) != labels)
